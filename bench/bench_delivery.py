"""Bench: one digest to many subscribed Telegram chats through the real adapter and a local fake Bot API.

Measures the paced ChatRuntime (outbox + pacer) against a naive unpaced sender in the same run, on a
time-scaled clock (default x5: 10,000 chats at 30 msg/s is 5.5 min of Telegram time, about 67 s here). The fake
server enforces Telegram's limits on the same scaled clock: over-limit sends get 429 retry_after=1.

    python bench/bench_delivery.py [--chats 10000] [--baseline-chats 2000] [--scale 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from bot.chat.commands import CommandService  # noqa: E402
from bot.chat.runtime import ChatRuntime, RuntimeConfig  # noqa: E402
from bot.chat.telegram_chat import TelegramChat  # noqa: E402
from bot.clock import utcnow  # noqa: E402
from bot.errors import RateLimitedError  # noqa: E402
from bot.ports import ChatRef, OutgoingMessage  # noqa: E402
from bot.settings import DigestDefaults  # noqa: E402
from bot.storage.chat_store import ChatStore  # noqa: E402
from bot.storage.store import Store  # noqa: E402
from bot.storage.tables import chats as chats_t  # noqa: E402
from bot.storage.tables import subscriptions  # noqa: E402
from tests.fakes.stories import seed  # noqa: E402
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI  # noqa: E402


class ScaledClock:
    """Runs `scale` times faster than real time (monotonic, wall and sleep alike)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._m0 = time.monotonic()
        self._w0 = utcnow()

    def monotonic(self) -> float:
        """Scaled monotonic seconds."""
        return (time.monotonic() - self._m0) * self.scale

    def now(self) -> datetime:
        """Scaled wall time."""
        return self._w0 + timedelta(seconds=self.monotonic())

    async def sleep(self, seconds: float) -> None:
        """Sleep scaled seconds."""
        await asyncio.sleep(seconds / self.scale)


def rate(times: list[float]) -> float:
    """Sustained messages per (scaled) second between the first and the last send."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def subscribe_all(store: Store, n: int, now: datetime) -> None:
    """n private chats, each subscribed and due now (bulk insert)."""
    with store.engine.begin() as conn:
        conn.execute(insert(chats_t), [dict(platform="telegram", chat_ref=str(10_000 + i), thread_ref="",
                                            kind="private", title="", created_at=now) for i in range(n)])
        ids = [r.id for r in conn.execute(chats_t.select().order_by(chats_t.c.id))]
        conn.execute(insert(subscriptions), [dict(chat_id=i, active=True, timezone="UTC", times=["08:00"],
                                                  every_hours=None, max_stories=5, topics=["world"],
                                                  next_due_at=now - timedelta(seconds=1), created_at=now,
                                                  updated_at=now) for i in ids])


async def paced(n: int, scale: float, db_dir: Path) -> dict:
    clock = ScaledClock(scale)
    store = Store.open(f"sqlite:///{db_dir / 'paced.db'}")
    chats = ChatStore(store.engine)
    seed(store, clock.now(), 8)
    subscribe_all(store, n, clock.now())
    async with FakeTelegramAPI(enforce_limits=True, clock=clock.monotonic, record_requests=False) as api:
        for i in range(n):
            api.add_chat(10_000 + i)
        defaults = DigestDefaults()
        tg = TelegramChat(TOKEN, CommandService(chats, admins=(), defaults=defaults), api_root=api.root, receive=False)
        runtime = ChatRuntime(chats, defaults, [tg], services=[tg], clock=clock,
                              config=RuntimeConfig(scheduler_tick_s=3600, claim_interval_s=0.5, lease_s=600,
                                                   claim_batch=500, max_in_flight=16))
        t0 = time.perf_counter()
        queued = await asyncio.to_thread(runtime.schedule_due, clock.now())
        enqueue_s = time.perf_counter() - t0
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await runtime.start()
        t1 = time.perf_counter()
        await runtime.drain(timeout_s=3600)
        send_s = time.perf_counter() - t1
        await runtime.stop()
        times = sorted(s.at for s in api.sent)
        out = dict(queued=queued, sent=len(api.sent), rate=rate(times), violations=len(api.violations),
                   too_many=api.too_many, enqueue_s=enqueue_s, send_real_s=send_s,
                   rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rss_before_mb=rss0 / 1024,
                   unexpected=len(api.unexpected), outbox=chats.outbox_counts(), pacer_chats=len(runtime.pacers["telegram"]))
    store.close()
    return out


async def naive(n: int, scale: float) -> dict:
    """Every chat's message at once (16 concurrent), honouring 429 retry_after but with no pacing."""
    clock = ScaledClock(scale)
    async with FakeTelegramAPI(enforce_limits=True, clock=clock.monotonic, record_requests=False) as api:
        for i in range(n):
            api.add_chat(20_000 + i)
        tg = TelegramChat(TOKEN, None, api_root=api.root, receive=False)  # type: ignore[arg-type]
        await tg.app.initialize()
        sem = asyncio.Semaphore(16)
        msg = OutgoingMessage("<b>digest</b> for you", parse_mode="html")

        async def one(i: int) -> None:
            async with sem:
                while True:
                    try:
                        await tg.send(ChatRef("telegram", str(20_000 + i)), msg)
                        return
                    except RateLimitedError as exc:
                        await clock.sleep(exc.retry_after or 1)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        real = time.perf_counter() - t0
        await tg.app.shutdown()
        times = sorted(s.at for s in api.sent)
        return dict(sent=len(api.sent), rate=rate(times), too_many=api.too_many, violations=len(api.violations),
                    send_real_s=real)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chats", type=int, default=10_000)
    p.add_argument("--baseline-chats", type=int, default=2000)
    p.add_argument("--scale", type=float, default=5.0, help="clock speed-up (1 = real time)")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"time scale x{a.scale:g}: rates below are in Telegram (scaled) messages per second", flush=True)
    with tempfile.TemporaryDirectory() as d:
        base = await naive(a.baseline_chats, a.scale)
        print(f"naive  : {base['sent']} chats, {base['rate']:.1f} msg/s sustained, {base['too_many']} x 429, "
              f"{base['send_real_s']:.1f} s real", flush=True)
        r = await paced(a.chats, a.scale, Path(d))
    print(f"paced  : {r['sent']}/{r['queued']} chats, {r['rate']:.1f} msg/s sustained (ceiling 30), "
          f"{r['violations']} limit violations, {r['too_many']} x 429, {r['unexpected']} unexpected requests")
    print(f"         enqueue {r['enqueue_s']:.1f} s real, send {r['send_real_s']:.1f} s real "
          f"({r['send_real_s'] * a.scale:.0f} s scaled); outbox {r['outbox']}")
    print(f"         peak RSS {r['rss_mb']:.0f} MiB (process incl. fake server; {r['rss_before_mb']:.0f} MiB "
          f"before sending); pacer state {r['pacer_chats']} chats")
    ratio = r["rate"] / base["rate"] if base["rate"] else float("inf")
    print(f"ratio paced/naive sustained rate: {ratio:.2f}x; 429s paced {r['too_many']} vs naive {base['too_many']} "
          f"(naive over {a.baseline_chats} chats)")


if __name__ == "__main__":
    asyncio.run(main())

"""Delivery: pacing within Telegram's limits, failure decisions, and the outbox (claim, lease, order, idempotency)."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from bot.clock import utcnow
from bot.errors import ChatForbiddenError, DeliveryError, RateLimitedError
from bot.pipeline.delivery import Limits, Pacer, SlidingWindow, backoff, on_failure
from bot.pipeline.digest import next_due
from bot.ports import ChatRef
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.store_queries import enqueue_messages, outbox_rows


def simulate(pacer: Pacer, chats: list[tuple[str, bool]], n: int) -> list[tuple[float, str]]:
    """Send n messages round-robin over chats as early as the pacer allows; returns (time, chat)."""
    t, log, queue = 0.0, [], [chats[i % len(chats)] for i in range(n)]
    for key, is_group in queue:
        t = pacer.ready_at(key, t)
        pacer.record(key, is_group, t)
        log.append((t, key))
    return log


def test_global_rate_and_per_chat_interval() -> None:
    pacer = Pacer(Limits())
    log = simulate(pacer, [(f"c{i}", False) for i in range(100)], 3000)
    times = [t for t, _ in log]
    # Never more than 30 in any 1-second window, and the ceiling is actually reached.
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        assert i - j + 1 <= 30
    assert 29.0 <= len(times) / times[-1] <= 30.5
    last: dict[str, float] = {}
    for t, key in log:
        assert key not in last or t - last[key] >= 1.0 - 1e-9
        last[key] = t


def test_group_limit_twenty_per_minute() -> None:
    pacer = Pacer(Limits())
    log = simulate(pacer, [("g", True)], 45)
    times = [t for t, _ in log]
    for i in range(len(times)):
        assert sum(1 for x in times if times[i] <= x < times[i] + 60) <= 20
    assert times[20] >= 60.0 and times[19] < 60.0 and times[20] - times[0] < 60.01


def test_blocks_and_prune() -> None:
    pacer = Pacer(Limits())
    pacer.record("a", False, 0.0)
    pacer.block_chat("a", 10.0)
    assert pacer.ready_at("a", 1.0) == 10.0 and pacer.ready_at("b", 1.0) == 1.0
    pacer.block_all(5.0)
    assert pacer.ready_at("b", 1.0) == 5.0
    assert pacer.prune(100.0) == 1 and len(pacer) == 0


def test_sliding_window() -> None:
    w = SlidingWindow(2, 1.0)
    w.record(0.0)
    w.record(0.5)
    assert 1.0 <= w.ready_at(0.6) <= 1.00001 and not w.idle_since(1.2) and w.idle_since(1.5)


def test_failure_decisions() -> None:
    lim = Limits(max_attempts=5)
    assert on_failure(ChatForbiddenError("blocked"), 1, lim, 1).action == "pause"
    a = on_failure(RateLimitedError("429", 7), 1, lim, 1)
    assert (a.action, a.delay_s, a.block_chat_s, a.block_all_s, a.counts) == ("retry", 7, 7, 7, False)
    # A 429 storm longer than max_attempts retry_after periods still ends in a send, not a lost part.
    storm = on_failure(RateLimitedError("429", 3), lim.max_attempts + 20, lim, 1)
    assert (storm.action, storm.delay_s, storm.counts) == ("retry", 3, False)
    assert on_failure(DeliveryError("timeout"), 1, lim, 1).counts
    m = on_failure(DeliveryError("moved", migrate_to="-100123"), 1, lim, 1)
    assert (m.action, m.migrate_to) == ("migrate", "-100123")
    assert on_failure(DeliveryError("bad html", permanent=True), 1, lim, 1).action == "fail"
    assert on_failure(DeliveryError("timeout"), 5, lim, 1).action == "fail"
    delays = [on_failure(DeliveryError("timeout"), k, lim, 9).delay_s for k in range(1, 5)]
    assert delays == sorted(delays) and delays[0] >= 2.0
    assert backoff(3, lim, 1) == backoff(3, lim, 1) and backoff(30, lim, 1) <= lim.backoff_max_s


def _queue(chats: ChatStore, n_chats: int, parts: int) -> list[int]:
    now = utcnow()
    ids = []
    for c in range(n_chats):
        sub, _ = chats.subscribe(ChatRef("telegram", str(1000 + c)), DigestDefaults(), now, next_due=next_due)
        ids.append(sub.chat_db_id)
        payloads = [{"text": f"chat {c} part {p}"} for p in range(parts)]
        assert enqueue_messages(chats, sub.chat_db_id, f"d{c}", payloads, now, sub.id) == parts
        assert enqueue_messages(chats, sub.chat_db_id, f"d{c}", payloads, now, sub.id) == 0  # idempotent
    return ids


def test_outbox_claims_in_order_one_part_per_chat(store: Store) -> None:
    chats = ChatStore(store.engine)
    _queue(chats, 3, 3)
    now = utcnow()
    first = chats.claim_outbox(now, lease_s=60, limit=100)
    assert sorted(i.payload["text"] for i in first) == [f"chat {c} part 0" for c in range(3)]
    # Claimed parts are leased; later parts wait for the earlier ones.
    assert chats.claim_outbox(now, lease_s=60, limit=100) == []
    for item in first:
        chats.mark_sent(item.id, "m1", now)
    second = chats.claim_outbox(now, lease_s=60, limit=100)
    assert sorted(i.payload["text"] for i in second) == [f"chat {c} part 1" for c in range(3)]
    # A crashed worker's lease expires: the part is claimed again; sent parts never are.
    later = now + timedelta(seconds=61)
    again = chats.claim_outbox(later, lease_s=60, limit=100)
    assert {i.id for i in again} == {i.id for i in second}
    chats.release([i.id for i in again])
    assert {i.id for i in chats.claim_outbox(later, lease_s=60, limit=100)} == {i.id for i in second}


def test_outbox_retry_fail_pause(store: Store) -> None:
    chats = ChatStore(store.engine)
    a, b = _queue(chats, 2, 2)
    now = utcnow()
    items = {i.chat_db_id: i for i in chats.claim_outbox(now, lease_s=60, limit=10)}
    chats.retry_later(items[a].id, now + timedelta(seconds=30), "429")
    chats.mark_failed(items[b].id, "bad request", now)
    nxt = chats.claim_outbox(now + timedelta(seconds=1), lease_s=60, limit=10)
    # a's part 0 waits for its retry time (and holds back part 1); b goes on with part 1 after the failure.
    assert [(i.chat_db_id, i.part) for i in nxt] == [(b, 1)]
    retried = chats.claim_outbox(now + timedelta(seconds=31), lease_s=60, limit=10)
    assert [(i.chat_db_id, i.part, i.attempts) for i in retried] == [(a, 0, 1)]
    chats.pause(a, "blocked: 403", now)
    rows = outbox_rows(chats, a)
    assert {r["status"] for r in rows} == {"cancelled"}
    sub = chats.get_subscription(ChatRef("telegram", "1000"))
    assert sub is not None and not sub.active and sub.paused_reason == "blocked: 403"


def test_claim_respects_exclusions_and_platforms(store: Store) -> None:
    chats = ChatStore(store.engine)
    a, b = _queue(chats, 2, 1)
    now = utcnow()
    assert [i.chat_db_id for i in chats.claim_outbox(now, lease_s=5, limit=10, exclude_chats=[a])] == [b]
    assert chats.claim_outbox(now, lease_s=5, limit=10, platforms=["discord"]) == []


def test_pacer_state_stays_bounded() -> None:
    pacer = Pacer(Limits())
    rnd = random.Random(1)
    t = 0.0
    for _ in range(5000):
        key = f"c{rnd.randrange(100000)}"
        t = pacer.ready_at(key, t)
        pacer.record(key, False, t)
    pacer.prune(t + 61)
    assert len(pacer) == 0


async def test_console_runtime_prints_due_digest_and_digest_cli(sqlite_store: Store) -> None:
    import io
    import json

    from bot.chat.console import CONSOLE_CHAT, ConsoleSink
    from bot.chat.digest_cli import print_digest
    from bot.chat.runtime import ChatRuntime, RuntimeConfig
    from bot.settings import FeedsFile
    from tests.fakes.stories import seed

    chats = ChatStore(sqlite_store.engine)
    now = utcnow()
    seed(sqlite_store, now, 3)
    sub, _ = chats.subscribe(CONSOLE_CHAT, DigestDefaults(), now - timedelta(days=1), next_due=next_due)
    assert sub.next_due_at is not None and sub.next_due_at <= now + timedelta(days=1)
    out = io.StringIO()
    runtime = ChatRuntime(chats, DigestDefaults(), [ConsoleSink(out)],
                          config=RuntimeConfig(scheduler_tick_s=0.05, claim_interval_s=0.02))
    # Due now: the runtime's scheduler must pick it up and the sender print it.
    chats.update_subscription(sub.id, now - timedelta(days=1), max_stories=2)
    from sqlalchemy import update

    from bot.storage.tables import subscriptions
    with sqlite_store.engine.begin() as conn:
        conn.execute(update(subscriptions).values(next_due_at=now))
    await runtime.start()
    try:
        for _ in range(200):
            if "News digest" in out.getvalue():
                break
            await asyncio.sleep(0.02)
        await runtime.drain(5)
    finally:
        await runtime.stop()
    printed = out.getvalue()
    assert printed.count("leaders meet") == 2 and "Reuters: https://" in printed
    assert chats.get_subscription(CONSOLE_CHAT).next_due_at > now
    defaults = FeedsFile(path=None).digest
    buf = io.StringIO()
    assert print_digest(sqlite_store, defaults, timedelta(hours=24), as_json=True, out=buf) == 0
    data = json.loads(buf.getvalue())
    assert [s["title"] for s in data["stories"]][0] == "Story 2: leaders meet <again> & talk"
    assert data["stories"][0]["links"][0]["url"].startswith("https://")
    buf = io.StringIO()
    print_digest(sqlite_store, defaults, timedelta(minutes=1), as_json=False, out=buf)
    assert buf.getvalue().startswith("No stories")


def test_wiring_picks_adapters_by_token(sqlite_store: Store) -> None:
    from bot.chat.console import CONSOLE_CHAT
    from bot.chat.wiring import build_chat_runtime
    from bot.settings import FeedsFile, load_settings

    feeds_file = FeedsFile(path=None)
    rt = build_chat_runtime(load_settings({}), sqlite_store, feeds_file)
    assert list(rt.sinks) == ["console"] and rt.services == []
    sub = ChatStore(sqlite_store.engine).get_subscription(CONSOLE_CHAT)
    assert sub is not None and sub.active
    settings = load_settings({"TELEGRAM_BOT_TOKEN": "1:x", "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/"})
    rt = build_chat_runtime(settings, sqlite_store, feeds_file)
    assert list(rt.sinks) == ["telegram"] and rt.sinks["telegram"].bot.base_url == "http://127.0.0.1:9/bot1:x"

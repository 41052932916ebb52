"""Fault campaign, chat APIs down (issue 10): the real adapters against the fakes while they answer 500/502,
reset connections, time out, or answer every send 429 for a while, then recover.

Invariants checked after each fault ends: every outbox part is delivered (Discord: exactly once, by nonce;
Telegram: at most the one documented in-flight message again per chat, and only when a request timed out
after the server had taken it), nothing due is left pending, the runtime and its adapter still run (a command
is answered), the fake saw no send faster than its limits, and no send went out inside a 429's retry_after.

Durations are scaled down: an outage of 2.5-6 s and retry_after of 1-2 s stand for the issue's minute-long
outage and long retry_after; the retry backoff is scaled the same way through `Limits` (base 0.1 s, not 2 s).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import pytest

from bot.chat.commands import CommandService
from bot.chat.discord_chat import DISCORD_LIMITS, DiscordAdapter
from bot.chat.feed_admin import StoreFeedAdmin
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.chat.telegram_chat import TelegramChat
from bot.pipeline.delivery import TELEGRAM_LIMITS
from bot.pipeline.digest import next_due
from bot.ports import ChatRef, OutgoingMessage
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.clock import ShiftClock
from tests.fakes.discord_api import TOKEN as DISCORD_TOKEN
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.feed_probe import reachable_feed
from tests.fakes.store_queries import enqueue_messages, outbox_rows
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI

DEFAULTS = DigestDefaults(times=("08:00",), timezone="UTC", max_stories=4, min_topic_score=0.5,
                          topics=("world",), summary_cooldown_s=30)
# Backoff scaled by 1/20 (2 s -> 0.1 s base), so a 2.5 s outage takes the retries a minute-long one would.
TG_LIMITS = replace(TELEGRAM_LIMITS, backoff_base_s=0.1, backoff_max_s=1.0)
DC_LIMITS = replace(DISCORD_LIMITS, backoff_base_s=0.1, backoff_max_s=1.0)
CONFIG = RuntimeConfig(scheduler_tick_s=0.1, claim_interval_s=0.05, lease_s=30)
CHATS = (701, 702, 703)
PARTS = 4


@dataclass
class TgRig:
    api: FakeTelegramAPI
    chats: ChatStore
    runtime: ChatRuntime


@asynccontextmanager
async def telegram(store: Store, config: RuntimeConfig = CONFIG) -> AsyncIterator[TgRig]:
    """A Telegram adapter and chat runtime on the store, against a fake Bot API; started, stopped at exit."""
    clock = ShiftClock()
    async with FakeTelegramAPI() as api:
        chats = ChatStore(store.engine)
        service = CommandService(chats, admins=set(), defaults=DEFAULTS, clock=clock.now,
                                 feed_admin=StoreFeedAdmin(store, allow_private=False, probe=reachable_feed),
                                 topics=("world",))
        tg = TelegramChat(TOKEN, service, limits=TG_LIMITS, api_root=api.root, poll_timeout_s=1)
        runtime = ChatRuntime(chats, DEFAULTS, [tg], services=[tg], clock=clock, config=config)
        await runtime.start()
        try:
            yield TgRig(api, chats, runtime)
        finally:
            await runtime.stop()


def enqueue(chats: ChatStore, platform: str, chat_ids: list[str], tag: str) -> dict[str, list[str]]:
    """PARTS parts for each chat, straight into the outbox; returns the texts each chat must get, in order."""
    now = ShiftClock().now()
    expected: dict[str, list[str]] = {}
    for c in chat_ids:
        sub, _ = chats.subscribe(ChatRef(platform, c), DEFAULTS, now, next_due=next_due)
        texts = [f"{tag} part {i} for {c}" for i in range(PARTS)]
        payloads = [OutgoingMessage(text=t).to_payload() for t in texts]
        enqueue_messages(chats, sub.chat_db_id, f"{tag}-{c}", payloads, now, sub.id)
        expected[c] = texts
    return expected


def runtime_alive(runtime: ChatRuntime) -> bool:
    return bool(runtime._tasks) and not any(t.done() for t in runtime._tasks)


def limit_violations(api: FakeTelegramAPI) -> list[str]:
    """The fake's limit violations, less per-chat gaps within 50 ms of 1 s: the pacer spaces sends by 1 s when
    it starts them, and a request that must first open a new connection (after a reset) arrives a little late,
    so the next one's arrival gap can look a few milliseconds short."""
    out = []
    for v in api.violations:
        m = re.fullmatch(r"chat -?\d+: (\d+\.\d+) s after the previous message", v)
        if m is None or float(m.group(1)) < 0.95:
            out.append(v)
    return out


def collapse(texts: list[str]) -> tuple[list[str], int]:
    """Texts with immediate repeats removed, and how many repeats there were."""
    out: list[str] = []
    for t in texts:
        if not out or out[-1] != t:
            out.append(t)
    return out, len(texts) - len(out)


@pytest.mark.parametrize(("mode", "outage_s"), [("500", 2.5), ("502", 2.5), ("reset", 2.5), ("timeout", 6.5)])
async def test_telegram_outage_then_recovery(sqlite_store: Store, mode: str, outage_s: float) -> None:
    async with telegram(sqlite_store) as rig:
        api = rig.api
        for c in CHATS:
            api.add_chat(c)
        expected = enqueue(rig.chats, "telegram", [str(c) for c in CHATS], mode)
        rig.runtime._wake_sender.set()
        # Mid-delivery: the first parts are out, the rest are due when the API goes down.
        await api.wait_for(lambda: len(api.sent) >= 2, timeout=10)
        api.start_outage(mode, deliver_timed_out=(mode == "timeout"))
        await asyncio.sleep(outage_s)
        faults = api.faults
        api.end_outage()
        await rig.runtime.drain(60)
        assert faults >= 2, f"the outage must have hit sends: {faults}"
        assert rig.runtime.stats["retried"] >= 1 and rig.runtime.stats["failed"] == 0
        rows = outbox_rows(rig.chats)
        assert {r["status"] for r in rows} == {"sent"}, "nothing due left undelivered once the fault ends"
        for c in CHATS:
            got, repeats = collapse([s.text for s in api.sent_to(c)])
            assert got == expected[str(c)], f"chat {c}: lost or reordered parts"
            # Only a request the server took but whose answer the client gave up on can arrive twice.
            assert repeats <= (1 if mode == "timeout" else 0), f"chat {c}: {repeats} duplicates"
        if mode != "timeout":
            # (Held requests the server performs late all arrive at once when it recovers: that burst is the
            # server's doing, not the bot's pacing, so the arrival-rate check does not apply to that mode.)
            assert limit_violations(api) == [], "send limits honoured through the retries"
        assert runtime_alive(rig.runtime)
        api.add_chat(42)
        api.user_message(42, 42, "/help")
        (reply,) = await api.wait_sent(42, 1, timeout=30)
        assert "/subscribe" in reply.plain, "the adapter still answers commands after the outage"
        assert api.unexpected == []


def retry_after_violations(log: list[tuple[float, str, int | None, int]], retry_after: float) -> list[str]:
    """Sends that arrived inside a 429's retry_after (after a 0.1 s grace for requests already on their way)."""
    sends = [(t, c, s) for t, m, c, s in log if m in ("sendMessage", "sendDocument")]
    bad = []
    for t429, c429, status in sends:
        if status != 429:
            continue
        for t, c, _ in sends:
            if t429 + 0.1 < t < t429 + retry_after - 0.02:
                bad.append(f"send to {c} {t - t429:.3f} s after a 429 (retry_after {retry_after}) to {c429}")
    return bad


async def test_telegram_429_storm_honours_retry_after(sqlite_store: Store) -> None:
    async with telegram(sqlite_store) as rig:
        api = rig.api
        for c in CHATS:
            api.add_chat(c)
        api.storm_retry_after = 2
        expected = enqueue(rig.chats, "telegram", [str(c) for c in CHATS], "storm")
        rig.runtime._wake_sender.set()
        await asyncio.sleep(4.5)
        storms = api.too_many
        api.storm_retry_after = 0
        await rig.runtime.drain(60)
        assert storms >= 2, "the storm answered several sends 429"
        # Telegram's flood control holds the whole bot: nothing may go out inside any retry_after.
        assert retry_after_violations(api.log, 2.0) == []
        for c in CHATS:
            assert [s.text for s in api.sent_to(c)] == expected[str(c)], f"chat {c}: lost or duplicated"
        assert {r["status"] for r in outbox_rows(rig.chats)} == {"sent"}
        assert limit_violations(api) == [] and runtime_alive(rig.runtime)


@pytest.mark.parametrize("mode", ["500", "502", "reset", "lost"])
async def test_discord_outage_then_recovery_exactly_once(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch,
                                                         mode: str) -> None:
    clock = ShiftClock()
    async with FakeDiscord() as fake:
        fake.install(monkeypatch)
        guild = fake.add_guild("Desk", channels=("a", "b", "c"))
        chats = ChatStore(sqlite_store.engine)
        service = CommandService(chats, admins=set(), defaults=DEFAULTS, clock=clock.now,
                                 feed_admin=StoreFeedAdmin(sqlite_store, allow_private=False, probe=reachable_feed),
                                 topics=("world",))
        adapter = DiscordAdapter(DISCORD_TOKEN, service, limits=DC_LIMITS,
                                 guild_ready_timeout=0.05)
        runtime = ChatRuntime(chats, DEFAULTS, [adapter], services=[adapter],
                              clock=clock, config=CONFIG)
        await runtime.start()
        try:
            await adapter.wait_until_ready(5)
            channels = list(guild.channels)
            expected = enqueue(chats, "discord", [str(c) for c in channels], mode)
            runtime._wake_sender.set()
            await fake.wait_for(lambda: sum(len(fake.sent_to(c)) for c in channels) >= 2, timeout=10)
            fake.outage = mode
            await asyncio.sleep(2.5)
            faults = fake.faults
            fake.outage = None
            await runtime.drain(60)
            assert faults >= 2, f"the outage must have hit sends: {faults}"
            assert runtime.stats["failed"] == 0
            assert {r["status"] for r in outbox_rows(chats)} == {"sent"}, "nothing due left undelivered"
            for c in channels:
                # Exactly once: a post whose answer was lost is sent again with the same nonce, and Discord
                # keeps the first message.
                assert [m["content"] for m in fake.sent_to(c)] == expected[str(c)], f"channel {c}"
            assert runtime_alive(runtime) and not adapter.bot.is_closed()
        finally:
            await runtime.stop()
        assert fake.invalid == [] and fake.too_fast == []

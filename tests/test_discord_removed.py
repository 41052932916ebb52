"""Removed from a Discord server, or a channel deleted: its subscriptions pause at once (threads included) and
what is queued for them is cancelled, over the real discord.py client against the fake gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from bot.chat.discord_chat import DiscordAdapter
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.ports import ChatRef
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.clock import ShiftClock
from tests.fakes.discord_api import TOKEN, FakeDiscord, FakeGuild
from tests.fakes.store_queries import enqueue_messages, outbox_rows
from tests.fakes.stories import seed
from tests.test_discord_e2e import DEFAULTS, Rig, service

REMOVED = "bot removed from the server"


@pytest.fixture
async def rigs(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Rig, FakeGuild]]:
    """The rig of tests/test_discord_e2e.py plus a second server ("Elsewhere", channel "main")."""
    clock = ShiftClock()
    async with FakeDiscord() as fake:
        fake.install(monkeypatch)
        guild = fake.add_guild("World desk", channels=("news", "sport", "quiet"), threads=(("news", "daily"),))
        other = fake.add_guild("Elsewhere", channels=("main",))
        chats = ChatStore(sqlite_store.engine)
        adapter = DiscordAdapter(TOKEN, service(sqlite_store, chats, clock), guild_ready_timeout=0.05)
        runtime = ChatRuntime(chats, DEFAULTS, [adapter], services=[adapter], clock=clock,
                              config=RuntimeConfig(scheduler_tick_s=0.1, claim_interval_s=0.05, lease_s=30))
        await runtime.start()
        try:
            yield Rig(fake, guild, sqlite_store, chats, adapter, runtime, clock), other
        finally:
            await runtime.stop()
        assert fake.invalid == [], fake.invalid
        assert fake.too_fast == [], fake.too_fast


async def _subscribe(rig: Rig, *targets: int) -> None:
    for target in targets:
        body = await rig.slash(target, "subscribe")
        assert "Subscribed" in body["data"]["content"]


def _queue_for_tomorrow(rig: Rig, ref: ChatRef) -> int:
    """A pending part for the chat that is not due yet (so it is still pending when the event arrives)."""
    sub = rig.chats.get_subscription(ref)
    assert sub is not None
    enqueue_messages(rig.chats, sub.chat_db_id, f"later-{ref.key}", [{"text": "x"}],
                     rig.clock.now() + timedelta(days=1), sub.id)
    return sub.chat_db_id


async def _until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Polls: pausing makes no request to the fake, so its wait_for would not wake up."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _active(rig: Rig, ref: ChatRef) -> bool:
    sub = rig.chats.get_subscription(ref)
    assert sub is not None, ref
    return sub.active


async def test_removed_from_a_server_pauses_its_channels_and_threads_and_cancels_their_queue(
        rigs: tuple[Rig, FakeGuild]) -> None:
    rig, other = rigs
    fake, main = rig.fake, next(iter(other.channels))
    await _subscribe(rig, rig.channel("news"), rig.channel("sport"), rig.thread("daily"), rig.channel("quiet"), main)
    await rig.slash(rig.channel("quiet"), "unsubscribe")
    refs = [rig.ref("news"), rig.ref("sport"), rig.ref("daily")]
    queued = [_queue_for_tomorrow(rig, r) for r in refs[::2]]
    # An outage is not a removal: the unavailable server's subscriptions stay (events arrive in order, so
    # this one has been handled by the time the removal below is).
    await fake.outage_of(other.id)
    await fake.remove_bot(rig.guild.id)
    await _until(lambda: not any(_active(rig, r) for r in refs), timeout=10)
    for r in refs:
        sub = rig.chats.get_subscription(r)
        assert sub is not None and sub.paused_reason == REMOVED and sub.next_due_at is None, r
    assert [row["status"] for c in queued for row in outbox_rows(rig.chats, c)] == ["cancelled", "cancelled"]
    quiet = rig.chats.get_subscription(rig.ref("quiet"))
    assert quiet is not None and quiet.paused_reason == "unsubscribed", "a chat's own choice is kept"
    main_ref = ChatRef("discord", str(main))
    assert _active(rig, main_ref), "another server is not touched"
    # The other server still gets its digest; the removed one gets nothing.
    seed(rig.store, rig.clock.now(), 3)
    rig.make_due()
    (digest, *_) = await fake.wait_sent(main, 1, timeout=10)
    assert digest["content"].startswith("**News digest**")
    await rig.runtime.drain(10)
    assert [fake.sent_to(c) for c in (*rig.guild.channels, *rig.guild.threads)] == [[]] * 4
    assert rig.chats.outbox_counts().get("pending", 0) == 0


async def test_a_deleted_channel_pauses_with_its_threads_and_a_deleted_thread_alone(
        rigs: tuple[Rig, FakeGuild]) -> None:
    rig, _ = rigs
    news, sport, daily = rig.channel("news"), rig.channel("sport"), rig.thread("daily")
    refs = {name: rig.ref(name) for name in ("news", "sport", "daily")}
    await _subscribe(rig, news, sport, daily)
    # A thread alone: its parent channel keeps its digests.
    queued = _queue_for_tomorrow(rig, refs["daily"])
    await rig.fake.delete_channel(daily)
    await _until(lambda: not _active(rig, refs["daily"]), timeout=10)
    assert rig.chats.get_subscription(refs["daily"]).paused_reason == "thread deleted"
    assert [row["status"] for row in outbox_rows(rig.chats, queued)] == ["cancelled"]
    assert _active(rig, refs["news"])
    # A channel with its threads (a new thread under news, subscribed without an event of its own).
    rig.chats.subscribe(ChatRef("discord", str(news), "555", "group"), DEFAULTS, rig.clock.now(),
                        next_due=lambda s, now: now + timedelta(hours=1))
    await rig.fake.delete_channel(news)
    await _until(lambda: not _active(rig, refs["news"]), timeout=10)
    for ref in (refs["news"], ChatRef("discord", str(news), "555")):
        assert rig.chats.get_subscription(ref).paused_reason == "channel deleted"
    assert _active(rig, refs["sport"]), "the other channels of the server are not touched"

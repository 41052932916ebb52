"""The chat runtime's two loops wake each other only when there is work: sends do not run the scheduler, and a
wake-up given while the sender is busy is not lost."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import timedelta

from bot.chat.console import CONSOLE, ConsoleSink
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.clock import utcnow
from bot.pipeline.delivery import Limits
from bot.pipeline.digest import Schedule, next_due
from bot.ports import ChatRef, OutgoingMessage
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.stories import seed

FAST = Limits(global_per_s=100_000, chat_interval_s=0.0)


class CountingChats(ChatStore):
    """Counts the scheduler's due-digest queries; can hold the first outbox claim (a slow database)."""

    due_queries = 0
    hold_first_claim_s = 0.0

    def due_subscriptions(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.due_queries += 1
        return super().due_subscriptions(*args, **kwargs)

    def claim_outbox(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        items = super().claim_outbox(*args, **kwargs)
        if self.hold_first_claim_s:
            time.sleep(self.hold_first_claim_s)
            self.hold_first_claim_s = 0.0
        return items


async def test_sends_do_not_wake_the_scheduler(sqlite_store: Store) -> None:
    chats = CountingChats(sqlite_store.engine)
    now = utcnow()
    for i in range(200):
        sub, _ = chats.subscribe(ChatRef(CONSOLE, str(i)), DigestDefaults(), now, next_due=next_due)
        chats.enqueue_digest(sub, due_at=sub.next_due_at, next_due_at=sub.next_due_at + timedelta(days=1),
                             digest_key=f"part-{i}", payloads=[OutgoingMessage(f"part {i}").to_payload()],
                             story_versions={}, now=now)
    out = io.StringIO()
    runtime = ChatRuntime(chats, DigestDefaults(), [ConsoleSink(out, limits=FAST)],
                          config=RuntimeConfig(scheduler_tick_s=30, claim_interval_s=0.05))
    await runtime.start()
    try:
        await runtime.drain(30)
    finally:
        await runtime.stop()
    assert runtime.stats["sent"] == 200 and out.getvalue().count("part ") == 200
    assert chats.due_queries <= 2, f"{chats.due_queries} due-digest queries for 200 sends and nothing due"


async def test_a_due_digest_reaches_a_busy_sender_at_once(sqlite_store: Store) -> None:
    chats = CountingChats(sqlite_store.engine)
    now = utcnow()
    seed(sqlite_store, now, 3)
    ref = ChatRef(CONSOLE, "desk")
    chats.subscribe(ref, DigestDefaults(times=(), every_hours=24), now - timedelta(hours=1), next_due=next_due)
    assert chats.get_subscription(ref).schedule == Schedule("UTC", (), 24)
    chats.hold_first_claim_s = 4.0  # the sender is inside a claim when the digest is queued
    out = io.StringIO()
    runtime = ChatRuntime(chats, DigestDefaults(), [ConsoleSink(out, limits=FAST)],
                          config=RuntimeConfig(scheduler_tick_s=30, claim_interval_s=30))
    await runtime.start()
    try:
        await asyncio.sleep(0.2)
        started = time.monotonic()
        assert runtime.digest_now(ref)
        while "News digest" not in out.getvalue() and time.monotonic() - started < 12:
            await asyncio.sleep(0.02)
        took = time.monotonic() - started
    finally:
        await runtime.stop()
    assert "News digest" in out.getvalue() and took < 8, f"delivered after {took:.1f} s"

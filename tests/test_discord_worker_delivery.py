"""Discord delivery from scale-out workers: two workers' send-only Discord clients (discord.py logged in over
HTTP, no gateway) deliver outbox parts through the shared limiter (Redis) to the fake Discord's REST API. Every
part arrives once and in order, no channel gets more than Discord's 5 messages in 5 s and the bot stays under
its global rate (as the fake counts them).

Not covered: a 429 shorter than 30 s is waited out and retried by discord.py inside the worker that got it, so
the shared limiter does not count the retry (docs/scaling.md); the fake would count 6 posts in 5 s then."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace

import pytest

from bot.chat.discord_send import DiscordSender
from bot.clock import utcnow
from bot.distributed.tasks import OUTBOX_LEASE_S, _deliver
from bot.pipeline.digest import next_due
from bot.ports import GROUP, ChatRef
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.store_queries import enqueue_messages, outbox_rows

REDIS_URL = os.environ.get("NEWSDIGEST_TEST_REDIS_URL", "")
PARTS = 7

pytestmark = pytest.mark.skipif(not REDIS_URL, reason="NEWSDIGEST_TEST_REDIS_URL is not set (the shared limiter)")


@pytest.fixture
async def discord_api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as api:
        api.install(monkeypatch)
        yield api


async def _deliver_all(chats: ChatStore, workers: list[SimpleNamespace], timeout_s: float = 60) -> None:
    """What the scheduler and the workers do: claim due parts, hand them out in turn, until none is left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    turn = 0
    while loop.time() < deadline:
        if all(r["status"] == "sent" for r in outbox_rows(chats)):
            return
        now = utcnow()
        items = chats.claim_outbox(now, lease_s=OUTBOX_LEASE_S, limit=100, platforms=["discord"])
        until = now + timedelta(seconds=OUTBOX_LEASE_S)
        sends = []
        for item in items:
            sends.append(_deliver(workers[turn % len(workers)], item, until))  # type: ignore[arg-type]
            turn += 1
        await asyncio.gather(*sends)
        await asyncio.sleep(0.1)
    raise AssertionError(f"parts left: {[r for r in outbox_rows(chats) if r['status'] != 'sent']}")


async def test_two_workers_deliver_discord_parts_once_in_order_within_discords_limits(
        discord_api: FakeDiscord, sqlite_store: Store) -> None:
    from bot.distributed.limiter import SharedLimiter

    guild = discord_api.add_guild(channels=("news", "world"))
    channels = list(guild.channels)
    chats, now = ChatStore(sqlite_store.engine), utcnow()
    for ch in channels:
        sub, _ = chats.subscribe(ChatRef("discord", str(ch), kind=GROUP, title="#news"), DigestDefaults(), now,
                                 next_due=next_due)
        assert enqueue_messages(chats, sub.chat_db_id, f"d{ch}", [{"text": f"part {p} for {ch}"}
                                                                  for p in range(PARTS)], now, sub.id) == PARTS
    prefix = f"newsdigest:test:{uuid.uuid4().hex}"
    workers = []
    try:
        for _ in range(2):
            sender = DiscordSender("token")
            await sender.start()
            limiter = SharedLimiter(REDIS_URL, prefix=prefix, margin_s=0.1)
            workers.append(SimpleNamespace(limiter=limiter, sinks={"discord": sender},
                                           limits={"discord": sender.limits}, chats=chats))
        await _deliver_all(chats, workers)
    finally:
        for w in workers:
            await w.sinks["discord"].stop()
            await w.limiter.aclose()
    for ch in channels:
        assert [m["content"] for m in discord_api.sent_to(ch)] == [f"part {p} for {ch}" for p in range(PARTS)]
    assert discord_api.too_fast == [] and discord_api.invalid == []
    assert not any(r.path.endswith("/gateway/bot") for r in discord_api.requests)  # REST only: no gateway
    rows = outbox_rows(chats)
    assert all(r["status"] == "sent" and r["message_ref"] for r in rows)

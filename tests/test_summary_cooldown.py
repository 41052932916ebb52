"""The /summary cooldown is one atomic database operation: concurrent requests get one summary, a restart keeps
it, and a link that fails gives the cooldown back."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest

from bot.chat.commands import CommandService
from bot.clock import utcnow
from bot.errors import FetchError
from bot.ports import ChatRef, Invocation, LinkSummary
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.stories import seed

CHAT = ChatRef("telegram", "42")
DEFAULTS = DigestDefaults(summary_cooldown_s=60, topics=())


def test_claims_are_atomic_across_threads(store: Store) -> None:
    chats = ChatStore(store.engine)
    now = utcnow()
    results: list[object] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        results.append(chats.claim_summary(CHAT, now, 60))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(None) == 1, results
    assert all(r == now + timedelta(seconds=60) for r in results if r is not None)


def test_cooldown_expires_is_per_chat_and_can_be_given_back(store: Store) -> None:
    chats = ChatStore(store.engine)
    now = utcnow()
    assert chats.claim_summary(CHAT, now, 60) is None
    assert chats.claim_summary(ChatRef("telegram", "42", thread_id="7"), now, 60) is None, "a topic is its own chat"
    assert chats.claim_summary(ChatRef("discord", "42"), now, 60) is None
    assert chats.claim_summary(CHAT, now + timedelta(seconds=59), 60) == now + timedelta(seconds=60)
    assert chats.claim_summary(CHAT, now + timedelta(seconds=60), 60) is None
    later = now + timedelta(seconds=60)
    chats.release_summary(CHAT, later)
    assert chats.claim_summary(CHAT, later + timedelta(seconds=1), 60) is None, "given back: free again"
    # Giving back an older claim never frees a newer one.
    chats.release_summary(CHAT, later)
    assert chats.claim_summary(CHAT, later + timedelta(seconds=2), 60) == later + timedelta(seconds=61)


async def test_concurrent_summaries_send_one_digest_and_a_restart_keeps_the_cooldown(store: Store) -> None:
    now = utcnow()
    seed(store, now, 3)

    def service() -> CommandService:
        return CommandService(ChatStore(store.engine), admins=(), defaults=DEFAULTS, clock=lambda: now)

    svc = service()
    inv = Invocation("telegram", CHAT, "5", "summary", ())
    replies = await asyncio.gather(*(svc.handle(inv) for _ in range(6)))
    assert sum(r.digest is not None for r in replies) == 1
    assert sum("Please wait" in r.blocks[0][0].text for r in replies if r.blocks) == 5
    restarted = service()
    r = await restarted.handle(inv)
    assert r.digest is None and "Please wait 60 s" in r.blocks[0][0].text


@pytest.mark.parametrize("failure", ["fetch", "blocked", "extract", "crash"])
async def test_a_failed_link_does_not_start_the_cooldown(sqlite_store: Store, failure: str) -> None:
    from bot.errors import BlockedURLError, ExtractError

    async def summarize(url: str) -> LinkSummary:
        if "bad" in url:
            raise {"fetch": FetchError(url, "HTTP 404", transient=False, status=404),
                   "blocked": BlockedURLError(url, "x.example resolves to a non-public address (10.0.0.1)"),
                   "extract": ExtractError("no text"), "crash": RuntimeError("bug")}[failure]
        return LinkSummary(url=url, title="T", summary="S.")

    now = utcnow()
    svc = CommandService(ChatStore(sqlite_store.engine), admins=(), defaults=DEFAULTS, summarize=summarize,
                         clock=lambda: now)
    bad = await svc.handle(Invocation("telegram", CHAT, "5", "summary", ("https://x.example/bad",)))
    assert bad.error
    good = await svc.handle(Invocation("telegram", CHAT, "5", "summary", ("https://x.example/good",)))
    assert not good.error and good.blocks[0][0].text == "T"
    again = await svc.handle(Invocation("telegram", CHAT, "5", "summary", ("https://x.example/good",)))
    assert "Please wait" in again.blocks[0][0].text

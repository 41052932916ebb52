"""One digest builder (issue 11): the scheduler, `/summary` and `newsdigest digest` give the same digest for the
same stories, settings and window, because all three go through bot.chat.digests.DigestBuilder."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bot.chat.commands import CommandService
from bot.chat.console import CONSOLE, PlainRenderer
from bot.chat.digest_cli import current_digest
from bot.chat.digests import DigestBuilder
from bot.chat.runtime import ChatRuntime
from bot.clock import utcnow
from bot.pipeline.delivery import Limits
from bot.pipeline.digest import Digest, next_due
from bot.ports import ChatRef, Invocation, OutgoingMessage, Reply
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.stories import add_outlet, add_story, seed

DEFAULTS = DigestDefaults(times=("08:00", "18:00"), max_stories=3, topics=("world",), summary_cooldown_s=0)


class RecordingSink:
    """A console ChatSink whose renderer keeps every digest it renders."""

    platform = CONSOLE
    limits = Limits()

    def __init__(self) -> None:
        self.digests: list[Digest] = []
        self.renderer = self
        self._plain = PlainRenderer()

    def render_digest(self, digest: Digest) -> list[OutgoingMessage]:
        self.digests.append(digest)
        return self._plain.render_digest(digest)

    def render_reply(self, reply: Reply) -> list[OutgoingMessage]:
        return self._plain.render_reply(reply)

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> str:
        return "1"


def seeded(store: Store, now: datetime) -> None:
    """Stories on and off the default topic, more than a digest holds, some outside 24 h."""
    seed(store, now, 6)
    outlet = add_outlet(store, "Sports Wire", now)
    add_story(store, title="Cup final tonight", summary="A match.", at=now - timedelta(hours=2),
              outlets=[outlet], topics={"geopolitics": 0.0, "world": 0.0, "sport": 1.0}, topic_score=0.0)
    add_story(store, title="Old news", summary="Long ago.", at=now - timedelta(hours=30), outlets=[outlet])


async def summary_digest(chats: ChatStore, now: datetime, chat: ChatRef, *args: str) -> Digest:
    service = CommandService(chats, admins=(), defaults=DEFAULTS, clock=lambda: now)
    reply = await service.handle(Invocation(chat.platform, chat, "7", "summary", args, user_is_chat_admin=True))
    assert reply.digest is not None, reply
    return reply.digest


def scheduled_digest(chats: ChatStore, now: datetime, chat: ChatRef) -> Digest:
    sub = chats.get_subscription(chat)
    assert sub is not None
    sink = RecordingSink()
    assert ChatRuntime(chats, DEFAULTS, [sink]).enqueue_digest(sub, now)
    assert len(sink.digests) == 1
    return sink.digests[0]


async def test_scheduler_summary_and_cli_give_the_same_digest(sqlite_store: Store) -> None:
    now = utcnow()
    seeded(sqlite_store, now)
    chats = ChatStore(sqlite_store.engine)
    subscribed = ChatRef(CONSOLE, "subscribed")
    chats.subscribe(subscribed, DEFAULTS, now - timedelta(days=2), next_due=next_due)

    cli = current_digest(sqlite_store, DEFAULTS, timedelta(hours=24), now=now)
    asked = await summary_digest(chats, now, ChatRef(CONSOLE, "no subscription"), "24h")
    scheduled = scheduled_digest(chats, now, subscribed)

    assert len(cli.stories) == DEFAULTS.max_stories and cli.since == now - timedelta(hours=24)
    assert "Cup final tonight" not in {s.title for s in cli.stories}
    assert cli == asked == scheduled


async def test_a_chats_own_settings_apply_on_request_and_on_schedule(sqlite_store: Store) -> None:
    now = utcnow()
    seeded(sqlite_store, now)
    chats = ChatStore(sqlite_store.engine)
    chat = ChatRef(CONSOLE, "desk")
    sub, _ = chats.subscribe(chat, DEFAULTS, now - timedelta(days=2), next_due=next_due)
    chats.update_subscription(sub.id, now - timedelta(days=2), max_stories=5, topics=())

    asked = await summary_digest(chats, now, chat)
    scheduled = scheduled_digest(chats, now, chat)

    assert asked == scheduled
    assert len(asked.stories) == 5 and "Old news" not in {s.title for s in asked.stories}
    # The scheduled digest recorded what it sent: the next scheduled one over the same window leaves those
    # versions out, while a digest asked for shows them again.
    sub = chats.get_subscription(chat)
    assert sub is not None and sub.last_digest_at is not None
    builder = DigestBuilder(chats, DEFAULTS)
    again = builder.scheduled(replace(sub, last_digest_at=None), now)
    sent = {s.id for s in scheduled.stories}
    assert again.stories and sent.isdisjoint({s.id for s in again.stories})
    assert builder.on_request(now, replace(sub, last_digest_at=None)) == asked

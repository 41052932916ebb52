"""Removed from a Telegram group: every subscription of the group pauses at once, its forum topics' too."""

from __future__ import annotations

from datetime import timedelta

from bot.clock import utcnow
from bot.pipeline.digest import next_due
from bot.ports import ChatRef
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.store_queries import outbox_rows
from tests.test_telegram_e2e import GROUP_ADMIN, Bot, bot, command  # noqa: F401 (bot is a fixture)


async def test_kicked_from_a_forum_pauses_every_topic_and_cancels_its_queue(bot: Bot) -> None:  # noqa: F811
    api, forum, other = bot.api, -300, -400
    api.add_chat(forum, "supergroup", "Forum", admins={GROUP_ADMIN}, is_forum=True)
    api.add_chat(other, "supergroup", "Other", admins={GROUP_ADMIN})
    await command(bot, forum, GROUP_ADMIN, "/subscribe")
    for topic in (77, 78):
        await command(bot, forum, GROUP_ADMIN, "/subscribe", thread_id=topic)
    await command(bot, other, GROUP_ADMIN, "/subscribe")
    refs = [ChatRef("telegram", str(forum), thread_id=t) for t in ("", "77", "78")]
    # A digest part is queued for a topic but not sent yet (due tomorrow).
    sub = bot.chats.get_subscription(refs[2])
    later = bot.clock.now() + timedelta(days=1)
    bot.chats.enqueue_digest(sub, due_at=sub.next_due_at, next_due_at=later, digest_key="queued",
                             payloads=[{"text": "x"}], story_versions={}, now=later)
    api.kick(forum, GROUP_ADMIN)
    await api.wait_for(lambda: all(not bot.chats.get_subscription(r).active for r in refs), timeout=10)
    for r in refs:
        s = bot.chats.get_subscription(r)
        assert s.paused_reason == "bot kicked" and s.next_due_at is None, r
    assert [row["status"] for row in outbox_rows(bot.chats, sub.chat_db_id)] == ["cancelled"]
    assert bot.chats.get_subscription(ChatRef("telegram", str(other))).active, "another group is not touched"


def test_pause_chat_pauses_every_thread_of_that_chat_only(sqlite_store: Store) -> None:
    chats = ChatStore(sqlite_store.engine)
    now = utcnow()
    refs = [ChatRef("discord", "5", thread_id=t, kind="group") for t in ("", "6", "7")]
    same_id_elsewhere = ChatRef("telegram", "5")
    for r in [*refs, same_id_elsewhere]:
        chats.subscribe(r, DigestDefaults(), now, next_due=next_due)
    assert chats.pause_chat("discord", "5", "bot removed", now) == 3
    assert [chats.get_subscription(r).paused_reason for r in refs] == ["bot removed"] * 3
    assert chats.get_subscription(same_id_elsewhere).active

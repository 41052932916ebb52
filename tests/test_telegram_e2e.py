"""End to end over real sockets: python-telegram-bot's Application against the fake Bot API server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.chat.commands import CommandService
from bot.chat.feed_admin import StoreFeedAdmin
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.chat.telegram_chat import TelegramChat
from bot.clock import utcnow
from bot.pipeline.digest import next_due
from bot.ports import ChatRef
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from bot.storage.tables import subscriptions
from tests.fakes.clock import ShiftClock
from tests.fakes.feed_probe import reachable_feed
from tests.fakes.store_queries import enqueue_messages, outbox_rows
from tests.fakes.stories import add_report, seed
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI, Sent

OWNER, USER, GROUP_ADMIN = 1, 50, 7
DEFAULTS = DigestDefaults(times=("08:00",), timezone="UTC", max_stories=4, min_topic_score=0.5,
                          topics=("world",), summary_cooldown_s=30)
ROOT = Path(__file__).resolve().parents[1]



@dataclass
class Bot:
    api: FakeTelegramAPI
    store: Store
    chats: ChatStore
    runtime: ChatRuntime
    clock: ShiftClock

    def produce_stories(self, n: int = 6, summary_chars: int = 300, at: datetime | None = None) -> list[int]:
        """Stories with hostile titles, URLs and long summaries, inserted directly to test rendering and
        ranking; tests/test_scenario.py runs the same flow from real feeds through the real pipeline."""
        return seed(self.store, at or self.clock.now(), n, summary_chars)

    def due_offset(self, ref: ChatRef) -> tuple[datetime, timedelta]:
        """The chat's next digest time, and the clock offset that puts the clock just after it."""
        sub = self.chats.get_subscription(ref)
        assert sub is not None and sub.next_due_at is not None
        return sub.next_due_at, self.clock.offset + sub.next_due_at - self.clock.now() + timedelta(seconds=1)


@pytest.fixture
async def bot(sqlite_store: Store) -> AsyncIterator[Bot]:
    clock = ShiftClock()
    async with FakeTelegramAPI() as api:
        chats = ChatStore(sqlite_store.engine)
        service = CommandService(chats, admins={f"telegram:{OWNER}"}, defaults=DEFAULTS,
                                 feed_admin=StoreFeedAdmin(sqlite_store, allow_private=False, probe=reachable_feed), clock=clock.now,
                                 topics=("world", "economy"))
        tg = TelegramChat(TOKEN, service, api_root=api.root, poll_timeout_s=1)
        runtime = ChatRuntime(chats, DEFAULTS, [tg], services=[tg], clock=clock,
                              config=RuntimeConfig(scheduler_tick_s=0.1, claim_interval_s=0.05, lease_s=30))
        await runtime.start()
        try:
            yield Bot(api, sqlite_store, chats, runtime, clock)
        finally:
            await runtime.stop()
        assert api.unexpected == [], api.unexpected


async def command(b: Bot, chat_id: int, user_id: int, text: str, n_replies: int = 1, **kw) -> list[Sent]:
    before = len(b.api.sent_to(chat_id))
    b.api.user_message(chat_id, user_id, text, **kw)
    return (await b.api.wait_sent(chat_id, before + n_replies))[before:]


async def test_subscribe_schedule_digest_summary(bot: Bot) -> None:
    api = bot.api
    assert [c["command"] for c in api.commands][:2] == ["start", "help"]
    assert "addfeed" not in {c["command"] for c in api.commands}
    api.add_chat(USER)
    (reply,) = await command(bot, USER, USER, "/subscribe")
    assert "Subscribed this chat" in reply.plain and "08:00" in reply.plain
    due_at, offset = bot.due_offset(ChatRef("telegram", str(USER)))
    ids = bot.produce_stories(6, summary_chars=1500, at=due_at)
    bot.clock.offset = offset
    await api.wait_sent(USER, 3, timeout=10)
    await bot.runtime.drain(5)
    parts = api.sent_to(USER)[1:]
    assert len(parts) >= 2, "4 long stories must need more than one message"
    assert all(p.parse_mode == "HTML" and p.link_preview_disabled for p in parts)
    text = "\n".join(p.plain for p in parts)
    # Ranked: more outlets first; the 4 best of 6; special characters arrive unescaped as text.
    assert "Story 3: leaders meet <again> & talk" in text
    assert "also reported by" in text and "BBC <World>" in text
    assert text.count("leaders meet") == DEFAULTS.max_stories
    links = [e["url"] for p in parts for e in p.entities if e["type"] == "text_link"]
    assert any(u.endswith("?a=1&b=<2>") for u in links)
    # Split between stories: the first part opens with the header, every other with a story's number.
    assert parts[0].plain.startswith("News digest")
    assert all(p.plain[:2] in {f"{k}." for k in range(1, 5)} for p in parts[1:])
    sub = bot.chats.get_subscription(ChatRef("telegram", str(USER)))
    assert sub is not None and sub.last_digest_at is not None and sub.next_due_at > bot.clock.now()
    assert set(bot.chats.sent_versions(sub.id)) <= set(ids)

    (r1,) = await command(bot, USER, USER, "/summary")
    assert "No new stories since" in r1.plain
    (r2,) = await command(bot, USER, USER, "/summary 6h")
    assert "Please wait" in r2.plain and "try again after" in r2.plain
    bot.clock.offset += timedelta(seconds=31)
    before = len(api.sent_to(USER))
    api.user_message(USER, USER, "/summary 12h")
    # Wait for every part (the reply is several messages), so the next command's reply is not mistaken for one.
    await api.wait_for(lambda: "".join(s.plain for s in api.sent_to(USER)[before:]).count("leaders meet")
                       == DEFAULTS.max_stories)
    assert api.sent_to(USER)[before].plain.startswith("News digest")
    (bad,) = await command(bot, USER, USER, "/summary yesterday")
    assert "neither a period" in bad.plain


async def test_permissions_and_feed_admin(bot: Bot) -> None:
    api = bot.api
    api.add_chat(USER)
    api.add_chat(OWNER)
    (r,) = await command(bot, USER, USER, "/addfeed https://example.com/rss")
    assert "only the bot's owners" in r.plain
    (r,) = await command(bot, OWNER, OWNER, "/addfeed https://example.com/rss")
    assert "Added feed" in r.plain
    (r,) = await command(bot, OWNER, OWNER, "/addfeed http://127.0.0.1:8080/rss")
    assert "not allowed" in r.plain
    (r,) = await command(bot, OWNER, OWNER, "/addfeed")
    assert "Usage: /addfeed URL" in r.plain
    (r,) = await command(bot, OWNER, OWNER, "/feeds")
    assert "News from example.com" in r.plain and 'href="https://example.com/rss"' in r.text
    opml = (b'<?xml version="1.0"?><opml version="2.0"><head/><body>'
            b'<outline type="rss" text="A" xmlUrl="https://a.example/feed"/>'
            b'<outline type="rss" text="L" xmlUrl="http://localhost/feed"/></body></opml>')
    (r,) = await command(bot, OWNER, OWNER, "/importopml", document=("feeds.opml", opml))
    assert "1 added" in r.plain and "1 rejected" in r.plain
    (r,) = await command(bot, USER, USER, "/importopml", document=("feeds.opml", opml))
    assert "only the bot's owners" in r.plain
    msgs = await command(bot, OWNER, OWNER, "/exportopml", n_replies=2)
    doc = msgs[-1]
    assert doc.method == "sendDocument" and b"https://a.example/feed" in doc.document
    (r,) = await command(bot, USER, USER, "/frobnicate")
    assert "I don't know /frobnicate" in r.plain and "/help" in r.plain
    (r,) = await command(bot, USER, USER, "/help")
    assert "/subscribe" in r.plain and "/addfeed" not in r.plain
    (r,) = await command(bot, OWNER, OWNER, "/help")
    assert "/addfeed" in r.plain

    group = -100
    api.add_chat(group, "group", "World desk", admins={GROUP_ADMIN})
    (r,) = await command(bot, group, 8, "/subscribe")
    assert "only this group's administrators" in r.plain
    (r,) = await command(bot, group, GROUP_ADMIN, "/subscribe@newsdigest_test_bot")
    assert "Subscribed" in r.plain
    api.user_message(group, 8, "/subscribe@some_other_bot")
    (r,) = await command(bot, group, GROUP_ADMIN, "/settings")
    assert r.reply_markup is not None
    before = len(api.sent)
    api.press_button(r, 8, "st:m:5")
    await api.wait_for(lambda: len(api.callback_answers) >= 1)
    assert "administrators" in api.callback_answers[-1]["text"] and len(api.sent) == before
    api.press_button(r, GROUP_ADMIN, "st:m:5")
    await api.wait_for(lambda: any(s.method == "editMessageText" for s in api.sent))
    edited = [s for s in api.sent if s.method == "editMessageText"][-1]
    assert "at most 5" in edited.plain and "✓ 5 stories" in str(edited.reply_markup)
    assert api.callback_answers[-1]["text"] == "Saved."
    sub = bot.chats.get_subscription(ChatRef("telegram", str(group)))
    assert sub is not None and sub.max_stories == 5


async def test_plain_text_in_a_private_chat_gets_a_hint_to_send_help(bot: Bot) -> None:
    api, group = bot.api, -500
    api.add_chat(USER)
    api.add_chat(group, "group", "G", admins={GROUP_ADMIN})
    api.user_message(group, USER, "hello everyone")  # people talking in a group: no answer
    (r,) = await command(bot, USER, USER, "hello")
    assert "/help" in r.plain and "/summary" in r.plain
    (r,) = await command(bot, group, USER, "/help")
    assert "Commands" in r.plain and len(api.sent_to(group)) == 1


async def test_blocked_rate_limited_migrated_and_forum(bot: Bot) -> None:
    api = bot.api
    blocked, limited, group, forum = 60, 61, -200, -300
    api.add_chat(blocked)
    api.add_chat(limited)
    api.add_chat(group, "group", "G", admins={GROUP_ADMIN})
    api.add_chat(forum, "supergroup", "Forum", admins={GROUP_ADMIN}, is_forum=True)
    for c, u in ((blocked, blocked), (limited, limited), (group, GROUP_ADMIN)):
        await command(bot, c, u, "/subscribe")
    await command(bot, forum, GROUP_ADMIN, "/subscribe", thread_id=77)
    bot.produce_stories(3)
    api.block(blocked)
    api.rate_limit_next(limited, 1)
    api.migrate(group, -2000)
    # Everyone's next digest is at 08:00 UTC: one jump makes them all due.
    with bot.store.engine.begin() as conn:
        conn.execute(update(subscriptions).values(next_due_at=bot.clock.now() - timedelta(seconds=1)))
    t0 = asyncio.get_running_loop().time()
    await api.wait_sent(limited, 2, timeout=10)
    assert asyncio.get_running_loop().time() - t0 >= 0.9, "retry_after must be honoured"
    await api.wait_sent(-2000, 1, timeout=10)
    forum_msgs = await api.wait_sent(forum, 2, timeout=10)
    assert forum_msgs[-1].thread_id == 77
    await bot.runtime.drain(10)
    sub = bot.chats.get_subscription(ChatRef("telegram", str(blocked)))
    assert sub is not None and not sub.active and sub.paused_reason.startswith("blocked")
    assert sub.max_stories == DEFAULTS.max_stories and sub.schedule.times == ("08:00",)
    assert len(api.sent_to(limited)) == 2, "the rate-limited part is sent exactly once"
    assert bot.chats.get_subscription(ChatRef("telegram", "-2000")) is not None
    assert bot.chats.get_subscription(ChatRef("telegram", str(group))) is None
    assert bot.chats.outbox_counts().get("pending", 0) == 0
    api.chats[blocked].blocked = False
    (r,) = await command(bot, blocked, blocked, "/subscribe")
    assert "resumed" in r.plain


# --- crash in the middle of a delivery --------------------------------------------------------------------


def _worker(db_url: str, api_root: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.fakes.chat_worker", "--db", db_url, "--api", api_root,
                             "--lease", "1"], cwd=ROOT, env=env)


async def _wait_exit(p: subprocess.Popen, timeout: float) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while p.poll() is None:
        if asyncio.get_running_loop().time() > deadline:
            p.kill()
            raise TimeoutError("worker did not exit")
        await asyncio.sleep(0.05)
    return p.returncode


async def test_killed_mid_delivery_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    store = Store.open(db_url)
    chats = ChatStore(store.engine)
    now = utcnow()
    seed(store, now, 6, summary_chars=1800)
    targets = [70, 71, 72]
    from bot.chat.render_telegram import TelegramRenderer
    from bot.pipeline.digest import build_digest

    expected: dict[int, list[str]] = {}
    for c in targets:
        sub, _ = chats.subscribe(ChatRef("telegram", str(c)), DEFAULTS, now, next_due=next_due)
        digest = build_digest(chats.candidate_stories(now - timedelta(days=1), now), now=now,
                              since=now - timedelta(days=1), max_stories=6)
        parts = [m.to_payload() for m in TelegramRenderer().render_digest(digest)]
        assert len(parts) >= 3
        enqueue_messages(chats, sub.chat_db_id, f"crash-{c}", parts, now, sub.id)
        expected[c] = [p["text"] for p in parts]
    async with FakeTelegramAPI() as api:
        for c in targets:
            api.add_chat(c)
        api.hold[71] = asyncio.Event()
        first = _worker(db_url, api.root)
        try:
            # Chat 70 gets part 1 confirmed, chat 71's first part hangs in flight: then the process dies.
            await api.wait_for(lambda: 71 in api.held and len(api.sent_to(70)) >= 2, timeout=30)
            await asyncio.sleep(0.2)
            first.send_signal(signal.SIGKILL)
            assert await _wait_exit(first, 10) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        confirmed = {r["id"] for r in outbox_rows(chats) if r["status"] == "sent"}
        assert confirmed, "some parts were confirmed before the kill"
        api.hold.pop(71).set()
        second = _worker(db_url, api.root)
        try:
            await api.wait_for(lambda: all(len(api.sent_to(c)) == len(expected[c]) for c in targets), timeout=40)
            await asyncio.sleep(0.5)
            second.send_signal(signal.SIGTERM)
            assert await _wait_exit(second, 20) == 0, "SIGTERM shuts down cleanly"
        finally:
            if second.poll() is None:
                second.kill()
        for c in targets:
            assert [s.text for s in api.sent_to(c)] == expected[c], f"chat {c}: lost, duplicated or reordered"
        assert api.unexpected == []
    assert chats.outbox_counts() == {"sent": sum(len(v) for v in expected.values())}
    store.close()


async def test_digest_sentences_carry_their_sources_and_story_lists_outlets_and_timeline(bot: Bot) -> None:
    from bot.storage.stories import sentences_from_json
    from bot.storage.tables import stories
    from tests.fakes.stories import KERALA, add_summarized_story, bump_story

    api = bot.api
    api.add_chat(USER)
    sid = add_summarized_story(bot.store, bot.clock.now())
    with bot.store.engine.connect() as conn:
        stored = sentences_from_json(conn.execute(stories.select().where(stories.c.id == sid)).one().summary_sources)
    assert len(stored) >= 2 and {s.outlet for s in stored} == {"Reuters", "BBC <World>"}
    (digest,) = await command(bot, USER, USER, "/summary 12h")
    plain = digest.plain
    marks = [(plain[e["offset"]:e["offset"] + e["length"]], e["url"]) for e in digest.entities
             if e["type"] == "text_link"]
    for s in stored:
        # Each sentence is verbatim from the article its mark links to, and the mark names that article's outlet.
        k = next(i for i, (outlet, _, _) in enumerate(KERALA) if outlet == s.outlet)
        assert s.text in KERALA[k][2] and s.url == f"https://outlet{k}.example/kerala?a={k}&b=<x>"
        assert f"{s.text} [{s.outlet}]" in plain
        assert (s.outlet, s.url) in marks
    assert plain.rstrip().endswith(f"/story_{sid}")

    # Tapping the item's /story_<id> (Telegram sends it as a command) gives every outlet and the timeline.
    (story,) = await command(bot, USER, USER, f"/story_{sid}")
    lines = story.plain.split("\n")
    assert lines[0] == f"Story {sid}: Floods hit Kerala"
    assert "Outlets (2): Reuters, BBC <World>" in lines
    links = {e["url"] for e in story.entities if e["type"] == "text_link"}
    assert {f"https://outlet{k}.example/kerala?a={k}&b=<x>" for k in range(2)} <= links
    timeline = lines[lines.index("Timeline") + 1:]
    assert timeline[0].endswith("Reuters: Floods hit Kerala") and timeline[1].endswith("BBC <World>: Kerala floods kill 40")
    assert timeline[0] < timeline[1], "in order of arrival"
    (same,) = await command(bot, USER, USER, f"/story {sid}")
    assert same.plain == story.plain
    bump_story(bot.store, sid, bot.clock.now(), "Rain is expected to continue for three more days.")
    (updated,) = await command(bot, USER, USER, f"/story {sid}")
    assert updated.plain.split("\n")[-1].endswith(" · substantial update (version 2)")
    (missing,) = await command(bot, USER, USER, "/story 99999")
    assert "There is no story 99999" in missing.plain
    (usage,) = await command(bot, USER, USER, "/story")
    assert "Usage: /story ID" in usage.plain
    assert "story" in {c["command"] for c in api.commands}


TOLL = ("AP <News>", "Kerala flood toll rises to 52 as Pinarayi Vijayan visits Wayanad",
        "The death toll in Kerala rose to 52 on Wednesday. Chief Minister Pinarayi Vijayan visited the worst-hit "
        "district of Wayanad.")
REPEAT = ("DW", "Kerala floods", "Rivers burst their banks across Kerala on Monday, flooding hundreds of villages.")


async def _digest_round(bot: Bot, chats: tuple[int, ...], report: tuple[str, str, str] | None, k: int,
                        sid: int) -> dict[int, list[Sent]]:
    """Move the clock past the chats' next digest time, with `report` joining the story just before it; returns
    what each chat got in that round."""
    ref = ChatRef("telegram", str(chats[0]))
    due, offset = bot.due_offset(ref)
    if report is not None:
        add_report(bot.store, sid, k, report, due - timedelta(minutes=10))
    before = {c: len(bot.api.sent_to(c)) for c in chats}
    bot.clock.offset = offset
    await bot.api.wait_for(lambda: all(
        bot.chats.get_subscription(ChatRef("telegram", str(c))).next_due_at > due for c in chats))
    await bot.runtime.drain(10)
    return {c: bot.api.sent_to(c)[before[c]:] for c in chats}


async def test_a_substantial_update_goes_as_a_reply_to_the_earlier_digest_saying_what_is_new(bot: Bot) -> None:
    from tests.fakes.stories import add_summarized_story

    api, gone = bot.api, USER + 10
    for c in (USER, gone):
        api.add_chat(c)
        await command(bot, c, c, "/subscribe")
    due, _ = bot.due_offset(ChatRef("telegram", str(USER)))
    sid = add_summarized_story(bot.store, due - timedelta(minutes=5))
    got = await _digest_round(bot, (USER, gone), None, 0, sid)
    first = {c: msgs[0] for c, msgs in got.items()}
    assert all(len(m) == 1 and "Floods hit Kerala" in m[0].plain for m in got.values())
    api.delete_message(gone, first[gone].message_id)

    # One more outlet repeating what the chats read is not news: nothing is sent.
    assert await _digest_round(bot, (USER, gone), REPEAT, 2, sid) == {USER: [], gone: []}

    # A new toll, new names and outlets: a reply to the digest it went in, or a message of its own where that
    # digest was deleted.
    got = await _digest_round(bot, (USER, gone), TOLL, 3, sid)
    (up,), (alone,) = got[USER], got[gone]
    assert up.reply_to == first[USER].message_id and alone.reply_to is None
    for m in (up, alone):
        assert m.plain.startswith("↪ Update: ") and "/story_" + str(sid) in m.plain
        news = m.plain.split("\n")[1]
        assert news.startswith("New: 52, Pinarayi Vijayan, Wayanad")
        assert news.endswith("now also reported by DW, AP <News>"), "DW came in an update the chat never got"
        assert ("New: 52", "italic") in {(m.plain[e["offset"]:e["offset"] + 7], e["type"]) for e in m.entities}
    rows = [r for r in outbox_rows(bot.chats) if r["payload"].get("reply_to")]
    assert [(r["story_ids"], r["status"]) for r in rows] == [([sid], "sent")] * 2, "one follow-up per chat"

    # Sent once: the next digest has nothing for it; a later update answers the follow-up itself.
    assert await _digest_round(bot, (USER, gone), None, 0, sid) == {USER: [], gone: []}
    got = await _digest_round(bot, (USER,), ("Al Jazeera", "Kerala floods displace 9,000",
                                             "About 9,000 people were moved to relief camps in Kottayam."), 4, sid)
    (again,) = got[USER]
    assert again.reply_to == up.message_id and "New: 9,000 · now also reported by Al Jazeera" in again.plain
    assert api.unexpected == []

"""CommandService: every command's parsing, permissions, cooldown and replies, over a real database."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot.chat.commands import COMMANDS, CommandService, needs_chat_admin, parse_command
from bot.chat.feed_admin import StoreFeedAdmin
from bot.errors import ExtractError, FetchError
from bot.net import utcnow
from bot.ports import GROUP, ChatRef, Invocation, LinkSummary, Reply
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.stories import seed

DEFAULTS = DigestDefaults(times=("08:00", "18:00"), timezone="Europe/Berlin", max_stories=3,
                          topics=("world",), summary_cooldown_s=60)
PRIVATE = ChatRef("telegram", "10")
GROUP_CHAT = ChatRef("telegram", "-10", kind=GROUP, title="desk")


class Clock:
    def __init__(self) -> None:
        self.t = utcnow()

    def __call__(self) -> datetime:
        return self.t


async def summarize_fixture(url: str) -> LinkSummary:
    if "missing" in url:
        raise FetchError(url, "HTTP 404", transient=False, status=404)
    if "empty" in url:
        raise ExtractError("no text")
    return LinkSummary(url=url, title="A <title>", summary="What happened.", outlet="Example")


@pytest.fixture
def svc(store: Store) -> CommandService:
    return CommandService(ChatStore(store.engine), admins={"telegram:1"}, defaults=DEFAULTS,
                          feed_admin=StoreFeedAdmin(store, allow_private=False), summarize=summarize_fixture,
                          topics=("world", "economy"), clock=Clock())


def text(reply: Reply) -> str:
    return "\n".join("".join(s.text for s in b) for b in reply.blocks)


async def run(svc: CommandService, command: str, *args: str, chat: ChatRef = PRIVATE, user: str = "5",
              admin: bool = True, **kw) -> Reply:
    return await svc.handle(Invocation("telegram", chat, user, command, tuple(args), user_is_chat_admin=admin, **kw))


def test_parse_command() -> None:
    assert parse_command("/Summary@Bot 6h", "bot") == ("summary", ("6h",))
    assert parse_command("/summary@other 6h", "bot") is None
    assert parse_command("hello") is None and parse_command("/") is None
    assert needs_chat_admin("subscribe") and not needs_chat_admin("summary")
    assert len({c.name for c in COMMANDS}) == len(COMMANDS)


async def test_subscribe_settings_unsubscribe(svc: CommandService) -> None:
    r = await run(svc, "subscribe")
    assert "Subscribed this chat" in text(r) and "Europe/Berlin" in text(r)
    assert "already subscribed" in text(await run(svc, "subscribe"))
    r = await run(svc, "settings")
    assert r.buttons and "at most 3" in text(r)
    assert "at 07:15, 21:00" in text(await run(svc, "settings", "times", "21:00,7:15"))
    assert "every 6 h" in text(await run(svc, "settings", "every", "6"))
    assert "at most 12" in text(await run(svc, "settings", "max", "12"))
    assert "America/New_York" in text(await run(svc, "settings", "timezone", "America/New_York"))
    assert "Topics: economy" in text(await run(svc, "settings", "topics", "economy"))
    assert "Topics: all" in text(await run(svc, "settings", "topics", "all"))
    for args, msg in [(("times", "25:00"),  "not a time"), (("every", "0"), "Usage: /settings every"),
                      (("max", "99"), "from 1 to 30"), (("timezone", "Mars/Base"), "not a time zone"),
                      (("topics", "cats"), "Unknown topic"), (("colour", "red"), "Unknown setting")]:
        assert msg in text(await run(svc, "settings", *args)), args
    r = await run(svc, "callback", callback_data="st:m:5")
    assert r.edit and r.notice == "Saved." and "at most 5" in text(r)
    r = await run(svc, "callback", callback_data="st:p:world")
    assert "Topics: world" in text(r)
    assert "no longer valid" in text(await run(svc, "callback", callback_data="zz"))
    assert "Unsubscribed" in text(await run(svc, "unsubscribe"))
    assert "not subscribed" in text(await run(svc, "unsubscribe"))
    assert "Subscribe first" in text(await run(svc, "settings")) or "not subscribed" in text(await run(svc, "settings"))
    r = await run(svc, "subscribe")
    assert "resumed" in text(r) and "at most 5" in text(r), "settings survive unsubscribe"


async def test_group_permissions(svc: CommandService) -> None:
    for cmd in ("subscribe", "unsubscribe", "settings"):
        assert "only this group's administrators" in text(await run(svc, cmd, chat=GROUP_CHAT, admin=False))
    assert "Subscribed" in text(await run(svc, "subscribe", chat=GROUP_CHAT, admin=True))
    r = await run(svc, "callback", chat=GROUP_CHAT, admin=False, callback_data="st:m:5")
    assert "administrators" in (r.notice or "")
    # Anyone may ask for a summary or help.
    assert "Commands" in text(await run(svc, "help", chat=GROUP_CHAT, admin=False))


async def test_owner_commands(svc: CommandService) -> None:
    assert "only the bot's owners" in text(await run(svc, "feeds"))
    assert "only the bot's owners" in text(await run(svc, "addfeed", "https://e.example/rss"))
    assert "Added feed" in text(await run(svc, "addfeed", "https://e.example/rss", user="1"))
    assert "already in the list" in text(await run(svc, "addfeed", "https://e.example/rss", user="1"))
    for bad in ("http://10.0.0.1/rss", "file:///etc/passwd", "http://localhost/x"):
        assert "not allowed" in text(await run(svc, "addfeed", bad, user="1")), bad
    listing = text(await run(svc, "feeds", user="1"))
    assert "e.example/rss" in listing
    feed_id = listing.split("\n")[1].split()[0]
    assert "Removed feed" in text(await run(svc, "removefeed", feed_id, user="1"))
    assert "No feed" in text(await run(svc, "removefeed", feed_id, user="1"))
    assert "caption /importopml" in text(await run(svc, "importopml", user="1"))
    assert "not an OPML" in text(await run(svc, "importopml", user="1", attachment=b"hello"))
    r = await run(svc, "exportopml", user="1")
    assert r.file is not None and r.file.data.startswith(b"<?xml")


async def test_summary_period_cooldown_and_link(svc: CommandService, store: Store) -> None:
    clock: Clock = svc.clock  # type: ignore[assignment]
    seed(store, clock.t, 5)
    r = await run(svc, "summary")
    assert r.digest is not None and len(r.digest.stories) == 3
    r = await run(svc, "summary", "2d")
    assert "Please wait 60 s" in text(r) and "try again after" in text(r)
    clock.t += timedelta(seconds=61)
    r = await run(svc, "summary", "90m")
    assert r.digest is not None and [s.title for s in r.digest.stories] == ["Story 0: leaders meet <again> & talk"]
    clock.t += timedelta(seconds=61)
    assert "longest period is 7d" in text(await run(svc, "summary", "30d"))
    assert "not a period" in text(await run(svc, "summary", "soon"))
    r = await run(svc, "summary", "https://news.example/a")
    assert "A <title>" in text(r) and r.blocks[2][0].url == "https://news.example/a"
    assert "Please wait" in text(await run(svc, "summary", "https://news.example/b"))
    clock.t += timedelta(seconds=61)
    assert "couldn't fetch" in text(await run(svc, "summary", "https://news.example/missing"))
    clock.t += timedelta(seconds=61)
    assert "couldn't find an article" in text(await run(svc, "summary", "https://news.example/empty"))
    assert "can't open that link" in text(await run(svc, "summary", "ftp://x.example/a"))


async def test_unknown_and_internal_errors(svc: CommandService) -> None:
    assert "I don't know /nope" in text(await run(svc, "nope"))
    svc.chats = None  # type: ignore[assignment]
    r = await run(svc, "subscribe")
    assert "went wrong on my side" in text(r)


def buttons_of(reply: Reply) -> dict[str, str]:
    return {b.data: b.label for row in reply.buttons for b in row}


async def test_topic_buttons_show_every_topic_and_an_explicit_all_state(store: Store) -> None:
    from bot.chat.render_discord import DiscordRenderer

    defaults = DigestDefaults(topics=("geopolitics",), summary_cooldown_s=60)
    svc = CommandService(ChatStore(store.engine), admins=set(), defaults=defaults,
                         topics=("world", "geopolitics", "energy"), clock=Clock())
    r = await run(svc, "subscribe")
    assert "Topics: geopolitics." in text(r)
    r = await run(svc, "settings")
    labels = buttons_of(r)
    assert labels["st:p:*"] == "All topics" and labels["st:p:geopolitics"] == "✓ geopolitics"
    assert labels["st:p:world"] == "world" and labels["st:p:energy"] == "energy"
    hint = text(r)
    assert "economy" not in hint and "topics geopolitics world" in hint and "geopolitics, world, energy" in hint

    # Un-ticking the last topic does not silently mean "all topics": it is refused and says how to get all.
    r = await run(svc, "callback", callback_data="st:p:geopolitics")
    assert "only topic left" in (r.notice or "") and "Topics: geopolitics." in text(r)
    r = await run(svc, "callback", callback_data="st:p:world")
    assert "Topics: geopolitics, world." in text(r) and buttons_of(r)["st:p:world"] == "✓ world"
    r = await run(svc, "callback", callback_data="st:p:*")
    assert "Topics: all topics." in text(r) and r.notice == "Saved: all topics."
    labels = buttons_of(r)
    assert labels["st:p:*"] == "✓ All topics" and not any(v.startswith("✓") for k, v in labels.items()
                                                            if k.startswith("st:p:") and k != "st:p:*")
    # From "all topics", ticking one topic chooses just that one, and the buttons say so.
    r = await run(svc, "callback", callback_data="st:p:energy")
    assert "Topics: energy." in text(r) and buttons_of(r)["st:p:*"] == "All topics"
    assert "Topics: all topics." in text(await run(svc, "settings", "topics", "all"))
    assert "no longer offered" in text(await run(svc, "callback", callback_data="st:p:sports"))
    # Discord shows every topic button too (5 buttons a row, 5 rows at most).
    (m,) = DiscordRenderer().render_reply(await run(svc, "settings"))
    shown = {b.data for row in m.buttons for b in row}
    assert {"st:p:*", "st:p:geopolitics", "st:p:world", "st:p:energy"} <= shown


def test_chat_topics_are_the_defaults_and_every_scored_topic() -> None:
    from pathlib import Path

    from bot.chat.wiring import chat_topics
    from bot.pipeline.topic import WORLD
    from bot.settings import FeedsFile, TopicSpecConfig

    ff = FeedsFile(path=Path("feeds.yaml"), digest=DigestDefaults(topics=("energy",)),
                   topics=(TopicSpecConfig(name="energy", description="Energy policy, oil and gas"),))
    names = chat_topics(ff)
    # The default first, then the built-in topics articles are scored on, each once.
    assert names[0] == "energy" and WORLD in names and len(names) == len(set(names))

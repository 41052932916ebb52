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

"""CommandService: every command's parsing, permissions, cooldown and replies, over a real database."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot.chat.commands import COMMANDS, CommandService, needs_chat_admin, parse_command
from bot.chat.feed_admin import StoreFeedAdmin
from bot.clock import utcnow
from bot.errors import ExtractError, FetchError
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
    if "killer" in url:
        from bot.runner import ParserCrashError

        raise ParserCrashError()
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


async def test_owner_commands(svc: CommandService, store: Store, feed_server) -> None:  # noqa: ANN001
    assert "only the bot's owners" in text(await run(svc, "feeds"))
    assert "only the bot's owners" in text(await run(svc, "addfeed", "https://e.example/rss"))
    for bad in ("http://10.0.0.1/rss", "file:///etc/passwd", "http://localhost/x"):
        assert "not allowed" in text(await run(svc, "addfeed", bad, user="1")), bad
    # The feed server listens on 127.0.0.1: a bot that may reach private addresses adds its feeds.
    svc.feed_admin = StoreFeedAdmin(store, allow_private=True)
    url = feed_server.url("/feeds/wsj_2020-04-27T2107Z.xml")
    r = text(await run(svc, "addfeed", url, user="1"))
    assert r.startswith("Added feed") and "WSJ.com: World News" in r, r
    assert "already in the list" in text(await run(svc, "addfeed", url, user="1"))
    listing = text(await run(svc, "feeds", user="1"))
    assert "WSJ.com: World News" in listing
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
    assert "neither a period like 6h or 2d nor a link" in text(await run(svc, "summary", "soon"))
    r = await run(svc, "summary", "https://news.example/a")
    assert "A <title>" in text(r) and r.blocks[2][0].url == "https://news.example/a"
    assert "Please wait" in text(await run(svc, "summary", "https://news.example/b"))
    clock.t += timedelta(seconds=61)
    assert text(await run(svc, "summary", "https://news.example/missing")) == "I couldn't fetch that page: HTTP 404."
    assert "couldn't find an article" in text(await run(svc, "summary", "https://news.example/empty"))
    # A page that kills the parse worker reading it; the chat's cooldown is not spent on it either.
    assert text(await run(svc, "summary", "https://news.example/killer")) == "I couldn't read that page."
    assert text(await run(svc, "summary", "ftp://x.example/a")) == \
        "That URL is not allowed: only http and https URLs are allowed."


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


async def test_summary_assumes_https_for_a_bare_host_or_path(svc: CommandService) -> None:
    asked: list[str] = []

    async def summarize(url: str) -> LinkSummary:
        asked.append(url)
        return LinkSummary(url=url, title="T", summary="S.")

    svc.summarize = summarize
    clock: Clock = svc.clock  # type: ignore[assignment]
    for arg in ("www.example.com", "www.example.com/x", "example.com/news/1?id=2", "<bbc.co.uk/news>"):
        r = await run(svc, "summary", arg)
        assert not r.error and text(r).startswith("T"), (arg, text(r))
        clock.t += timedelta(seconds=61)
    assert asked == ["https://www.example.com", "https://www.example.com/x", "https://example.com/news/1?id=2",
                     "https://bbc.co.uk/news"]


async def test_summary_periods_must_be_positive_and_values_are_quoted_plainly(svc: CommandService) -> None:
    for arg in ("0h", "0", "0.0d"):
        assert text(await run(svc, "summary", arg)) == "The period must be more than 0 and at most 7d, e.g. 90m, 6h or 2d."
    assert text(await run(svc, "summary", "8d")) == "The longest period is 7d."
    assert text(await run(svc, "summary", "garbage")).startswith("“garbage” is neither a period")
    await run(svc, "subscribe")
    assert text(await run(svc, "settings", "timezone", "Mars/Base")).startswith("“Mars/Base” is not a time zone")
    assert text(await run(svc, "settings", "colour", "red")).startswith("Unknown setting “colour”.")
    assert "Unknown topic “cats”." in text(await run(svc, "settings", "topics", "cats"))
    assert text(await run(svc, "removefeed", "999", user="1")).startswith("No feed “999”.")
    for reply in [await run(svc, "summary", "it's"), await run(svc, "settings", "timezone", "it's")]:
        assert "'" not in text(reply).replace("it's", ""), text(reply)


async def test_a_failed_or_private_link_leaves_the_cooldown_and_is_refused_like_addfeed(svc: CommandService) -> None:
    for url in ("http://10.0.0.1/a", "http://[::1]/a", "http://127.0.0.1:8080/x", "http://localhost/a"):
        summary = text(await run(svc, "summary", url))
        addfeed = text(await run(svc, "addfeed", url, user="1"))
        assert summary == addfeed and summary.startswith("That URL is not allowed: "), (summary, addfeed)
        assert summary.count("(") == 0, summary
    # None of those, nor a 404 or a page without an article, started the cooldown.
    assert "couldn't fetch" in text(await run(svc, "summary", "https://news.example/missing"))
    assert "couldn't find an article" in text(await run(svc, "summary", "https://news.example/empty"))
    assert "A <title>" in text(await run(svc, "summary", "https://news.example/a"))
    assert "Please wait 60 s" in text(await run(svc, "summary", "https://news.example/a"))


async def test_cooldown_reply_tells_the_time_in_the_chats_zone(svc: CommandService) -> None:
    from datetime import UTC

    clock: Clock = svc.clock  # type: ignore[assignment]
    clock.t = datetime(2026, 7, 1, 10, 0, 0, tzinfo=UTC)
    await run(svc, "subscribe")  # DEFAULTS: Europe/Berlin, CEST in July
    await run(svc, "summary")
    assert text(await run(svc, "summary")).endswith("(try again after 12:01:00 CEST).")
    await run(svc, "settings", "timezone", "America/New_York")
    assert text(await run(svc, "summary")).endswith("(try again after 06:01:00 EDT).")
    other = ChatRef("telegram", "11")
    await run(svc, "summary", chat=other)
    assert text(await run(svc, "summary", chat=other)).endswith("(try again after 10:01:00 UTC).")


async def test_addfeed_fetches_and_parses_once_and_refuses_with_the_reason(store: Store, feed_server) -> None:  # noqa: ANN001
    admin = StoreFeedAdmin(store, allow_private=True)
    svc = CommandService(ChatStore(store.engine), admins={"telegram:1"}, defaults=DEFAULTS, feed_admin=admin)
    feed_server.files["/page.html"] = (b"<!doctype html><html><head><title>Example News</title></head>"
                                       b"<body><p>Read our stories.</p></body></html>")
    feed_server.files["/junk.xml"] = b"<notes><note>hello</note></notes>"
    for path, expected in [("/page.html", 'That is a web page "Example News", not an RSS or Atom feed; '
                                          "look there for its feed's link."),
                           ("/status/404", "I couldn't fetch that feed: HTTP 404."),
                           ("/junk.xml", "That is not an RSS or Atom feed")]:
        r = text(await run(svc, "addfeed", feed_server.url(path), user="1"))
        assert r.startswith(expected) and "(" not in r, r
    assert store.list_feeds() == [], "nothing refused is added"
    url = feed_server.url("/feeds/bbc_2020-04-27T2107Z.xml")
    r = await run(svc, "addfeed", url, user="1")
    (row,) = store.list_feeds()
    assert text(r) == f"Added feed {row.id}: {row.display_name}. Its stories are collected from the next poll on."
    assert row.title and row.display_name == row.title and row.last_error is None
    assert r.blocks[0][3].url == row.url
    assert feed_server.hits["/feeds/bbc_2020-04-27T2107Z.xml"] == 1, "fetched once"


async def test_help_on_discord_lists_only_what_can_be_typed_there(store: Store) -> None:
    svc = CommandService(ChatStore(store.engine), admins={"discord:1"}, defaults=DEFAULTS, topics=("world",))
    chan = ChatRef("discord", "500", kind=GROUP, title="news")

    async def on_discord(command: str, *args: str, user: str = "5") -> str:
        return text(await svc.handle(Invocation("discord", chan, user, command, args, user_is_chat_admin=True)))

    help_ = await on_discord("help")
    assert "/start" not in help_ and "forum" not in help_ and "topic)" not in help_
    assert "/summary [period: 6h|2d] [link: URL]" in help_ and "in this channel (or thread)" in help_
    assert "/settings [setting] [value]" in help_
    assert "I don't know /start" in await on_discord("start")
    await on_discord("subscribe")
    settings = await on_discord("settings")
    assert "Text forms" not in settings and "/settings times" not in settings
    assert "setting: times, value: 08:00 18:00" in settings
    assert "/importopml file: OPML" in await on_discord("help", user="1")
    # Telegram keeps its own forms.
    tg = text(await run(svc, "help"))
    assert "/start" in tg and "(or forum topic)" in tg and "/summary [6h|2d|link]" in tg

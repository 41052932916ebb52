"""Platform-neutral chat commands: parsing, permissions, cooldowns and replies.

Adapters turn a platform update into an `Invocation`, call `CommandService.handle`, and render the `Reply` with
their Renderer. Nothing here knows a chat SDK.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.chat.digests import DigestBuilder
from bot.chat.owner_alerts import alerts_command
from bot.clock import utcnow
from bot.errors import BlockedURLError, CommandError, ExtractError, FetchError, ParseError, PermissionDenied
from bot.feedlist import MAX_OPML_BYTES, check_public_url, not_allowed
from bot.pipeline.digest import Schedule, next_due, parse_time_of_day
from bot.pipeline.filters import MAX_REQUIRED_TOPICS, ChatFilters, FilterError, add_entry, remove_entry, words
from bot.ports import (
    CHANNEL,
    PRIVATE,
    STORY_BUTTON,
    AlertStore,
    Block,
    Button,
    ChatRef,
    CommandStore,
    FeedAdmin,
    Invocation,
    OutgoingFile,
    Reply,
    Span,
    Summarize,
    bold,
    code,
    italic,
    link,
    para,
)
from bot.settings import DigestDefaults, canonical_timezone, parse_duration
from bot.storage.chats import Subscription

__all__ = ["COMMANDS", "CommandService", "CommandSpec", "Invocation", "Reply", "needs_chat_admin", "parse_command"]

log = logging.getLogger(__name__)

MAX_SUMMARY_PERIOD = timedelta(days=7)
MAX_FEEDS_LISTED = 40
MAX_STORIES_CHOICES = (3, 5, 8, 12)
TIME_PRESETS = (("08:00",), ("08:00", "18:00"), ("07:00", "12:00", "19:00"))
# Topic buttons: "All topics" and up to 7 topics, 4 to a row (Discord allows 5 rows of 5; 3 rows are schedule).
TOPIC_BUTTONS_PER_ROW = 4
MAX_TOPIC_BUTTONS = 7
ALL_TOPICS = "*"  # callback value of the "All topics" button (no topic can be named so)
# The filters view: one remove button per entry, 2 to a row, 4 rows a page, then a row to page and go back
# (Discord allows 5 rows of 5 buttons, labels of 80 characters).
FILTER_BUTTONS_PER_ROW = 2
FILTER_BUTTONS_PER_PAGE = 8
MAX_BUTTON_LABEL = 80
FILTER_TEXT_CHARS = 800  # of filter entries shown in the settings message (Discord's content holds 2000)


@dataclass(frozen=True)
class CommandSpec:
    """A command for /help and the platform's command menu."""

    name: str
    args: str
    description: str
    owner_only: bool = False
    # Discord's slash commands take named options, have no /start and no forum topics: its own words, or
    # None where the command does not exist there.
    discord_args: str | None = ""
    discord_description: str = ""

    def usage(self, platform: str) -> tuple[str, str] | None:
        """(arguments, description) as this platform shows them, or None where it has no such command."""
        if platform != "discord":
            return self.args, self.description
        if self.discord_args is None:
            return None
        return self.discord_args or self.args, self.discord_description or self.description


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", "", "what this bot does", discord_args=None),
    CommandSpec("help", "", "list the commands"),
    CommandSpec("subscribe", "", "get scheduled news digests in this chat (or forum topic)",
                discord_description="get scheduled news digests in this channel (or thread)"),
    CommandSpec("unsubscribe", "", "stop the scheduled digests here"),
    CommandSpec("summary", "[6h|2d|link]", "a digest now, or a summary of one article",
                discord_args="[period: 6h|2d] [link: URL]"),
    CommandSpec("story", "ID", "a digest story's outlets, links and timeline (ID: the number under the item)",
                discord_args="id: ID"),
    CommandSpec("settings", "", "schedule, time zone, stories per digest, topics, muted words and outlets, "
                "required keywords", discord_args="[setting] [value]"),
    CommandSpec("feeds", "", "list the feeds (bot owners)", owner_only=True),
    CommandSpec("addfeed", "URL", "add a feed (bot owners)", owner_only=True, discord_args="url: URL"),
    CommandSpec("removefeed", "ID", "remove a feed (bot owners)", owner_only=True, discord_args="feed: ID"),
    CommandSpec("importopml", "", "send an OPML file with this caption (bot owners)", owner_only=True,
                discord_args="file: OPML", discord_description="import an attached OPML file (bot owners)"),
    CommandSpec("exportopml", "", "the feed list as an OPML file (bot owners)", owner_only=True),
    CommandSpec("alerts", "[on|off|24h]", "owner alerts: show, turn on or off, mute for a while (bot owners)",
                owner_only=True, discord_args="[state: on|off|24h]",
                discord_description="owner alerts by direct message: show, turn on or off, mute (bot owners)"),
)
_BY_NAME = {c.name: c for c in COMMANDS}
# Commands that change a group's subscription; adapters only need to ask the platform about admins for these.
_CHAT_ADMIN_COMMANDS = frozenset({"subscribe", "unsubscribe", "settings", "callback"})


def _admins_of(inv: Invocation) -> str:
    """Who may change a chat's subscription, in the platform's own words."""
    if inv.platform == "discord":
        return "members with the Manage Server permission"
    return "this channel's administrators" if inv.chat.kind == CHANNEL else "this group's administrators"


def needs_chat_admin(command: str) -> bool:
    """True when the command changes the chat's subscription (so a group member must be a chat admin)."""
    return command in _CHAT_ADMIN_COMMANDS


def _quoted(value: str) -> str:
    """A user's value quoted plainly in a reply (not Python's 'repr')."""
    return f"“{value}”"


def parse_command(text: str, bot_username: str | None = None) -> tuple[str, tuple[str, ...]] | None:
    """'/Summary@MyBot 6h' -> ('summary', ('6h',)); None when not a command or addressed to another bot."""
    # Lone surrogates (a JSON "\\ud800" escape) can be neither stored nor sent: replaced before parsing.
    text = text.encode("utf-8", "replace").decode("utf-8").strip()
    if not text.startswith("/") or len(text) < 2:
        return None
    head, *rest = text.split()
    name, _, target = head[1:].partition("@")
    if target and bot_username and target.lower() != bot_username.lower():
        return None
    story = _STORY_LINK.fullmatch(name)
    if story:
        # A digest item's tappable "/story_123" (Telegram commands take no space) is "/story 123".
        return "story", (story.group(1), *rest)
    return name.lower(), tuple(rest)


_STORY_LINK = re.compile(r"(?i)story_([0-9]{1,9})")
MAX_STORY_MEMBERS = 40


def _whole(text: str, low: int, high: int) -> int | None:
    """A whole number from low to high, or None. str.isdigit is not enough: "9¹" passes it and fails int()."""
    if not text.isdecimal() or len(text) > 9:
        return None
    n = int(text)
    return n if low <= n <= high else None


class CommandService:
    """Handles every command for every platform; one instance per process."""

    def __init__(self, chats: CommandStore, *, admins: Iterable[str], defaults: DigestDefaults,
                 feed_admin: FeedAdmin | None = None, summarize: Summarize | None = None,
                 topics: Sequence[str] = (), clock: Callable[[], datetime] = utcnow,
                 bot_name: str = "newsdigest", allow_private_urls: bool = False) -> None:
        self.chats = chats
        self.admins = frozenset(admins)
        self.defaults = defaults
        self.digests = DigestBuilder(chats, defaults)
        self.feed_admin = feed_admin
        self.summarize = summarize
        # Every topic a chat can choose: the given ones (built-in and operator topics) and the digest defaults.
        self.topics = tuple(dict.fromkeys([*defaults.topics, *topics]))
        self.clock = clock
        self.bot_name = bot_name
        self.allow_private_urls = allow_private_urls
        self.alerts = chats if isinstance(chats, AlertStore) else None

    # entry point --------------------------------------------------------------------------------------------

    async def handle(self, inv: Invocation) -> Reply:
        """Answer one invocation; never raises (errors become polite replies)."""
        try:
            link = _link_of(inv.args[0]) if inv.command == "summary" and inv.args else None
            if link is not None:
                return await self._summary_link(inv, link)
            if inv.command == "addfeed":
                return await self._addfeed(inv)
            return await asyncio.to_thread(self._handle_sync, inv)
        except CommandError as exc:
            return Reply(blocks=(para(str(exc)),), notice=str(exc)[:190] if inv.callback_data else None,
                         error=True)
        except Exception:
            log.exception("command %s in %s failed", inv.command, inv.chat.key)
            return Reply(blocks=(para("Something went wrong on my side. Please try again in a few minutes."),),
                         error=True)

    def command_menu(self, *, owner: bool = False) -> list[tuple[str, str]]:
        """(name, description) pairs for the platform's command menu (setMyCommands): everyone's commands, and
        with `owner` the owners' commands too (for the menu in an owner's private chat)."""
        return [(c.name, c.description) for c in COMMANDS if owner or not c.owner_only]

    def plain_text_reply(self) -> Reply:
        """The answer to a message that is not a command, in a private chat."""
        return Reply(blocks=(para("I answer commands: send /help to see them, or /summary followed by a link "
                                  "for a summary of that article."),))

    def is_owner(self, inv: Invocation) -> bool:
        """True for bot owners (NEWSDIGEST_ADMINS)."""
        return inv.user_key in self.admins

    def wants_attachment(self, inv: Invocation) -> bool:
        """Whether the adapter should download the invocation's attached file (its declared size is set): only
        owners' files within the OPML limit, so nobody else can make the bot fetch anything."""
        return self.is_owner(inv) and not _too_large(inv.attachment_size)

    def _handle_sync(self, inv: Invocation) -> Reply:
        if inv.command == "callback":
            return self._callback(inv)
        handler: Callable[[Invocation], Reply] = getattr(self, f"_cmd_{self._allowed(inv)}")
        return handler(inv)

    def _allowed(self, inv: Invocation) -> str:
        """The command's name when it exists here and this user may run it; else a CommandError."""
        spec = _BY_NAME.get(inv.command)
        if spec is None or spec.usage(inv.platform) is None:
            raise CommandError(f"I don't know /{inv.command}. Send /help to see what I can do.")
        if spec.owner_only and not self.is_owner(inv):
            raise PermissionDenied("Sorry, only the bot's owners can "
                                   + ("manage their alerts." if spec.name == "alerts" else "manage the feed list."))
        return inv.command

    def _require_chat_admin(self, inv: Invocation, what: str) -> None:
        """Outside a private chat only the chat's admins (in a channel any reader can press a button)."""
        if inv.chat.kind != PRIVATE and not inv.user_is_chat_admin:
            raise PermissionDenied(f"Sorry, only {_admins_of(inv)} can {what}.")

    # users --------------------------------------------------------------------------------------------------

    def _cmd_start(self, inv: Invocation) -> Reply:
        intro = para(bold(self.bot_name), " collects world news from many outlets, merges reports of the same "
                     "story and sends short digests with links to every outlet that carries it.")
        return Reply(blocks=(intro, *self._help_blocks(inv)))

    def _cmd_help(self, inv: Invocation) -> Reply:
        return Reply(blocks=self._help_blocks(inv))

    def _help_blocks(self, inv: Invocation) -> tuple[Block, ...]:
        owner = self.is_owner(inv)
        lines = [para(bold("Commands"))]
        for c in COMMANDS:
            usage = c.usage(inv.platform)
            if usage is None or (c.owner_only and not owner):
                continue
            args, description = usage
            lines.append(para(code(f"/{c.name}" + (f" {args}" if args else "")), f" - {description}"))
        return tuple(lines)

    def _cmd_subscribe(self, inv: Invocation) -> Reply:
        self._require_chat_admin(inv, "subscribe this chat")
        sub, state = self.chats.subscribe(inv.chat, self.defaults, self.clock(), next_due=next_due)
        where = "this topic" if inv.chat.thread_id else "this chat"
        head = {"created": f"Subscribed {where}.", "resumed": f"Digests resumed for {where}.",
                "already": f"{where.capitalize()} is already subscribed."}[state]
        return Reply(blocks=(para(head), *self._settings_blocks(sub),
                             para("Change this with /settings; stop with /unsubscribe.")))

    def _cmd_unsubscribe(self, inv: Invocation) -> Reply:
        self._require_chat_admin(inv, "unsubscribe this chat")
        if self.chats.unsubscribe(inv.chat, self.clock()):
            return Reply(blocks=(para("Unsubscribed. Your settings are kept if you /subscribe again."),))
        return Reply(blocks=(para("This chat is not subscribed. Use /subscribe to get digests."),))

    def _cmd_summary(self, inv: Invocation) -> Reply:
        if len(inv.args) > 1:
            raise CommandError("Usage: /summary, /summary 6h, /summary 2d, or /summary <link to an article>")
        requested = _period(inv.args[0]) if inv.args else None
        now = self._claim_cooldown(inv.chat)
        try:
            sub = self.chats.get_subscription(inv.chat)
            digest = self.digests.on_request(now, sub, requested)
        except Exception:
            self.chats.release_summary(inv.chat, now)  # our failure: the chat may ask again at once
            raise
        if not digest.stories:
            return Reply(blocks=(para(f"No new stories since {_fmt_time(digest.since, sub)}."),))
        return Reply(digest=digest)

    def _cmd_story(self, inv: Invocation) -> Reply:
        usage = "Usage: /story ID, where ID is the number shown under a digest item (e.g. /story 123)."
        story_id = _whole(inv.args[0].lstrip("#"), 1, 999_999_999) if len(inv.args) == 1 else None
        if story_id is None:
            raise CommandError(usage)
        details = self.chats.story_details(story_id, MAX_STORY_MEMBERS + 1)
        if details is None:
            raise CommandError(f"There is no story {story_id}. {usage}")
        sub = self.chats.get_subscription(inv.chat)
        members = details.members[:MAX_STORY_MEMBERS]
        blocks: list[Block] = [para(bold(f"Story {details.id}: "), bold(details.title or "(untitled)"))]
        if details.summary.strip():
            blocks.append(para(details.summary.strip()))
        outlets: dict[str, tuple[str, str | None]] = {}
        for m in members:
            if m.core:
                outlets.setdefault((m.outlet or m.url or "").strip().lower(), (m.outlet or "source", m.url))
        spans: list[Span | str] = [bold(f"Outlets ({len(outlets)}): ")]
        for i, (name, url) in enumerate(outlets.values()):
            spans += ([", "] if i else []) + [link(name, url) if url else name]
        blocks.append(para(*spans))
        blocks.append(para(bold("Timeline")))
        # When each report arrived (the first is when the story began) and its last substantial update.
        events: list[tuple[datetime, int, Block]] = []
        for m in members:
            item: list[Span | str] = [f"{_fmt_time(m.arrived_at, sub)} · {m.outlet or 'source'}: "]
            item.append(link(m.title or m.url, m.url) if m.url else (m.title or "(untitled)"))
            if not m.core:
                item.append(italic(" (maybe a related story)"))
            events.append((m.arrived_at, 1, para(*item)))
        if details.version > 1:
            events.append((details.major_update_at, 2, para(
                f"{_fmt_time(details.major_update_at, sub)} · substantial update (version {details.version})")))
        blocks += [b for _, _, b in sorted(events, key=lambda e: (e[0], e[1]))]
        if len(details.members) > MAX_STORY_MEMBERS:
            blocks.append(para(italic(f"Only the first {MAX_STORY_MEMBERS} reports are listed.")))
        return Reply(blocks=tuple(blocks))

    async def _summary_link(self, inv: Invocation, url: str) -> Reply:
        if len(inv.args) > 1:
            raise CommandError("Usage: /summary <link to an article>")
        try:
            # The same up-front check as /addfeed: literal private addresses never reach the fetcher.
            check_public_url(url, allow_private=self.allow_private_urls)
        except BlockedURLError as exc:
            raise CommandError(not_allowed(exc)) from exc
        if self.summarize is None:
            raise CommandError("Summaries of single links are not available on this bot.")
        claimed = await asyncio.to_thread(self._claim_cooldown, inv.chat)
        try:
            s = await self.summarize(url)
        except Exception as exc:
            # Nothing was summarized: the link's failure does not cost the chat its cooldown.
            await asyncio.to_thread(self.chats.release_summary, inv.chat, claimed)
            if isinstance(exc, BlockedURLError):
                raise CommandError(not_allowed(exc)) from exc
            if isinstance(exc, FetchError):
                raise CommandError(f"I couldn't fetch that page: {exc.reason}.") from exc
            if isinstance(exc, ExtractError):
                raise CommandError("I couldn't find an article on that page.") from exc
            if isinstance(exc, ParseError):  # the page killed the process reading it
                raise CommandError("I couldn't read that page.") from exc
            raise
        head = para(bold(s.title or url))
        source = para(link(s.outlet or "source", s.url or url))
        return Reply(blocks=(head, para(s.summary), source))

    def _claim_cooldown(self, chat: ChatRef) -> datetime:
        """Start a /summary in this chat (one atomic database update) and return its time, or refuse with when
        the next one is allowed, in the chat's time zone."""
        now = self.clock()
        again = self.chats.claim_summary(chat, now, self.defaults.summary_cooldown_s)
        if again is None:
            return now
        secs = max(1, math.ceil((again - now).total_seconds()))
        local = again.astimezone(_zone(self.chats.get_subscription(chat)))
        raise CommandError(f"Please wait {secs} s before the next /summary here "
                           f"(try again after {local:%H:%M:%S} {local.tzname()}).")

    # settings -----------------------------------------------------------------------------------------------

    def _subscription_for_settings(self, inv: Invocation) -> Subscription:
        sub = self.chats.get_subscription(inv.chat)
        if sub is None or not sub.active:
            raise CommandError("This chat is not subscribed. Use /subscribe first, then /settings.")
        return sub

    def _cmd_settings(self, inv: Invocation) -> Reply:
        self._require_chat_admin(inv, "change the digest settings")
        sub = self._subscription_for_settings(inv)
        if inv.args:
            sub = self._apply_setting(sub, inv.args[0].lower(), list(inv.args[1:]))
        return self._settings_reply(sub, inv.platform)

    def _topics_example(self) -> str:
        return " ".join(self.topics[:2]) or "all"

    def _require_example(self) -> str:
        return f"{self.topics[0] if self.topics else 'TOPIC'} chips, open source"

    def _settings_reply(self, sub: Subscription, platform: str, *, edit: bool = False,
                        notice: str | None = None) -> Reply:
        choices = ", ".join(self.topics)
        if platform == "discord":
            # Discord's /settings takes a setting and a value as options; there is no text form to type.
            hint = ("Or choose in /settings, e.g. setting: times, value: 08:00 18:00 · every 6 · max 5 · "
                    f"timezone Europe/Berlin · topics {self._topics_example()} · topics all · "
                    "mute word royal family · mute outlet Daily Mail · unmute word royal family · "
                    f"require {self._require_example()}")
        else:
            hint = ("Text forms: /settings times 08:00 18:00 | every 6 | max 5 | "
                    f"timezone Europe/Berlin | topics {self._topics_example()} | topics all | "
                    "mute word royal family | mute outlet Daily Mail | unmute word royal family | "
                    f"require {self._require_example()}")
        blocks = (para(bold("Digest settings")), *self._settings_blocks(sub),
                  para(italic(hint + (f". Topics: {choices}." if choices else ""))))
        return Reply(blocks=blocks, buttons=self._settings_buttons(sub), edit=edit, notice=notice)

    def _settings_blocks(self, sub: Subscription) -> tuple[Block, ...]:
        due = f" Next: {_fmt_time(sub.next_due_at, sub)}." if sub.next_due_at and sub.active else ""
        return (para("Schedule: ", sub.schedule.describe(), "." + due),
                para(f"Stories per digest: at most {sub.max_stories}."),
                para("Topics: ", ", ".join(sub.topics) if sub.topics else "all topics", "."),
                *_filter_blocks(sub.filters))

    def _topic_choices(self, sub: Subscription) -> tuple[str, ...]:
        """Topics offered as buttons: the available ones, and any the chat chose that is no longer offered (so
        it can be un-ticked)."""
        return tuple(dict.fromkeys([*self.topics, *sub.topics]))[:MAX_TOPIC_BUTTONS]

    def _settings_buttons(self, sub: Subscription) -> tuple[tuple[Button, ...], ...]:
        times = tuple(Button(("✓ " if not sub.schedule.every_hours and tuple(sub.schedule.times) == p else "")
                             + " + ".join(p), "st:t:" + ",".join(p)) for p in TIME_PRESETS)
        every = tuple(Button(("✓ " if sub.schedule.every_hours == n else "") + f"every {n}h", f"st:e:{n}")
                      for n in (3, 6, 12))
        # The filters have a view of their own (one remove button per entry): the main view has no rows left.
        count = len(_filter_entries(sub.filters))
        every += (Button(f"Filters ({count})" if count else "Filters", "st:f:0"),)
        most = tuple(Button(("✓ " if sub.max_stories == n else "") + f"{n} stories", f"st:m:{n}")
                     for n in MAX_STORIES_CHOICES)
        # "All topics" is a state of its own, ticked when no topic is chosen; a topic button toggles one topic.
        topics = [Button(("✓ " if not sub.topics else "") + "All topics", f"st:p:{ALL_TOPICS}"),
                  *(Button(("✓ " if t in sub.topics else "") + t, f"st:p:{t}"[:64]) for t in self._topic_choices(sub))]
        rows = [times, every, most]
        if len(topics) > 1:
            rows += [tuple(topics[i:i + TOPIC_BUTTONS_PER_ROW]) for i in range(0, len(topics), TOPIC_BUTTONS_PER_ROW)]
        return tuple(rows)

    def _callback(self, inv: Invocation) -> Reply:
        data = inv.callback_data or ""
        if data.startswith(STORY_BUTTON):
            # A digest item's "Sources" button: anyone may press it, as anyone may send /story.
            return self._cmd_story(replace(inv, command="story", args=(data[len(STORY_BUTTON):],)))
        if not data.startswith("st:"):
            raise CommandError("That button is no longer valid. Send /settings again.")
        self._require_chat_admin(inv, "change the settings")
        sub = self._subscription_for_settings(inv)
        _, key, value = (data.split(":", 2) + ["", ""])[:3]
        if key == "t":
            sub = self._apply_setting(sub, "times", value.split(","))
        elif key == "e":
            sub = self._apply_setting(sub, "every", [value])
        elif key == "m":
            sub = self._apply_setting(sub, "max", [value])
        elif key == "p":
            return self._toggle_topic(inv, sub, value)
        elif key == "f":
            return self._filters_reply(sub, inv.platform, _whole(value, 0, 999) or 0)
        elif key == "x":
            return self._remove_filter(inv, sub, value)
        elif key == "s":
            return self._settings_reply(sub, inv.platform, edit=True)
        else:
            raise CommandError("That button is no longer valid. Send /settings again.")
        return self._settings_reply(sub, inv.platform, edit=True, notice="Saved.")

    def _filters_reply(self, sub: Subscription, platform: str, page: int, notice: str | None = None) -> Reply:
        """The filters view of the settings message: this page's entries, each with a button that removes it."""
        entries = _filter_entries(sub.filters)
        pages = max(1, math.ceil(len(entries) / FILTER_BUTTONS_PER_PAGE))
        page = min(page, pages - 1)
        shown = entries[page * FILTER_BUTTONS_PER_PAGE:(page + 1) * FILTER_BUTTONS_PER_PAGE]
        head = "Filters" + (f" (page {page + 1} of {pages})" if pages > 1 else "")
        blocks: list[Block] = [para(bold(head))]
        if not entries:
            blocks.append(para("No filters: every story of your topics can appear."))
        blocks += [para(_FILTER_KINDS[kind].format(topic=topic) + ": ", entry) for kind, topic, entry in shown]
        if entries:
            blocks.append(para(italic("Press an entry to remove it.")))
        if platform == "discord":
            add = ("Add with /settings, e.g. setting: mute, value: word royal family · outlet Daily Mail · "
                   f"setting: require, value: {self._require_example()}")
        else:
            add = ("Add with /settings mute word royal family | mute outlet Daily Mail | "
                   f"require {self._require_example()}")
        blocks.append(para(italic(add + ". Plain words, matched as whole words, any case.")))
        remove = [Button(_label("✕ " + _FILTER_LABELS[kind].format(topic=topic) + entry),
                         f"st:x:{page}:{_filter_id(kind, topic, entry)}") for kind, topic, entry in shown]
        rows = [tuple(remove[i:i + FILTER_BUTTONS_PER_ROW]) for i in range(0, len(remove), FILTER_BUTTONS_PER_ROW)]
        nav = [Button("‹ Settings", "st:s:")]
        if page > 0:
            nav.append(Button("‹ Previous", f"st:f:{page - 1}"))
        if page + 1 < pages:
            nav.append(Button("More ›", f"st:f:{page + 1}"))
        rows.append(tuple(nav))
        return Reply(blocks=tuple(blocks), buttons=tuple(rows), edit=True, notice=notice)

    def _remove_filter(self, inv: Invocation, sub: Subscription, value: str) -> Reply:
        """A remove button of the filters view: the entry goes; pressed again (or on an old message), nothing."""
        page_text, _, wanted = value.partition(":")
        page = _whole(page_text, 0, 999) or 0
        found = next(((k, t, e) for k, t, e in _filter_entries(sub.filters) if _filter_id(k, t, e) == wanted), None)
        if found is None:
            return self._filters_reply(sub, inv.platform, page, notice="Already removed.")
        kind, topic, entry = found
        f = sub.filters
        if kind == "r":
            required = dict(f.required)
            kept = remove_entry(required[topic], entry)
            if kept:
                required[topic] = kept
            else:
                del required[topic]
            f = replace(f, required=required)
        else:
            name = "muted_outlets" if kind == "o" else "muted_words"
            f = _with_list(f, name, remove_entry(getattr(f, name), entry))
        sub = self._save_filters(sub, f, self.clock())
        return self._filters_reply(sub, inv.platform, page, notice=_label(f"Removed: {entry}."))

    def _toggle_topic(self, inv: Invocation, sub: Subscription, value: str) -> Reply:
        """A topic button: "All topics" clears the choice; a topic is ticked or un-ticked, and the last ticked
        topic cannot be un-ticked (that would silently mean all topics: the "All topics" button says it)."""
        if value == ALL_TOPICS:
            if not sub.topics:
                return self._settings_reply(sub, inv.platform, edit=True, notice="Already all topics.")
            sub = self.chats.update_subscription(sub.id, self.clock(), topics=())
            return self._settings_reply(sub, inv.platform, edit=True, notice="Saved: all topics.")
        if value in sub.topics:
            if len(sub.topics) == 1:
                return self._settings_reply(sub, inv.platform, edit=True,
                                            notice=f"{value} is the only topic left; tap All topics for everything.")
            chosen = [t for t in sub.topics if t != value]
        else:
            if value not in self.topics:
                raise CommandError("That topic is no longer offered. Send /settings again.")
            chosen = [*sub.topics, value]
        sub = self._apply_setting(sub, "topics", chosen)
        return self._settings_reply(sub, inv.platform, edit=True, notice="Saved: " + ", ".join(sub.topics) + ".")

    def _apply_setting(self, sub: Subscription, key: str, values: list[str]) -> Subscription:
        """Change one setting, named by any of its names (times/time/at, every, max/stories, timezone/tz,
        topics); each has a function of its own."""
        setters: dict[str, Callable[[Subscription, list[str], datetime], Subscription]] = {
            "times": self._set_times, "time": self._set_times, "at": self._set_times, "every": self._set_every,
            "max": self._set_max, "stories": self._set_max, "timezone": self._set_timezone,
            "tz": self._set_timezone, "topics": self._set_topics, "mute": self._set_mute,
            "unmute": self._set_unmute, "require": self._set_require, "unrequire": self._set_unrequire}
        setter = setters.get(key)
        if setter is None:
            raise CommandError(f"Unknown setting {_quoted(key)}. Settings: times, every, max, timezone, topics, "
                               "mute, unmute, require, unrequire.")
        return setter(sub, values, self.clock())

    def _reschedule(self, sub: Subscription, schedule: Schedule, now: datetime) -> Subscription:
        """A new schedule, and the next digest due by it."""
        return self.chats.update_subscription(sub.id, now, schedule=schedule, next_due_at=next_due(schedule, now))

    def _set_times(self, sub: Subscription, values: list[str], now: datetime) -> Subscription:
        if not values:
            raise CommandError("Usage: /settings times 08:00 18:00")
        parts = [p for v in values for p in v.replace(",", " ").split()]
        try:
            times = sorted({parse_time_of_day(p).strftime("%H:%M") for p in parts})
        except ValueError as exc:
            raise CommandError(f"{exc}. Usage: /settings times 08:00 18:00") from exc
        if len(times) > 12:
            raise CommandError("At most 12 digest times a day.")
        return self._reschedule(sub, Schedule(sub.schedule.timezone, tuple(times), None), now)

    def _set_every(self, sub: Subscription, values: list[str], now: datetime) -> Subscription:
        hours = _whole(values[0].rstrip("h"), 1, 168) if len(values) == 1 else None
        if hours is None:
            raise CommandError("Usage: /settings every N, with N hours from 1 to 168 (e.g. every 6)")
        return self._reschedule(sub, Schedule(sub.schedule.timezone, sub.schedule.times, hours), now)

    def _set_max(self, sub: Subscription, values: list[str], now: datetime) -> Subscription:
        n = _whole(values[0], 1, 30) if len(values) == 1 else None
        if n is None:
            raise CommandError("Usage: /settings max N, with N from 1 to 30")
        return self.chats.update_subscription(sub.id, now, max_stories=n)

    def _set_timezone(self, sub: Subscription, values: list[str], now: datetime) -> Subscription:
        if len(values) != 1:
            raise CommandError("Usage: /settings timezone Europe/Berlin (an IANA time zone name)")
        zone = canonical_timezone(values[0])
        if zone is None:
            raise CommandError(f"{_quoted(values[0])} is not a time zone I know. "
                               "Use a name like Europe/Berlin, America/New_York or UTC.")
        return self._reschedule(sub, Schedule(zone, sub.schedule.times, sub.schedule.every_hours), now)

    def _set_topics(self, sub: Subscription, values: list[str], now: datetime) -> Subscription:
        names = [p for v in values for p in v.replace(",", " ").split()]
        if not names:
            raise CommandError(f"Usage: /settings topics {self._topics_example()} (or: all). "
                               f"Topics: {', '.join(self.topics) or 'none configured'}.")
        if [n.lower() for n in names] == ["all"]:
            return self.chats.update_subscription(sub.id, now, topics=())
        names = [n.lower() if n.lower() in self.topics else n for n in names]
        unknown = [n for n in names if n not in self.topics and n not in sub.topics]
        if unknown:
            raise CommandError(f"Unknown topic {_quoted(unknown[0])}. Topics: {', '.join(self.topics)} (or: all)")
        return self.chats.update_subscription(sub.id, now, topics=tuple(dict.fromkeys(names)))

    def _mute_list(self, values: list[str], verb: str) -> tuple[str, list[str]]:
        """("muted_words" or "muted_outlets", the comma-separated entries) of a mute/unmute command."""
        kind = values[0].lower().rstrip("s") if values else ""
        entries = _entries(values[1:])
        if kind not in ("word", "phrase", "outlet") or not entries:
            raise CommandError(f"Usage: /settings {verb} word TEXT or /settings {verb} outlet NAME "
                               "(several, separated by commas). Plain words, not patterns.")
        return ("muted_outlets" if kind == "outlet" else "muted_words"), entries

    def _save_filters(self, sub: Subscription, filters: ChatFilters, now: datetime) -> Subscription:
        return self.chats.update_subscription(sub.id, now, filters=filters)

    def _set_mute(self, sub: Subscription, values: list[str], now: datetime) -> Subscription:
        name, entries = self._mute_list(values, "mute")
        current: tuple[str, ...] = getattr(sub.filters, name)
        try:
            for e in entries:
                current = add_entry(current, e)
        except FilterError as exc:
            raise CommandError(str(exc)) from exc
        return self._save_filters(sub, _with_list(sub.filters, name, current), now)

    def _set_unmute(self, sub: Subscription, values: list[str], now: datetime) -> Subscription:
        name, entries = self._mute_list(values, "unmute")
        current: tuple[str, ...] = getattr(sub.filters, name)
        for e in entries:
            kept = remove_entry(current, e)
            if kept == current:
                raise CommandError(f"{_quoted(e)} is not muted here. See /settings for what is.")
            current = kept
        return self._save_filters(sub, _with_list(sub.filters, name, current), now)

    def _filter_topic(self, sub: Subscription, values: list[str], verb: str, more: str) -> str:
        if not values:
            raise CommandError(f"Usage: /settings {verb} TOPIC {more}. "
                               f"Topics: {', '.join(self.topics) or 'none configured'}.")
        topic = values[0].lower() if values[0].lower() in self.topics else values[0]
        if topic not in self.topics and topic not in sub.topics and topic not in sub.filters.required:
            raise CommandError(f"Unknown topic {_quoted(values[0])}. Topics: {', '.join(self.topics)}.")
        return topic

    def _set_require(self, sub: Subscription, values: list[str], now: datetime) -> Subscription:
        topic = self._filter_topic(sub, values, "require", "WORD, PHRASE")
        entries = _entries(values[1:])
        if not entries:
            raise CommandError(f"Usage: /settings require {topic} WORD, PHRASE: its stories need one of them.")
        required = dict(sub.filters.required)
        if topic not in required and len(required) >= MAX_REQUIRED_TOPICS:
            raise CommandError(f"Required keywords for at most {MAX_REQUIRED_TOPICS} topics.")
        current = required.get(topic, ())
        try:
            for e in entries:
                current = add_entry(current, e)
        except FilterError as exc:
            raise CommandError(str(exc)) from exc
        required[topic] = current
        return self._save_filters(sub, replace(sub.filters, required=required), now)

    def _set_unrequire(self, sub: Subscription, values: list[str], now: datetime) -> Subscription:
        topic = self._filter_topic(sub, values, "unrequire", "[WORD, PHRASE] (none: all of them)")
        required = dict(sub.filters.required)
        if topic not in required:
            raise CommandError(f"{topic} has no required keywords.")
        entries = _entries(values[1:])
        current = required[topic]
        for e in entries:
            kept = remove_entry(current, e)
            if kept == current:
                raise CommandError(f"{_quoted(e)} is not required for {topic}.")
            current = kept
        if entries and current:
            required[topic] = current
        else:
            del required[topic]
        return self._save_filters(sub, replace(sub.filters, required=required), now)

    # bot owners ---------------------------------------------------------------------------------------------

    def _feeds(self) -> FeedAdmin:
        if self.feed_admin is None:
            raise CommandError("Feed management is not available on this bot.")
        return self.feed_admin

    def _cmd_feeds(self, inv: Invocation) -> Reply:
        rows = list(self._feeds().list())
        if not rows:
            return Reply(blocks=(para("No feeds yet. Add one with /addfeed URL."),))
        blocks: list[Block] = [para(bold(f"{len(rows)} feeds"))]
        for r in rows[:MAX_FEEDS_LISTED]:
            state = f" (paused: {r.paused_reason})" if r.paused_reason else (
                f" ({r.error_count} errors)" if r.error_count else "")
            blocks.append(para(code(str(r.id)), " ", link(r.display_name, r.url), state))
        if len(rows) > MAX_FEEDS_LISTED:
            blocks.append(para(f"... and {len(rows) - MAX_FEEDS_LISTED} more; /exportopml lists them all."))
        return Reply(blocks=tuple(blocks))

    async def _addfeed(self, inv: Invocation) -> Reply:
        """/addfeed, on the event loop: it fetches the feed."""
        self._allowed(inv)
        if len(inv.args) != 1:
            raise CommandError("Usage: /addfeed URL (an RSS or Atom feed, http or https)")
        try:
            row, created = await self._feeds().add(inv.args[0].strip("<>"))
        except BlockedURLError as exc:
            raise CommandError(not_allowed(exc)) from exc
        if not created:
            return Reply(blocks=(para("That feed is already in the list as ", code(str(row.id)), ": ",
                                      link(row.display_name, row.url), "."),))
        return Reply(blocks=(para("Added feed ", code(str(row.id)), ": ", link(row.display_name, row.url),
                                  ". Its stories are collected from the next poll on."),))

    def _cmd_removefeed(self, inv: Invocation) -> Reply:
        if len(inv.args) != 1:
            raise CommandError("Usage: /removefeed ID (see /feeds for the ids)")
        row = self._feeds().remove(inv.args[0].strip("<>"))
        if row is None:
            raise CommandError(f"No feed {_quoted(inv.args[0])}. See /feeds for the ids.")
        return Reply(blocks=(para("Removed feed ", code(str(row.id)), ": ", row.display_name, "."),))

    def _cmd_importopml(self, inv: Invocation) -> Reply:
        if _too_large(inv.attachment_size):
            raise CommandError(f"That file is too large (at most {MAX_OPML_BYTES // 1024} KiB).")
        if inv.attachment is None:
            raise CommandError("Attach the OPML file to /importopml." if inv.platform == "discord" else
                               "Send the OPML file as a document with the caption /importopml.")
        return Reply(blocks=(para("OPML import: ", self._feeds().import_opml(inv.attachment), "."),))

    def _cmd_alerts(self, inv: Invocation) -> Reply:
        return alerts_command(self.alerts, inv, self.clock())

    def _cmd_exportopml(self, inv: Invocation) -> Reply:
        data = self._feeds().export_opml()
        return Reply(blocks=(para("The feed list as OPML."),),
                     file=OutgoingFile("newsdigest-feeds.opml", data, "text/x-opml", "newsdigest feeds"))


_PERIOD = re.compile(r"\d+(?:\.\d+)?\s*[smhd]?", re.IGNORECASE)
# A bare host with an optional path: www.example.com, example.com/x, bbc.co.uk:8080/news?id=1.
_BARE_HOST = re.compile(r"[\w-]+(?:\.[\w-]+)+(?::\d+)?(?:[/?#]\S*)?")


def _link_of(arg: str) -> str | None:
    """The URL a /summary argument names (https assumed for a bare host or path), or None for a period or
    anything else."""
    arg = arg.strip().removeprefix("<").removesuffix(">")
    if "://" in arg or arg.lower().startswith(("http:", "https:")):
        return arg
    if _PERIOD.fullmatch(arg) or not _BARE_HOST.fullmatch(arg):
        return None
    return "https://" + arg


def _period(arg: str) -> timedelta:
    """A /summary period (6h, 2d, 90m), more than zero and at most MAX_SUMMARY_PERIOD."""
    if not _PERIOD.fullmatch(arg.strip()):
        raise CommandError(f"{_quoted(arg)} is neither a period like 6h or 2d nor a link. "
                           "Usage: /summary [6h|2d|link]")
    try:
        period = timedelta(seconds=parse_duration(arg.strip().lower()))
    except ValueError:
        period = timedelta(0)
    if not timedelta(0) < period <= MAX_SUMMARY_PERIOD:
        raise CommandError("The period must be more than 0 and at most 7d, e.g. 90m, 6h or 2d."
                           if period <= timedelta(0) else "The longest period is 7d.")
    return period


def _entries(values: Sequence[str]) -> list[str]:
    """Filter entries from command words: comma-separated, each a word or phrase."""
    return [e.strip() for e in " ".join(values).split(",") if e.strip()]


def _with_list(filters: ChatFilters, name: str, entries: tuple[str, ...]) -> ChatFilters:
    """`filters` with its muted outlets (name "muted_outlets") or muted words replaced."""
    if name == "muted_outlets":
        return replace(filters, muted_outlets=entries)
    return replace(filters, muted_words=entries)


_FILTER_KINDS = {"w": "Muted word", "o": "Muted outlet", "r": "Required for {topic}"}
_FILTER_LABELS = {"w": "", "o": "outlet ", "r": "{topic}: "}


def _filter_entries(filters: ChatFilters) -> list[tuple[str, str, str]]:
    """Every entry of a chat's filters as (kind, topic, entry): "w" muted word, "o" muted outlet, "r" a required
    keyword of `topic`."""
    return [*(("w", "", e) for e in filters.muted_words), *(("o", "", e) for e in filters.muted_outlets),
            *(("r", t, e) for t, keywords in filters.required.items() for e in keywords)]


def _filter_id(kind: str, topic: str, entry: str) -> str:
    """A short id of a filter entry for its remove button (entries and topics may be longer than the 64 bytes a
    Telegram button carries); the same for entries with the same words, as remove_entry matches them."""
    key = "\0".join((kind, topic, " ".join(words(entry))))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _label(text: str) -> str:
    """A button label or notice within Discord's 80 characters."""
    return text if len(text) <= MAX_BUTTON_LABEL else text[:MAX_BUTTON_LABEL - 1] + "…"


def _filter_blocks(filters: ChatFilters, budget: int = FILTER_TEXT_CHARS) -> tuple[Block, ...]:
    """The chat's filters for /settings (nothing when it has none), within `budget` characters of entries: the
    settings message stays one message with its buttons; the filters view lists every entry."""
    lines = [("Muted words: ", filters.muted_words), ("Muted outlets: ", filters.muted_outlets),
             *((f"{topic} stories need one of: ", keywords) for topic, keywords in filters.required.items())]
    blocks: list[Block] = []
    left = budget
    hidden = 0
    for head, entries in lines:
        shown = []
        for e in entries:
            if len(e) + 2 > left:
                hidden += 1
                continue
            shown.append(e)
            left -= len(e) + 2
        if shown:
            blocks.append(para(head, ", ".join(shown), "."))
    if hidden:
        blocks.append(para(italic(f"… and {hidden} more filter entries: see the Filters button.")))
    return tuple(blocks)


def _too_large(size: int | None) -> bool:
    """Whether an attachment's declared size is over the OPML limit (the one check for every platform)."""
    return size is not None and size > MAX_OPML_BYTES


def _zone(sub: Subscription | None) -> ZoneInfo:
    """The chat's time zone (UTC for a chat without a subscription)."""
    return ZoneInfo(sub.schedule.timezone) if sub else ZoneInfo("UTC")


def _fmt_time(when: datetime, sub: Subscription | None) -> str:
    local = when.astimezone(_zone(sub))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"

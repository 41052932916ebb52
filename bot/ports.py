"""Boundary values and Protocols between the platform-neutral core and chat adapters (Telegram, Discord, console).

Adapters translate SDK objects into these values and back; the core never imports a chat SDK. The storage
Protocols at the end list what the core uses of each storage domain (bot/storage/*.py implements them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from bot.models import FeedSpec, NewArticle
    from bot.pipeline.alerts import AlertEvent, OwnerState
    from bot.pipeline.delivery import Limits
    from bot.pipeline.digest import Digest, Schedule, SourcedSentence, StoryCandidate
    from bot.pipeline.filters import ChatFilters
    from bot.pipeline.followups import SentStory
    from bot.settings import DigestDefaults
    from bot.storage.articles import ArticleRow, PendingArticle, UnprocessedArticle
    from bot.storage.chats import Subscription
    from bot.storage.feeds import FeedRow
    from bot.storage.outbox import OutboxItem
    from bot.storage.stories import StoryDetails, StoryMember, StoryRow
    from bot.storage.summary_cache import SummaryEntry

# Chat kinds an adapter reports; "group" covers Telegram groups/supergroups and Discord guild channels.
PRIVATE, GROUP, CHANNEL = "private", "group", "channel"


@dataclass(frozen=True)
class ChatRef:
    """Where a message goes: platform, the platform's chat id, and a forum topic/thread id ("" for none)."""

    platform: str
    chat_id: str
    thread_id: str = ""
    kind: str = PRIVATE
    title: str = ""

    @property
    def key(self) -> str:
        """A stable string for logs and in-memory maps, e.g. 'telegram:-100123/7'."""
        return f"{self.platform}:{self.chat_id}" + (f"/{self.thread_id}" if self.thread_id else "")

    @property
    def is_group(self) -> bool:
        """True for multi-user chats (where only chat admins may change the subscription)."""
        return self.kind == GROUP


@dataclass(frozen=True)
class Span:
    """A run of text with one style; renderers escape `text` and `url` for their format."""

    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False
    url: str | None = None


Block = tuple[Span, ...]
"""A paragraph: spans rendered on one line (or wrapped), blocks separated by a blank line."""


def text(s: str) -> Span:
    """Plain span."""
    return Span(s)


def bold(s: str) -> Span:
    """Bold span."""
    return Span(s, bold=True)


def italic(s: str) -> Span:
    """Italic span."""
    return Span(s, italic=True)


def code(s: str) -> Span:
    """Monospace span."""
    return Span(s, code=True)


def link(s: str, url: str) -> Span:
    """Hyperlink span."""
    return Span(s, url=url)


def para(*spans: Span | str) -> Block:
    """A block from spans; plain strings become plain spans."""
    return tuple(Span(s) if isinstance(s, str) else s for s in spans)


@dataclass(frozen=True)
class Button:
    """An inline button; `data` comes back as a callback (at most 64 bytes, Telegram's limit)."""

    label: str
    data: str


# A digest item's "Sources" button: this and the story id as its data; pressing it answers as /story ID does.
STORY_BUTTON = "story:"


@dataclass(frozen=True)
class OutgoingFile:
    """A document attached to a reply (e.g. an OPML export)."""

    filename: str
    data: bytes
    mime_type: str = "application/octet-stream"
    caption: str = ""


@dataclass(frozen=True)
class Reply:
    """What a command answers, platform-neutral; the adapter's Renderer turns it into messages.

    `edit` asks to replace the message whose button was pressed (callbacks); `notice` is a short toast for a
    callback answer; `digest` is rendered after the blocks, split by the renderer; `error` marks a refusal or
    failure, which adapters that can (Discord) show only to the user who asked.
    """

    blocks: tuple[Block, ...] = ()
    buttons: tuple[tuple[Button, ...], ...] = ()
    file: OutgoingFile | None = None
    digest: Digest | None = None
    edit: bool = False
    notice: str | None = None
    error: bool = False


@dataclass(frozen=True)
class Invocation:
    """A command as a user sent it, translated by an adapter.

    `command` is lower-case without the slash or bot mention (for a button press: "callback" and `callback_data`
    set); `args` is the text after it, split on whitespace; `user_is_chat_admin` is True in private chats and
    channels, and for group members the platform reports as administrators (adapters may compute it only when
    `bot.chat.commands.needs_chat_admin(command)` says so).
    """

    platform: str
    chat: ChatRef
    user_id: str
    command: str
    args: tuple[str, ...] = ()
    user_is_chat_admin: bool = False
    attachment: bytes | None = None
    attachment_name: str | None = None
    # The size the platform declares for an attached file, known before it is downloaded.
    attachment_size: int | None = None
    callback_data: str | None = None
    user_name: str = ""

    @property
    def user_key(self) -> str:
        """'platform:user_id', the form NEWSDIGEST_ADMINS uses."""
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True)
class OutgoingMessage:
    """One platform message, already rendered; JSON-serialisable so the outbox can store it.

    `parse_mode` is "html", "markdown" or "plain"; `extra` carries platform specifics (e.g. Discord embeds).
    `reply_to` is the platform message id this one answers (a follow-up of a story; sent as a plain message when
    that one is gone); `story_ids` are the digest stories it carries (kept by the outbox row, not the payload).
    """

    text: str
    parse_mode: str = "plain"
    buttons: tuple[tuple[Button, ...], ...] = ()
    link_preview: bool = False
    file: OutgoingFile | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    reply_to: str = ""
    story_ids: tuple[int, ...] = ()

    def to_payload(self) -> dict[str, Any]:
        """JSON form for the outbox (files are never queued)."""
        if self.file is not None:
            raise ValueError("messages with files are sent directly, not through the outbox")
        payload = {"text": self.text, "parse_mode": self.parse_mode, "link_preview": self.link_preview,
                   "buttons": [[[b.label, b.data] for b in row] for row in self.buttons], "extra": self.extra}
        if self.reply_to:
            payload["reply_to"] = self.reply_to
        return payload

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> OutgoingMessage:
        """Inverse of to_payload."""
        return cls(text=p["text"], parse_mode=p.get("parse_mode", "plain"), link_preview=p.get("link_preview", False),
                   buttons=tuple(tuple(Button(label, data) for label, data in row) for row in p.get("buttons", [])),
                   extra=dict(p.get("extra") or {}), reply_to=str(p.get("reply_to") or ""))


@runtime_checkable
class Renderer(Protocol):
    """Turns platform-neutral replies and digests into platform messages within the platform's limits."""

    def render_reply(self, reply: Reply) -> list[OutgoingMessage]:
        """Messages for a command reply (blocks, then the digest if any); at least one message."""
        ...

    def render_digest(self, digest: Digest) -> list[OutgoingMessage]:
        """Messages for a digest, split between stories; empty list for an empty digest."""
        ...


@runtime_checkable
class ChatSink(Protocol):
    """Sends rendered messages to one platform.

    `send` returns the platform's message id as a string and raises bot.errors.ChatForbiddenError (blocked,
    kicked: pause the chat), RateLimitedError (retry_after seconds), or DeliveryError (with `migrate_to` set when
    the chat moved, e.g. Telegram group -> supergroup; `permanent` when retrying cannot help).
    """

    @property
    def platform(self) -> str:
        """The platform name in ChatRef.platform ("telegram", "discord", "console")."""
        ...

    @property
    def renderer(self) -> Renderer:
        """How replies and digests become this platform's messages."""
        ...

    @property
    def limits(self) -> Limits:
        """How fast the runtime may send to this platform."""
        ...

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> str:
        """Deliver one message."""
        ...


@dataclass(frozen=True)
class LinkSummary:
    """A summary of one article, for `/summary <link>`."""

    url: str
    title: str
    summary: str
    outlet: str = ""


class Summarize(Protocol):
    """Fetches (SSRF-guarded), extracts and summarizes one article URL; raises FetchError/ExtractError."""

    async def __call__(self, url: str) -> LinkSummary:
        """Summarize the article at `url`."""
        ...


class FeedAdmin(Protocol):
    """The global feed list operations admin commands use (validated like the CLI)."""

    async def add(self, url: str) -> tuple[Any, bool]:
        """Validate, fetch and parse once, and add a feed; returns (feed row, created); raises
        BlockedURLError/CommandError with the reason."""
        ...

    def remove(self, id_or_url: str) -> Any | None:
        """Remove a feed; returns the removed row or None."""
        ...

    def list(self) -> Sequence[Any]:
        """Active feeds (rows with id, url, display_name, paused_reason, error_count)."""
        ...

    def import_opml(self, data: bytes) -> str:
        """Import an OPML file; returns a one-line report; raises CommandError for a bad file."""
        ...

    def export_opml(self) -> bytes:
        """The feed list as OPML."""
        ...


# Storage --------------------------------------------------------------------------------------------------------
# Each Protocol lists what callers use of one storage domain; every method raises bot.errors.StorageError when the
# database fails (`unavailable` set when it cannot be reached right now).


class FeedStore(Protocol):
    """The feed list and each feed's polling state (bot/storage/feeds.py)."""

    def sync_file_feeds(self, specs: Sequence[FeedSpec]) -> dict[str, int]: ...

    def add_feed(self, spec: FeedSpec, origin: str) -> tuple[FeedRow, bool]: ...

    def remove_feed(self, id_or_url: str | int) -> FeedRow | None: ...

    def resume_feed(self, id_or_url: str | int) -> FeedRow | None: ...

    def get_feed(self, id_or_url: str | int) -> FeedRow | None: ...

    def list_feeds(self, *, include_disabled: bool = True) -> list[FeedRow]: ...

    def claim_due_feeds(self, now: datetime, *, force: bool = False, lease_s: float = 300,
                        limit: int | None = None) -> list[FeedRow]: ...

    def next_poll_at(self, now: datetime) -> datetime | None: ...

    def record_feed_success(self, feed_id: int, *, now: datetime, next_check_at: datetime,
                            etag: str | None, last_modified: str | None, title: str | None = None) -> None: ...

    def record_feed_failure(self, feed_id: int, *, now: datetime, error: str, error_count: int,
                            next_check_at: datetime, paused_reason: str | None) -> None: ...


class ArticleStore(Protocol):
    """Articles as polled, their page text and their processing outcome (bot/storage/articles.py)."""

    def insert_articles(self, feed_id: int | None, items: Iterable[NewArticle], now: datetime) -> list[int]: ...

    def articles_pending_text(self, limit: int = 100, max_attempts: int = 3) -> list[PendingArticle]: ...

    def set_article_text(self, article_id: int, *, text: str | None, error: str | None = None,
                         give_up: bool = False) -> None: ...

    def list_articles(self, since: datetime | None = None, limit: int = 500) -> list[ArticleRow]: ...

    def unprocessed_articles(self, limit: int = 256) -> list[UnprocessedArticle]: ...

    def articles_to_prepare(self, article_ids: Sequence[int]) -> list[UnprocessedArticle]: ...

    def save_prepared(self, prepared: Mapping[int, bytes]) -> int: ...

    def save_article_outcome(self, article_id: int, *, topic_score: float, topics: dict[str, float],
                             story_id: int | None, reason: str | None, now: datetime,
                             story_score: float | None = None) -> None: ...


class StoryStore(Protocol):
    """Stories as the story stage merges them, with their members and summaries (bot/storage/stories.py)."""

    def create_story(self, *, title: str, now: datetime, topic_score: float, topics: dict[str, float],
                     state: bytes) -> int: ...

    def update_story(self, story_id: int, *, now: datetime, state: bytes, topic_score: float,
                     topics: dict[str, float], major: bool) -> None: ...

    def refresh_story_counts(self, story_ids: Iterable[int]) -> None: ...

    def story_states(self, since: datetime) -> list[tuple[int, bytes]]: ...

    def story_members(self, story_id: int) -> list[StoryMember]: ...

    def set_story_summary(self, story_id: int, *, title: str, summary: str, method: str,
                          sentences: Sequence[SourcedSentence] | None = None,
                          members: Iterable[int] | None = None) -> bool: ...

    def stories_without_summary(self, since: datetime) -> list[int]: ...

    def get_story(self, story_id: int) -> StoryRow | None: ...


class SummaryStore(Protocol):
    """The summary cache by content key (bot/storage/summary_cache.py)."""

    def summary_get(self, key: str) -> SummaryEntry | None: ...

    def summary_put(self, key: str, model: str, payload: dict[str, Any]) -> None: ...


class SingleWriter(Protocol):
    """One worker at a time across processes for a named job (bot/storage/db.py)."""

    def single_writer_lock(self, name: str) -> AbstractContextManager[bool]: ...


class PollStore(FeedStore, ArticleStore, Protocol):
    """What polling uses: feeds and articles."""


class ProcessingStore(ArticleStore, StoryStore, SummaryStore, SingleWriter, Protocol):
    """What processing uses: articles, stories, the summary cache and the single-worker lock."""


class StoryCandidates(Protocol):
    """The stories a digest picks from (bot/storage/stories.py)."""

    def candidate_stories(self, since: datetime, until: datetime, limit: int = ...) -> list[StoryCandidate]: ...


class SubscriptionStore(Protocol):
    """Chats, subscriptions, the /summary cooldown and the story versions sent (bot/storage/chats.py)."""

    def get_subscription(self, ref: ChatRef) -> Subscription | None: ...

    def subscribe(self, ref: ChatRef, defaults: DigestDefaults, now: datetime, *,
                  next_due: Callable[[Schedule, datetime], datetime]) -> tuple[Subscription, str]: ...

    def unsubscribe(self, ref: ChatRef, now: datetime) -> bool: ...

    def update_subscription(self, sub_id: int, now: datetime, *, schedule: Schedule | None = None,
                            next_due_at: datetime | None = None, max_stories: int | None = None,
                            topics: Sequence[str] | None = None,
                            filters: ChatFilters | None = None) -> Subscription: ...

    def pause(self, chat_db_id: int, reason: str, now: datetime) -> None: ...

    def pause_chat(self, platform: str, chat_ref: str, reason: str, now: datetime) -> int: ...

    def pause_chats(self, platform: str, chat_refs: Sequence[str], reason: str, now: datetime) -> int: ...

    def migrate_chat(self, platform: str, old_chat_id: str, new_chat_id: str) -> None: ...

    def claim_summary(self, ref: ChatRef, now: datetime, cooldown_s: float) -> datetime | None: ...

    def release_summary(self, ref: ChatRef, claimed_at: datetime) -> None: ...

    def request_digest(self, ref: ChatRef, now: datetime) -> bool: ...

    def due_subscriptions(self, now: datetime, limit: int = 500, platforms: Sequence[str] | None = None
                          ) -> list[Subscription]: ...

    def sent_versions(self, sub_id: int, story_ids: Sequence[int] | None = None) -> dict[int, int]: ...

    def sent_stories(self, sub_id: int, story_ids: Sequence[int]) -> dict[int, SentStory]: ...


class OutboxStore(Protocol):
    """The delivery outbox (bot/storage/outbox.py)."""

    def enqueue_digest(self, sub: Subscription, *, due_at: datetime, next_due_at: datetime, digest_key: str,
                       payloads: Sequence[dict[str, Any]], story_versions: dict[int, int], now: datetime,
                       part_stories: Sequence[Sequence[int]] | None = None,
                       coverage: Mapping[int, dict[str, Any]] | None = None) -> bool: ...

    def claim_outbox(self, now: datetime, *, lease_s: float, limit: int, platforms: Sequence[str] | None = None,
                     exclude_chats: Sequence[int] = ()) -> list[OutboxItem]: ...

    def mark_sent(self, item_id: int, message_ref: str, now: datetime) -> None: ...

    def retry_later(self, item_id: int, at: datetime, error: str | None, *, count_attempt: bool = True) -> None: ...

    def release(self, item_ids: Sequence[int]) -> None: ...

    def mark_failed(self, item_id: int, error: str, now: datetime) -> None: ...

    def outbox_counts(self) -> dict[str, int]: ...


class StoryLookup(Protocol):
    """One story with all its members, for `/story`."""

    def story_details(self, story_id: int, limit: int = ...) -> StoryDetails | None: ...


@runtime_checkable
class AlertEventStore(Protocol):
    """Where the poller and the chat runtime record owner alert events (bot/storage/alerts.py)."""

    def record_alert(self, kind: str, subject: str, detail: str, now: datetime) -> None: ...


@runtime_checkable
class AlertStore(AlertEventStore, Protocol):
    """Owner alerts: events, each owner's state and mute, queuing them (bot/storage/alerts.py)."""

    def alert_events(self, after_id: int, since: datetime) -> list[AlertEvent]: ...

    def alert_owner_states(self, owners: Sequence[str]) -> dict[str, OwnerState]: ...

    def owner_chats(self, owners: Sequence[str]) -> dict[str, int]: ...

    def save_alerts(self, before: OwnerState, after: OwnerState,
                    messages: Sequence[tuple[int, str, list[dict[str, Any]]]], now: datetime) -> bool: ...

    def set_alert_mute(self, owner: str, muted_until: datetime | None) -> None: ...

    def register_owner_chat(self, platform: str, chat_id: str, now: datetime) -> None: ...


class CommandStore(SubscriptionStore, StoryCandidates, StoryLookup, Protocol):
    """What chat commands use: subscriptions, digest candidates and story details."""


class ChatRuntimeStore(SubscriptionStore, OutboxStore, StoryCandidates, Protocol):
    """What the chat runtime uses: subscriptions, the outbox and digest candidates."""

"""Boundary values and Protocols between the platform-neutral core and chat adapters (Telegram, Discord, console).

Adapters translate SDK objects into these values and back; the core never imports a chat SDK.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from bot.pipeline.digest import Digest

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
    """

    text: str
    parse_mode: str = "plain"
    buttons: tuple[tuple[Button, ...], ...] = ()
    link_preview: bool = False
    file: OutgoingFile | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        """JSON form for the outbox (files are never queued)."""
        if self.file is not None:
            raise ValueError("messages with files are sent directly, not through the outbox")
        return {"text": self.text, "parse_mode": self.parse_mode, "link_preview": self.link_preview,
                "buttons": [[[b.label, b.data] for b in row] for row in self.buttons], "extra": self.extra}

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> OutgoingMessage:
        """Inverse of to_payload."""
        return cls(text=p["text"], parse_mode=p.get("parse_mode", "plain"), link_preview=p.get("link_preview", False),
                   buttons=tuple(tuple(Button(label, data) for label, data in row) for row in p.get("buttons", [])),
                   extra=dict(p.get("extra") or {}))


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

    platform: str
    renderer: Renderer

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

"""Console sink: without a chat token, `newsdigest run` prints digests to the terminal."""

from __future__ import annotations

import sys
from itertools import count
from typing import TextIO

from bot.pipeline.delivery import Limits
from bot.pipeline.digest import Digest
from bot.ports import Block, ChatRef, OutgoingMessage, Reply

CONSOLE = "console"
CONSOLE_CHAT = ChatRef(platform=CONSOLE, chat_id="stdout", kind="private", title="terminal")
# A terminal has no rate limit; the default pacing keeps a burst of digests readable.
CONSOLE_LIMITS = Limits()


def plain_block(block: Block) -> str:
    """A block as plain text; links become 'text <url>'."""
    return "".join(f"{s.text} <{s.url}>" if s.url else s.text for s in block)


def plain_digest(digest: Digest) -> str:
    """A digest as plain text for a terminal."""
    hours = max(1, round((digest.until - digest.since).total_seconds() / 3600))
    n = len(digest.stories)
    lines = [f"== {digest.title}: {n} top {'story' if n == 1 else 'stories'} of the last {hours} h =="]
    for i, s in enumerate(digest.stories, 1):
        lines.append("")
        lines.append(f"{i}. {' '.join(s.title.split())}" + (" (updated)" if s.updated else ""))
        if s.summary.strip():
            lines.append(s.summary.strip())
        for lk in s.links:
            lines.append(f"   - {lk.outlet or 'source'}: {lk.url}")
    return "\n".join(lines)


class PlainRenderer:
    """Renders plain text (no length limit: a terminal has none)."""

    def render_digest(self, digest: Digest) -> list[OutgoingMessage]:
        """One message for the whole digest; none when empty."""
        return [OutgoingMessage(plain_digest(digest))] if digest.stories else []

    def render_reply(self, reply: Reply) -> list[OutgoingMessage]:
        """Blocks as lines, then the digest."""
        out = [OutgoingMessage("\n".join(plain_block(b) for b in reply.blocks))] if reply.blocks else []
        if reply.digest is not None:
            out += self.render_digest(reply.digest)
        return out or [OutgoingMessage("OK")]


class ConsoleSink:
    """A ChatSink that prints each message to a stream (stdout by default)."""

    platform = CONSOLE

    def __init__(self, stream: TextIO | None = None, *, limits: Limits = CONSOLE_LIMITS) -> None:
        self.stream = stream
        self.limits = limits
        self.renderer = PlainRenderer()
        self._ids = count(1)

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> str:
        """Print the message; returns a running number."""
        stream = self.stream or sys.stdout
        stream.write(message.text.rstrip() + "\n\n")
        stream.flush()
        return str(next(self._ids))

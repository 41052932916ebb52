"""Render replies and digests into Discord messages that keep every Discord limit.

A rendered message is an `OutgoingMessage` whose `text` is the message content (Discord markdown, at most 2000
characters) and whose `extra["embeds"]` are embed dicts as Discord's REST API takes them, so a message can sit
in the outbox as JSON and is sent as is. One story is one embed; a digest is split across messages only between
stories (at most 10 embeds and 6000 embed characters per message). Feed and user text is always escaped, and
every message goes out with no allowed mentions.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from discord.utils import escape_markdown, escape_mentions

from bot.chat.text_units import ELLIPSIS, drop_surrogates, units
from bot.pipeline.digest import Digest, DigestStory
from bot.ports import STORY_BUTTON, Block, Button, OutgoingMessage, Reply, Span

# Discord's documented limits (developer docs, "Embed Limits" and "Create Message").
CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
EMBEDS_PER_MESSAGE = 10
EMBED_TOTAL_MAX = 6000
URL_MAX = 2048
BUTTON_LABEL_MAX = 80
CUSTOM_ID_MAX = 100
BUTTONS_PER_ROW = 5
ROWS_MAX = 5
MARK_MAX = 30  # a source mark names its outlet in at most this many characters

EMBED_COLOR = 0x2B6CB0


def escape(text: str, *, line_start: bool = True) -> str:
    """Neutralize markdown and mentions in untrusted text; control characters become spaces, lone surrogates
    are dropped.

    With `line_start` False the text continues a line, so line-start syntax (lists, headings, quotes) is
    only escaped after its own newlines.
    """
    text = "".join(" " if unicodedata.category(ch) == "Cc" and ch != "\n" else ch for ch in drop_surrogates(text))
    out = escape_markdown(text) if line_start else escape_markdown("x" + text)[1:]
    return escape_mentions(out)


def clip(text: str, limit: int, *, escaped: bool = True) -> str:
    """`text` stripped, escaped (unless `escaped` is False) and cut with an ellipsis to at most `limit` units.

    The raw text is cut and escaped again, so a cut never splits an escape sequence or a mention guard.
    """
    raw = drop_surrogates(text).strip()
    conv = escape if escaped else str
    out = conv(raw)
    if units(out) <= limit:
        return out
    n = min(len(raw), limit)
    while n > 0:
        out = conv(raw[:n].rstrip()) + ELLIPSIS
        over = units(out) - limit
        if over <= 0:
            return out
        n -= max(1, over // 2)
    return ELLIPSIS if limit >= 1 else ""


def safe_url(url: str | None) -> str | None:
    """An http(s) URL fit for an embed or a masked link; characters that would end a markdown link are encoded."""
    if not url or drop_surrogates(url) != url:
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        if parts.scheme.lower() not in ("http", "https") or not host or ":" in host:
            return None
        netloc = parts.netloc.rpartition("@")[2]  # never show credentials
        if not netloc.isascii():
            netloc = host.encode("idna").decode("ascii") + (f":{parts.port}" if parts.port else "")
    except (ValueError, UnicodeError):
        return None
    safe = ":/?#@!$&'*+,;=%~-._"  # reserved characters keep their meaning; ( ) [ ] < > space get encoded
    out = urlunsplit((parts.scheme.lower(), netloc, quote(parts.path, safe=safe), quote(parts.query, safe=safe),
                      quote(parts.fragment, safe=safe)))
    return out if len(out) <= URL_MAX else None


def masked_link(label: str, url: str | None, limit: int = 80) -> str:
    """`[label](url)` with the label escaped (brackets would end it early); just the label for a bad URL."""
    text = clip(label.replace("[", "(").replace("]", ")"), limit) or "link"
    good = safe_url(url)
    return f"[{text}]({good})" if good else text


def embed_size(embed: dict[str, Any]) -> int:
    """The characters Discord counts towards the 6000 total: title, description, fields, footer, author."""
    total = units(embed.get("title") or "") + units(embed.get("description") or "")
    total += sum(units(f["name"]) + units(f["value"]) for f in embed.get("fields") or ())
    total += units((embed.get("footer") or {}).get("text") or "")
    total += units((embed.get("author") or {}).get("name") or "")
    return total


def _joined(items: Sequence[str], sep: str, limit: int, more: str, extra: int = 0) -> str:
    """As many items as fit in `limit` units, then how many more there are ("" when not even one fits)."""
    items = items[:200]
    for k in range(len(items), 0, -1):
        rest = len(items) - k + extra
        text = sep.join(items[:k]) + (more.format(n=rest) if rest else "")
        if units(text) <= limit:
            return text
    return ""


@dataclass(frozen=True)
class StoryView:
    """What the Discord renderer shows of one story."""

    headline: str
    summary: str = ""
    links: tuple[tuple[str, str], ...] = ()  # (outlet, url), the first is the story's main link
    outlet_count: int = 0
    updated: bool = False
    sentences: tuple[tuple[str, str, str], ...] = ()  # (sentence, outlet, url): the summary with its sources
    story_id: int = 0
    news: str = ""  # what an update adds for the chat ("New: 52 dead · now also reported by AP")

    @classmethod
    def of(cls, story: DigestStory) -> StoryView:
        """The view of a digest story."""
        return cls(headline=story.title, summary=story.summary, links=tuple((lk.outlet, lk.url) for lk in story.links),
                   outlet_count=story.outlet_count, updated=story.updated,
                   sentences=tuple((s.text, s.outlet, s.url) for s in story.sentences), story_id=story.id,
                   news=story.news.line() if story.news is not None else "")


def sourced_description(sentences: Sequence[tuple[str, str, str]], room: int) -> str:
    """Whole sentences, each followed by its source mark (the outlet in brackets, linked to its article), while
    they fit `room` units; "" when not even the first fits."""
    out = ""
    for text, outlet, url in sentences:
        part = escape(" ".join(drop_surrogates(text).split()))
        good = safe_url(url)
        if good:
            label = clip((outlet or urlsplit(good).hostname or "source").replace("[", "(").replace("]", ")"),
                         MARK_MAX) or "source"
            part += f" \\[[{label}]({good})\\]"
        joined = f"{out} {part}" if out else part
        if units(joined) > room:
            break
        out = joined
    return out


def story_embed(story: StoryView, *, color: int = EMBED_COLOR) -> dict[str, Any]:
    """One story as one embed: headline linked to its lead article (the first link), summary, the other outlets,
    a footer."""
    embed: dict[str, Any] = {"type": "rich", "title": clip(story.headline, TITLE_MAX) or "(untitled)",
                             "color": color}
    # The headline is the lead article's (links[0]): only that link may stand for it, never a later one.
    lead = story.links[0] if story.links and safe_url(story.links[0][1]) else None
    rest = [(name or "source", url) for name, url in story.links[1:] if safe_url(url)]
    fields: list[dict[str, Any]] = []
    if story.news.strip():
        fields.append({"name": "What's new", "value": clip(story.news, FIELD_VALUE_MAX), "inline": False})
    if lead is not None:
        embed["url"] = safe_url(lead[1])
        source = masked_link(lead[0] or "source", lead[1])
        if units(source) > FIELD_VALUE_MAX:
            source = masked_link(lead[0] or "source", None)  # too long to link here; the embed's title links it
        fields.append({"name": "Source", "value": source, "inline": False})
    links = ([lead] if lead else []) + rest
    others = [m for m in (masked_link(n, u) for n, u in rest) if units(m) <= FIELD_VALUE_MAX // 2]
    unlinked = max(0, story.outlet_count - len(links))
    also = _joined(others, " · ", FIELD_VALUE_MAX, " · and {n} more", unlinked) if others else (
        f"{unlinked} more outlet{'s' if unlinked != 1 else ''}" if unlinked else "")
    if also:
        fields.append({"name": "Also reported by", "value": also, "inline": False})
    if fields:
        embed["fields"] = fields[:FIELDS_MAX]
    outlets = max(story.outlet_count, len(links))
    footer = " · ".join(filter(None, (f"{outlets} outlet{'s' if outlets != 1 else ''}" if outlets else "",
                                      "updated story" if story.updated else "",
                                      f"/story {story.story_id}" if story.story_id > 0 else "")))
    if footer:
        embed["footer"] = {"text": footer}
    room = min(DESCRIPTION_MAX, EMBED_TOTAL_MAX - embed_size(embed))
    description = sourced_description(story.sentences, room) or clip(story.summary, room)
    if description:
        embed["description"] = description
    return embed


def pack_embeds(embeds: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Embeds grouped into messages, in order: at most 10 and 6000 counted characters per message."""
    groups: list[list[dict[str, Any]]] = []
    size = 0
    for embed in embeds:
        n = embed_size(embed)
        if n > EMBED_TOTAL_MAX:
            raise ValueError(f"an embed of {n} characters cannot be sent")
        if not groups or len(groups[-1]) == EMBEDS_PER_MESSAGE or size + n > EMBED_TOTAL_MAX:
            groups.append([])
            size = 0
        groups[-1].append(embed)
        size += n
    return groups


def render_span(span: Span, *, line_start: bool) -> str:
    """One span as Discord markdown, escaped."""
    if span.url is not None:
        return masked_link(span.text, span.url, limit=200)
    if span.code:
        # Nothing is escaped inside a code span; only a backtick could end it.
        body = drop_surrogates(span.text).replace("`", "ˋ")
        return f"`{body}`" if body else ""
    body = escape(span.text, line_start=line_start)
    if not body.strip():
        return body
    if span.bold:
        body = f"**{body}**"
    if span.italic:
        body = f"*{body}*"
    return body


def render_block(block: Block) -> str:
    """A paragraph of spans."""
    return "".join(render_span(s, line_start=i == 0) for i, s in enumerate(block))


def _split_text(paragraphs: Sequence[str], limit: int = CONTENT_MAX) -> list[str]:
    """Paragraphs joined by blank lines into chunks of at most `limit` units; an overlong paragraph is cut."""
    chunks: list[str] = []
    for p in paragraphs:
        p = p if units(p) <= limit else clip(p, limit, escaped=False)
        if chunks and units(chunks[-1]) + 2 + units(p) <= limit:
            chunks[-1] += "\n\n" + p
        elif p:
            chunks.append(p)
    return chunks


def _buttons(rows: tuple[tuple[Button, ...], ...]) -> tuple[tuple[Button, ...], ...]:
    """Buttons within Discord's limits: 5 rows of 5, labels of 80, custom ids of 100."""
    out = []
    for row in rows[:ROWS_MAX]:
        out.append(tuple(Button(clip(b.label, BUTTON_LABEL_MAX, escaped=False) or "·", b.data[:CUSTOM_ID_MAX])
                         for b in row[:BUTTONS_PER_ROW]))
    return tuple(out)


def story_buttons(stories: Sequence[DigestStory]) -> tuple[tuple[Button, ...], ...]:
    """One "Sources" button per story (its /story: every outlet, link and the timeline), two to a row: a
    message's 10 embeds fit Discord's 5 rows."""
    # A label shows no markdown and pings nobody, but feed text in it still gets its mentions broken.
    buttons = [Button(clip(escape_mentions("Sources · " + " ".join(s.title.split())), BUTTON_LABEL_MAX,
                           escaped=False) or "Sources", f"{STORY_BUTTON}{s.id}") for s in stories if s.id > 0]
    return _buttons(tuple(tuple(buttons[i:i + 2]) for i in range(0, len(buttons), 2)))


class DiscordRenderer:
    """The Discord Renderer (bot.ports.Renderer): replies as markdown content, digests as embeds."""

    def render_digest(self, digest: Digest) -> list[OutgoingMessage]:
        """One embed per story, split into messages between stories; empty list for an empty digest."""
        if not digest.stories:
            return []
        listed = [s for s in digest.stories if not s.follow_up]
        out: list[OutgoingMessage] = []
        if listed:
            n = len(listed)
            heading = f"**{escape(digest.title.strip()) or 'News digest'}** · {n} stor{'ies' if n != 1 else 'y'}"
            heading = clip(heading, CONTENT_MAX, escaped=False)
            done = 0
            for i, group in enumerate(pack_embeds([story_embed(StoryView.of(s)) for s in listed])):
                stories = listed[done:done + len(group)]
                done += len(group)
                out.append(OutgoingMessage(text=heading if i == 0 else "", parse_mode="markdown",
                                           buttons=story_buttons(stories), extra={"embeds": group},
                                           story_ids=tuple(s.id for s in stories)))
        for s in digest.stories:
            if s.follow_up:
                # A reply to the message the chat got the story in; the embed says what is new.
                out.append(OutgoingMessage(text="↪ **Update**", parse_mode="markdown", buttons=story_buttons([s]),
                                           extra={"embeds": [story_embed(StoryView.of(s))]}, reply_to=s.reply_to,
                                           story_ids=(s.id,)))
        return out

    def render_reply(self, reply: Reply) -> list[OutgoingMessage]:
        """The reply's paragraphs as content (split at paragraphs), then its digest; at least one message."""
        chunks = _split_text([render_block(b) for b in reply.blocks])
        messages = [OutgoingMessage(text=c, parse_mode="markdown") for c in chunks]
        if reply.digest is not None:
            messages += self.render_digest(reply.digest)
        if not messages:
            messages = [OutgoingMessage(text=escape(reply.notice or "Done."), parse_mode="markdown")]
        first = messages[0]
        if reply.buttons:
            first = OutgoingMessage(text=first.text, parse_mode=first.parse_mode, buttons=_buttons(reply.buttons),
                                    file=first.file, extra=first.extra)
        if reply.file is not None:
            first = OutgoingMessage(text=first.text, parse_mode=first.parse_mode, buttons=first.buttons,
                                    file=reply.file, extra=first.extra)
        return [first, *messages[1:]]


"""Render replies and digests as Telegram HTML messages: everything escaped, at most 4096 characters each.

Telegram counts the limit on the text after entity parsing, in UTF-16 code units; we count the same way. A
digest is split only between stories, so no tag or entity is ever cut; a story too long for one message has its
summary shortened.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from bot.chat.text_units import cut, drop_surrogates, units
from bot.pipeline.digest import Digest, DigestStory
from bot.ports import Block, Button, OutgoingMessage, Reply, Span

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
TITLE_MAX = 300
OUTLET_MAX = 60
MARK_MAX = 30  # a source mark names its outlet in at most this many units
NEWS_MAX = 400  # the "what's new" line of an updated story
URL_MAX = 2048
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean(s: str) -> str:
    """Drop what cannot or should not reach a message: lone surrogates, control characters, odd newlines."""
    s = drop_surrogates(s)
    s = s.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return _CONTROL.sub("", s)


def one_line(s: str) -> str:
    """Clean and collapse whitespace (titles, outlet names)."""
    return " ".join(clean(s).split())


def safe_url(url: str | None) -> str | None:
    """The URL when it is an absolute http(s) URL fit for a link, else None."""
    if not url:
        return None
    url = url.strip()
    if len(url) > URL_MAX or any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


def span_html(sp: Span) -> tuple[str, int]:
    """(HTML, visible length) of one span."""
    body = clean(sp.text)
    visible = units(body)
    out = html.escape(body, quote=False)
    if not body.strip():
        # Tags around nothing visible would make Telegram see an empty entity or an empty message.
        return out, visible
    if sp.code:
        out = f"<code>{out}</code>"
    else:
        if sp.bold:
            out = f"<b>{out}</b>"
        if sp.italic:
            out = f"<i>{out}</i>"
        href = safe_url(sp.url)
        if href:
            out = f'<a href="{html.escape(href, quote=True)}">{out}</a>'
    return out, visible


def fit_spans(spans: Sequence[Span], limit: int) -> list[Span]:
    """Shorten spans (from the end) so their visible text fits `limit` units."""
    out: list[Span] = []
    used = 0
    for sp in spans:
        body = clean(sp.text)
        w = units(body)
        if used + w <= limit:
            out.append(sp)
            used += w
            continue
        room = limit - used
        if room > 1:
            out.append(Span(cut(body, room), sp.bold, sp.italic, sp.code, sp.url))
        break
    return out


def render_block(spans: Sequence[Span], limit: int = MESSAGE_LIMIT) -> tuple[str, int]:
    """(HTML, visible length) of a block, shortened to fit `limit`."""
    parts = [span_html(sp) for sp in fit_spans(spans, limit)]
    return "".join(h for h, _ in parts), sum(n for _, n in parts)


def pack_groups(units_: Iterable[tuple[str, int]], limit: int = MESSAGE_LIMIT,
                sep: str = "\n\n") -> list[tuple[str, list[int]]]:
    """Join rendered units into as few messages as fit, breaking only between units; each message with the
    indexes of the units it holds."""
    messages: list[tuple[str, list[int]]] = []
    cur: list[str] = []
    held: list[int] = []
    size = 0
    gap = units(sep)
    for i, (body, n) in enumerate(units_):
        if not body.strip():
            continue
        extra = n + (gap if cur else 0)
        if cur and size + extra > limit:
            messages.append((sep.join(cur), held))
            cur, held, size, extra = [], [], 0, n
        cur.append(body)
        held.append(i)
        size += extra
    if cur:
        messages.append((sep.join(cur), held))
    return messages


def pack(units_: Iterable[tuple[str, int]], limit: int = MESSAGE_LIMIT, sep: str = "\n\n") -> list[str]:
    """Join rendered units into as few messages as fit, breaking only between units."""
    return [body for body, _ in pack_groups(units_, limit, sep)]


def _outlet_label(outlet: str, url: str) -> str:
    return cut(one_line(outlet) or urlsplit(url).hostname or "source", OUTLET_MAX)


def story_spans(index: int, story: DigestStory, limit: int = MESSAGE_LIMIT) -> list[Span]:
    """One story: numbered headline linked to its lead article, summary, the lead's outlet (the same link),
    then 'also reported by' the other outlets."""
    title = cut(one_line(story.title) or "(untitled)", TITLE_MAX)
    # The headline is the lead article's (links[0]): only that link may stand for it, never a later one.
    lead = story.links[0] if story.links and safe_url(story.links[0].url) else None
    # Index 0: a follow-up, sent on its own as a reply to the message the chat got the story in.
    head = [Span(f"{index}. " if index else "↪ Update: ", bold=True),
            Span(title, bold=True, url=lead.url if lead else None)]
    if story.updated and index:
        head.append(Span(" (updated)", italic=True))
    if story.news is not None:
        head += [Span("\n"), Span(cut(one_line(story.news.line()), NEWS_MAX), italic=True)]
    others = [(_outlet_label(lk.outlet, lk.url), lk.url) for lk in story.links[1:] if safe_url(lk.url)]
    links: list[Span] = []
    if lead is not None:
        links.append(Span(_outlet_label(lead.outlet, lead.url), url=lead.url))
    if others:
        links.append(Span(" · also reported by " if links else "Reported by "))
        for i, (name, url) in enumerate(others):
            if i:
                links.append(Span(", "))
            links.append(Span(name, url=url))
    more = story.outlet_count - len(others) - (lead is not None)
    if links and more > 0:
        links.append(Span(f" and {more} more"))
    if story.id > 0:
        # Telegram turns /story_123 into a tappable command (parse_command reads it as /story 123).
        links += [Span(" · " if links else ""), Span(f"/story_{story.id}")]
    summary = clean(story.summary).strip()
    fixed = sum(units(clean(sp.text)) for sp in head + links) + 4
    spans = [*head]
    if summary:
        spans += [Span("\n"), *summary_spans(story, summary, max(1, limit - fixed))]
    if links:
        spans += [Span("\n"), *links]
    return spans


def sentence_spans(text: str, outlet: str, url: str) -> list[Span]:
    """One summary sentence and its source mark: the outlet's name in brackets, linked to its article."""
    body = [Span(" ".join(clean(text).split()))]
    if safe_url(url):
        body += [Span(" ["), Span(cut(_outlet_label(outlet, url), MARK_MAX), url=url), Span("]")]
    return body


def summary_spans(story: DigestStory, summary: str, room: int) -> list[Span]:
    """The summary, each sentence with its source mark, whole sentences only while they fit `room`; the plain
    summary cut to fit when the sources are unknown or not even the first sentence fits."""
    out: list[Span] = []
    used = 0
    for s in story.sentences:
        spans = ([Span(" ")] if out else []) + sentence_spans(s.text, s.outlet, s.url)
        n = sum(units(clean(sp.text)) for sp in spans)
        if used + n > room:
            break
        out += spans
        used += n
    return out or [Span(cut(summary, room))]


def digest_header(digest: Digest, n: int | None = None) -> Block:
    """'News digest · 5 top stories of the last 10 h' (`n`: the stories in the digest's list, all by default)."""
    hours = max(1, round((digest.until - digest.since).total_seconds() / 3600))
    n = len(digest.stories) if n is None else n
    return (Span(digest.title, bold=True),
            Span(f" · {n} top {'story' if n == 1 else 'stories'} of the last {hours} h"))


class TelegramRenderer:
    """Renderer for Telegram's HTML parse mode."""

    def __init__(self, limit: int = MESSAGE_LIMIT) -> None:
        self.limit = limit

    def _messages(self, bodies: list[str]) -> list[OutgoingMessage]:
        return [OutgoingMessage(text=b, parse_mode="html") for b in bodies]

    def render_digest(self, digest: Digest) -> list[OutgoingMessage]:
        """Digest messages, split between stories, each with the ids of its stories; then each follow-up (an
        update of a story the chat got) as a message of its own, a reply to the one the chat got it in."""
        listed = [s for s in digest.stories if not s.follow_up]
        out: list[OutgoingMessage] = []
        if listed:
            rendered = [render_block(digest_header(digest, len(listed)), self.limit)]
            rendered += [render_block(story_spans(i, s, self.limit), self.limit) for i, s in enumerate(listed, 1)]
            # Unit 0 is the header; unit i is listed[i - 1].
            out += [OutgoingMessage(text=body, parse_mode="html", story_ids=tuple(listed[i - 1].id for i in held if i))
                    for body, held in pack_groups(rendered, self.limit)]
        for s in digest.stories:
            if s.follow_up:
                body, _ = render_block(story_spans(0, s, self.limit), self.limit)
                out.append(OutgoingMessage(text=body, parse_mode="html", reply_to=s.reply_to, story_ids=(s.id,)))
        return out

    def render_reply(self, reply: Reply) -> list[OutgoingMessage]:
        """Reply blocks (buttons on the last text message), then the digest, then the file."""
        bodies = pack((render_block(b, self.limit) for b in reply.blocks), self.limit, sep="\n")
        out = self._messages(bodies)
        if not out and (reply.buttons or (reply.digest is None and reply.file is None)):
            out = [OutgoingMessage(text="OK", parse_mode="html")]
        if reply.buttons:
            last = out[-1]
            # Labels may carry configured names (topics): cleaned like text, or the UTF-8 request fails.
            buttons = tuple(tuple(Button(one_line(b.label), b.data) for b in row) for row in reply.buttons)
            out[-1] = OutgoingMessage(text=last.text, parse_mode="html", buttons=buttons)
        if reply.digest is not None:
            out += self.render_digest(reply.digest)
        if reply.file is not None:
            caption, _ = render_block((Span(reply.file.caption),), CAPTION_LIMIT)
            out.append(OutgoingMessage(text=caption, parse_mode="html", file=reply.file))
        return out or [OutgoingMessage(text="OK", parse_mode="html")]

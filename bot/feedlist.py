"""Managing the feed list: validated adds, OPML import and export (shared by the CLI and chat admin commands)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, SubElement, indent, tostring

import listparser

from bot.errors import BlockedURLError, CommandError, FetchError
from bot.models import FeedSpec
from bot.net import Fetcher, FetchLimits
from bot.pipeline.entry import canonical_url, parse_feed
from bot.ports import FeedStore
from bot.storage.feeds import FeedRow
from bot.urls import address_is_public, check_url

MAX_OPML_BYTES = 2 * 1024 * 1024


def check_public_url(url: str, *, allow_private: bool) -> str:
    """Check a user-supplied URL (a feed, or a link to summarize): http(s), a host, and no local host name or
    literal private/loopback address; returns it stripped, or raises BlockedURLError with the reason.

    Hostnames are checked again at connect time by the fetcher, against the address actually connected to.
    """
    url = url.strip()
    check_url(url)
    host = urlsplit(url).hostname or ""
    if not allow_private:
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise BlockedURLError(url, f"{host} is a local host name")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if not address_is_public(host):
                raise BlockedURLError(url, f"{host} is not a public address")
    return url


def validate_feed_url(url: str, *, allow_private: bool) -> str:
    """`check_public_url`, returned canonical (as article URLs are: no tracking parameters or fragment,
    lowercase host, no default port)."""
    url = check_public_url(url, allow_private=allow_private)
    return canonical_url(url) or url


@dataclass(frozen=True)
class FeedProbe:
    """What one fetch and parse of a feed showed when it was added."""

    title: str
    entries: int
    final_url: str


def without_url(message: str, url: str) -> str:
    """An error message without the URL its producer appended (" (url)"): the reply shows the URL already."""
    for u in dict.fromkeys((url, url.rstrip("/"))):
        message = message.replace(f" ({u})", "")
    return message


async def probe_feed(url: str, limits: FetchLimits) -> FeedProbe:
    """Fetch and parse a feed once (same limits and SSRF rules as polling); raises BlockedURLError, FetchError
    or ParseError with the reason."""
    async with Fetcher(limits) as fetcher:
        result = await fetcher.get(url)
    final = result.final_url or url
    parsed = await asyncio.to_thread(parse_feed, result.body, url=final, content_type=result.content_type)
    return FeedProbe(title=parsed.title, entries=len(parsed.entries), final_url=final)


def not_allowed(exc: BlockedURLError) -> str:
    """The refusal of a blocked URL, in the same words for /addfeed and /summary <link>."""
    return f"That URL is not allowed: {exc.reason}."


_HTML_PAGE = re.compile(r"got an HTML page, not a feed(?: \((['\"])(.*)\1\))?$", re.S)


def feed_refusal(exc: Exception, url: str) -> str:
    """Why a URL cannot be added as a feed, in one sentence without nested parentheses."""
    if isinstance(exc, BlockedURLError):
        return not_allowed(exc)
    if isinstance(exc, FetchError):
        return f"I couldn't fetch that feed: {exc.reason}."
    reason = without_url(str(exc), url)
    page = _HTML_PAGE.match(reason)
    if page:
        title = f' "{page.group(2)}"' if page.group(2) else ""
        return f"That is a web page{title}, not an RSS or Atom feed; look there for its feed's link."
    reason = reason.removeprefix("not an RSS/Atom feed").removeprefix(":").strip()
    return "That is not an RSS or Atom feed" + (f": {reason}." if reason else ".")


def add_feed(store: FeedStore, url: str, *, origin: str, allow_private: bool, name: str = "") -> tuple[FeedRow, bool]:
    """Validate and add one feed URL; returns (feed, created)."""
    return store.add_feed(FeedSpec(url=validate_feed_url(url, allow_private=allow_private), name=name), origin)


@dataclass
class ImportReport:
    """What an OPML import did."""

    added: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"added": [{"url": u, "title": t} for u, t in self.added], "skipped_duplicates": self.duplicates,
                "rejected": [{"url": u, "reason": r} for u, r in self.rejected]}

    def summary(self) -> str:
        """One line for people."""
        return (f"{len(self.added)} added, {len(self.duplicates)} skipped as duplicates, "
                f"{len(self.rejected)} rejected")


def parse_opml(data: bytes) -> list[tuple[str, str]]:
    """(url, title) of every feed outline in an OPML document; raises CommandError when it is not OPML."""
    if len(data) > MAX_OPML_BYTES:
        raise CommandError(f"OPML file is larger than {MAX_OPML_BYTES // 1024} KiB")
    if b"<!ENTITY" in data.replace(b"\x00", b"").upper():  # NULs dropped: UTF-16/32 documents are scanned too
        raise CommandError("OPML file declares XML entities, which are not allowed")
    result = listparser.parse(data)
    if not result.feeds and (result.bozo or not result.version):
        raise CommandError("this is not an OPML subscription list")
    return [(f.url.strip(), (f.title or "").strip()) for f in result.feeds if f.url]


def import_opml(store: FeedStore, data: bytes, *, origin: str, allow_private: bool) -> ImportReport:
    """Add every feed of an OPML file, reporting added, duplicate and rejected entries."""
    report = ImportReport()
    seen: set[str] = set()
    for url, title in parse_opml(data):
        key = canonical_url(url) or url
        if key in seen:
            report.duplicates.append(url)
            continue
        seen.add(key)
        try:
            row, created = add_feed(store, url, origin=origin, allow_private=allow_private, name=title)
        except BlockedURLError as exc:
            report.rejected.append((url, exc.reason))
            continue
        if created:
            report.added.append((row.url, title))
        else:
            report.duplicates.append(url)
    return report


def export_opml(feeds: list[FeedRow], title: str = "newsdigest feeds") -> str:
    """OPML 2.0 of the given feeds."""
    root = Element("opml", version="2.0")
    head = SubElement(root, "head")
    SubElement(head, "title").text = title
    body = SubElement(root, "body")
    for f in feeds:
        attrs = {"type": "rss", "text": f.display_name, "title": f.display_name, "xmlUrl": f.url}
        if f.tags:
            attrs["category"] = ",".join(f.tags)
        SubElement(body, "outline", attrs)
    indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root, encoding="unicode") + "\n"

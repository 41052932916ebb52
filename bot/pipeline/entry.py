"""Entry stage: parse fetched feed bytes (RSS 0.9x/1.0/2.0, Atom) into entries with stable keys.

Pure: bytes in, `ParsedFeed` out, no I/O. Untrusted XML is size-capped and documents that declare DTD
entities are refused before feedparser sees them (see `_reject_entity_declarations`).
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
import xml.sax
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import feedparser
from courlan.clean import normalize_url
from lxml import etree
from lxml import html as lxml_html

from bot.errors import ParseError
from bot.models import Entry, NewArticle, ParsedFeed

MAX_FEED_BYTES = 10 * 1024 * 1024
MAX_TITLE_CHARS = 500

# Query parameters that only say where a click came from. courlan.normalize_url already drops the common
# ones (utm_*, fbclid, gclid, mc_*, *_campaign, *_medium, ref, source...); these are the rest.
_TRACKING_PARAMS = frozenset({
    "ito", "ocid", "cmpid", "cmp", "smid", "smtyp", "ncid", "icid", "fbclid", "gclid", "dclid", "msclkid",
    "yclid", "igshid", "mc_cid", "mc_eid", "_ga", "_gl", "mkt_tok", "feedtype", "feedname", "rss",
    "ns_mchannel", "ns_campaign", "ns_source", "ns_linkname", "ns_fee", "at_medium", "at_campaign",
})
_TRACKING_PREFIXES = ("utm_", "at_", "ns_", "mc_", "pk_", "mtm_", "itm_", "oly_", "__twitter")

_GZIP_MAGIC = b"\x1f\x8b"
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*:\S", re.IGNORECASE)
_ELEMENT_START_RE = re.compile(rb"<[A-Za-z]")
_ENTITY_DECL_RE = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)
_HTML_RE = re.compile(rb"<html[\s>]|<!doctype\s+html", re.IGNORECASE)
_HTML_TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_SPACE_RE = re.compile(r"\s+")


def parse_feed(body: bytes, *, url: str, content_type: str | None = None, date_fallback: bool = False,
               max_entries: int = 1000, max_bytes: int = MAX_FEED_BYTES) -> ParsedFeed:
    """Parse feed bytes into a `ParsedFeed`; raise `ParseError` for empty bodies, HTML pages and non-feeds."""
    if not body or not body.strip():
        raise ParseError(f"empty response body ({url})")
    if len(body) > max_bytes:
        raise ParseError(f"feed is larger than {max_bytes} bytes ({url})")
    if body.startswith(_GZIP_MAGIC):
        body = _gunzip(body, max_bytes, url)
    _reject_entity_declarations(body, url)
    # content-location is the base for relative links; without a Content-Type feedparser would assume
    # ISO-8859-1 and flag the feed, so an unknown type reads as generic XML (declared encoding, else UTF-8).
    headers = {"content-location": url, "content-type": content_type or "application/xml"}
    try:
        # A BytesIO, never a str: feedparser treats strings as URLs or file paths and would open them.
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers)
    except Exception as exc:  # feedparser is third-party: translate whatever it raises at the boundary
        raise ParseError(f"feed parser failed: {type(exc).__name__}: {exc} ({url})") from exc
    bozo = parsed.get("bozo_exception")
    version = parsed.get("version") or ""
    if not parsed.entries:
        if not version:
            raise ParseError(_not_a_feed_message(body, url, content_type, bozo))
        if isinstance(bozo, xml.sax.SAXException):
            raise ParseError(f"malformed feed XML without entries: {bozo} ({url})")
    entries = _unique_entries(
        _entry(raw, feed_url=url, date_fallback=date_fallback) for raw in parsed.entries[:max_entries])
    feed = parsed.get("feed", {})
    link = feed.get("link")
    return ParsedFeed(
        title=_plain(feed.get("title", ""))[:MAX_TITLE_CHARS],
        link=link if _is_web_url(link) else None,
        entries=tuple(entries),
        version=version,
        bozo=bool(parsed.get("bozo")),
        bozo_reason=f"{type(bozo).__name__}: {bozo}" if bozo is not None else None,
    )


def canonical_url(url: str | None) -> str | None:
    """The http(s) URL normalized for dedup: lowercase host, no default port, fragment or tracking params."""
    if not url or not _is_web_url(url.strip()):
        return None
    try:
        normalized = normalize_url(url.strip(), strict=False)
        parts = urlsplit(normalized)
    except ValueError:
        return None
    if not parts.netloc:
        return None
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), ""))


def entry_key(*, guid: str | None, canonical: str | None, title: str, content: str, feed_url: str) -> str:
    """Stable short key: GUID, else canonical URL, else a hash of title and content.

    URL and URI GUIDs (http://..., urn:..., tag:...) are global; bare GUIDs (e.g. "p54nqw") and content
    hashes are scoped to the feed's host so that two sites that number their items alike never collide.
    """
    guid = (guid or "").strip()
    if guid:
        # A GUID is opaque: hashed as given, so items that differ only in a fragment stay apart.
        if _SCHEME_RE.match(guid) and len(guid) >= 10:
            return "guid:" + _digest(guid)
        return "guid:" + _digest(_host(feed_url), guid)
    if canonical:
        return "url:" + _digest(canonical)
    return "hash:" + _digest(_host(feed_url), _SPACE_RE.sub(" ", title).strip().lower(),
                             _SPACE_RE.sub(" ", content).strip())


def _entry(raw: feedparser.FeedParserDict, *, feed_url: str, date_fallback: bool) -> Entry:
    link = raw.get("feedburner_origlink") or raw.get("link")
    url = link.strip() if _is_web_url(link) else None
    canonical = canonical_url(url)
    title = _plain(raw.get("title", ""))[:MAX_TITLE_CHARS]
    summary = raw.get("summary", "") or ""
    content = max((c.get("value", "") or "" for c in raw.get("content", [])), key=len, default="")
    if content == summary:
        content = ""
    return Entry(
        key=entry_key(guid=raw.get("id"), canonical=canonical, title=title, content=content or summary,
                      feed_url=feed_url),
        url=url,
        canonical_url=canonical,
        title=title,
        summary=summary,
        content=content,
        published=_published(raw, date_fallback),
        author=_plain(raw.get("author", "")) or None,
    )


def _unique_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Drop repeats inside one document: the same key or the same canonical URL is the same article."""
    seen: set[str] = set()
    out = []
    for entry in entries:
        ids = {entry.key} | ({entry.canonical_url} if entry.canonical_url else set())
        if ids & seen:
            continue
        seen |= ids
        out.append(entry)
    return out


def _published(raw: feedparser.FeedParserDict, date_fallback: bool) -> datetime | None:
    for field in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = raw.get(field)
        if parsed:
            try:
                return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
            except (OverflowError, ValueError, OSError):
                continue
    if date_fallback:
        for field in ("published", "updated", "created"):
            value = raw.get(field)
            if value:
                found = parse_loose_date(value)
                if found is not None:
                    return found
    return None


def parse_loose_date(value: str) -> datetime | None:
    """Parse a non-standard date (e.g. Drupal's "Wednesday, February 25, 2026 - 21:07") as UTC, or None.

    Relative expressions ("2 hours ago") and dates without day, month and year are refused so that the
    result never depends on the current time.
    """
    import dateparser  # slow import, only feeds with `date_fallback` need it

    found = dateparser.parse(value[:200], settings={
        "RETURN_AS_TIMEZONE_AWARE": True, "TIMEZONE": "UTC", "TO_TIMEZONE": "UTC",
        "REQUIRE_PARTS": ["day", "month", "year"],
        "PARSERS": ["timestamp", "custom-formats", "absolute-time"],
    })
    return found.astimezone(UTC) if found is not None else None


def _gunzip(body: bytes, max_bytes: int, url: str) -> bytes:
    """Inflate a gzip body that came without Content-Encoding (some servers send .xml.gz as is), capped."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ParseError(f"corrupt gzip body: {exc} ({url})") from exc
    if len(data) > max_bytes:
        raise ParseError(f"feed is larger than {max_bytes} bytes once decompressed ({url})")
    return data


def _reject_entity_declarations(body: bytes, url: str) -> None:
    """Refuse documents whose prolog declares entities.

    feedparser keeps simple internal entities and, when expat stops an expansion bomb, re-parses with its
    loose parser, which expands them without any limit (a 110 kB "quadratic blowup" became 1 GB of text).
    Real feeds do not declare entities, so refusing them costs nothing. NULs are dropped so that UTF-16/32
    documents are scanned too.
    """
    head = body[:65536].replace(b"\x00", b"")
    start = _ELEMENT_START_RE.search(head)
    if _ENTITY_DECL_RE.search(head[: start.start()] if start else head):
        raise ParseError(f"feed declares XML entities in its DTD; refused for safety ({url})")


def _not_a_feed_message(body: bytes, url: str, content_type: str | None, exc: object) -> str:
    head = body[:4096]
    if _HTML_RE.search(head) or (content_type or "").lower().startswith(("text/html", "application/xhtml")):
        title = _HTML_TITLE_RE.search(body[:65536])
        label = _SPACE_RE.sub(" ", title.group(1).decode("utf-8", "replace")).strip()[:120] if title else ""
        return f"got an HTML page, not a feed{f' ({label!r})' if label else ''} ({url})"
    reason = f": {exc}" if exc is not None else ""
    return f"not an RSS/Atom feed{reason} ({url})"


def _plain(value: str) -> str:
    """Feed text that may carry markup or entities, as one line of plain text."""
    if not value:
        return ""
    if "<" in value or "&" in value:
        try:
            value = lxml_html.fragment_fromstring(value, create_parent="div").text_content()
        except (etree.ParserError, etree.XMLSyntaxError, ValueError):
            pass
    return _SPACE_RE.sub(" ", value).strip()


def _is_tracking(name: str) -> bool:
    name = name.lower()
    return name in _TRACKING_PARAMS or name.startswith(_TRACKING_PREFIXES)


def _is_web_url(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:24]


def content_hash(title: str, text: str) -> str:
    """Hash of whitespace-normalized, case-folded title and text (exact-duplicate detection)."""
    norm = _SPACE_RE.sub(" ", f"{title}\n{text}").strip().casefold()
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def new_article(entry: Entry) -> NewArticle:
    """The article row to store for a parsed entry (pure)."""
    # Imported here: the article stage pulls trafilatura, which storage (canonical_url) never needs.
    from bot.pipeline import article as article_stage

    text = article_stage.text_from_entry(entry)
    pending = bool(entry.url) and article_stage.needs_page(entry)
    return NewArticle(key=entry.key, url=entry.url, canonical_url=entry.canonical_url, title=entry.title,
                      teaser=article_stage.html_to_text(entry.summary)[:5000], text=text,
                      text_source="pending" if pending else "feed",
                      content_hash=content_hash(entry.title, text), published_at=entry.published)


@dataclass(frozen=True)
class ParsedBatch:
    """A parsed feed reduced to what the runner stores (small to pickle across processes)."""

    title: str
    bozo_reason: str | None
    articles: tuple[NewArticle, ...]


def parse_to_articles(body: bytes, url: str, content_type: str | None, date_fallback: bool) -> ParsedBatch:
    """Parse feed bytes into article rows (pure and CPU-bound, so it can run in a process pool)."""
    parsed = parse_feed(body, url=url, content_type=content_type, date_fallback=date_fallback)
    return ParsedBatch(title=parsed.title, bozo_reason=parsed.bozo_reason if parsed.bozo else None,
                       articles=tuple(new_article(e) for e in parsed.entries))

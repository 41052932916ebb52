"""Feed storage: the feed list and each feed's polling state."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, case, func, insert, or_, select, update

from bot.clock import utcnow
from bot.models import FeedSpec
from bot.pipeline.entry import canonical_url
from bot.storage.db import Database
from bot.storage.tables import feeds

# Labels that name no outlet: what OPML exporters and feed generators put when they know nothing better.
GENERIC_LABELS = frozenset({
    "", "all", "all articles", "all news", "all stories", "articles", "breaking", "breaking news", "default",
    "front page", "frontpage", "headlines", "home", "home page", "homepage", "index", "latest", "latest news",
    "latest stories", "main", "most recent", "new", "news", "news feed", "newsfeed", "recent", "stories",
    "the latest", "top", "top headlines", "top news", "top stories", "untitled", "updates", "world", "world news",
})
# Format words that say how a feed is served, not whose it is ("RSS", "Atom feed", "RSS 2.0").
_FORMAT_WORDS = frozenset({"rss", "atom", "xml", "feed", "feeds", "syndication", "channel"})
_URL_LIKE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::\d+)?(?:[/?#]\S*)?$",
                       re.IGNORECASE)
_HOST_PREFIXES = ("www.", "feeds.", "feed.", "rss.")


def feed_host(url: str | None) -> str:
    """The feed URL's host without a 'www.'/'feeds.'/'rss.' prefix ('' when there is none)."""
    try:
        host = (urlsplit(url or "").hostname or "").lower()
    except ValueError:
        return ""
    for prefix in _HOST_PREFIXES:
        if host.startswith(prefix) and host.count(".") > 1:
            return host[len(prefix):]
    return host


def is_generic_label(label: str | None, url: str | None = None) -> bool:
    """True when a feed label names no outlet: empty, a bare URL or host, or a generic word like 'RSS' or
    'Top stories'."""
    text = " ".join((label or "").split())
    if not text:
        return True
    if _URL_LIKE.match(text) or (url and text.rstrip("/").lower() in {url.rstrip("/").lower(), feed_host(url)}):
        return True
    words = [w for w in re.split(r"[^\w]+", text.casefold()) if w and not w.isdigit() and w not in _FORMAT_WORDS]
    return " ".join(words) in GENERIC_LABELS


def _own_name(name: str | None, title: str | None, url: str | None) -> str | None:
    for label in (name, title):
        if not is_generic_label(label, url):
            return " ".join((label or "").split())
    return None


def display_name(name: str | None, title: str | None, url: str | None) -> str:
    """How a feed is listed: its configured name, else the feed's own title (once a poll stored it), else its
    URL; a generic label ('RSS', 'News', a bare URL or host) gives way to the next."""
    return _own_name(name, title, url) or (url or name or title or "").strip()


def outlet_name(name: str | None, title: str | None, url: str | None) -> str:
    """How an outlet is shown next to its articles: as display_name, but the feed's host rather than its URL."""
    return _own_name(name, title, url) or feed_host(url) or display_name(name, title, url)


def row_outlet(m: Any) -> str:
    """The outlet of a row joined with its feed through `feed_label_columns()` ('' for an article without feed)."""
    return outlet_name(m["feed_name"], m["feed_title"], m["feed_url"]) if m["feed_id"] is not None else ""


def feed_label_columns() -> tuple[Any, ...]:
    """The feed columns `row_outlet` reads, for a query joining articles with feeds."""
    return (feeds.c.name.label("feed_name"), feeds.c.title.label("feed_title"), feeds.c.url.label("feed_url"))


@dataclass(frozen=True)
class FeedRow:
    """A feed as stored, with its polling state."""

    id: int
    url: str
    name: str
    title: str | None
    tags: tuple[str, ...]
    region: str | None
    language: str | None
    interval_s: int
    timeout_s: float | None
    enabled: bool
    all_world: bool
    date_fallback: bool
    state_media: bool
    origin: str
    etag: str | None
    last_modified: str | None
    error_count: int
    last_error: str | None
    last_checked_at: datetime | None
    last_success_at: datetime | None
    next_check_at: datetime | None
    paused_reason: str | None

    @property
    def display_name(self) -> str:
        """Configured name, else the feed's own title, else its URL (generic labels skipped: see display_name)."""
        return display_name(self.name, self.title, self.url)


def _feed_row(r: Any) -> FeedRow:
    m = r._mapping
    values: dict[str, Any] = {k: (tuple(m[k] or ()) if k == "tags" else m[k]) for k in FeedRow.__dataclass_fields__}
    return FeedRow(**values)


def _feed_url(url: str) -> str:
    """A feed URL in the canonical form article URLs have, so that `?utm_source=x` is not a second feed."""
    return canonical_url(url) or url.strip()


def _same_feed(rows: Iterable[Any], url: str) -> Any | None:
    """The row whose URL is canonically `url`, preferring an active one, then one already canonical, then the oldest."""
    same = [r for r in rows if _feed_url(r.url) == url]
    return min(same, key=lambda r: (r.removed, r.url != url, r.id)) if same else None


def _spec_values(spec: FeedSpec) -> dict[str, Any]:
    return dict(url=spec.url, name=spec.name, tags=list(spec.tags), region=spec.region, language=spec.language,
                interval_s=spec.interval_s, timeout_s=spec.timeout_s, enabled=spec.enabled,
                all_world=spec.all_world, date_fallback=spec.date_fallback, state_media=spec.state_media)


class FeedStorage(Database):
    """The feed list: feeds from the feeds file, the CLI, OPML and chat admins, and their polling state."""

    def sync_file_feeds(self, specs: Sequence[FeedSpec]) -> dict[str, int]:
        """Make file-origin feeds follow the feeds file; operator-added and operator-removed feeds are kept as is.

        New URLs are added; a file feed's settings follow the file; a file feed gone from the file is marked
        removed; a feed an operator removed stays removed even though the file still lists it.
        """
        now = utcnow()
        counts = {"added": 0, "updated": 0, "removed": 0}
        specs = [replace(s, url=_feed_url(s.url)) for s in specs]
        urls = {s.url for s in specs}
        with self.write() as conn:
            rows = conn.execute(select(feeds.c.id, feeds.c.url, feeds.c.origin, feeds.c.removed)).all()
            groups: dict[str, list[Any]] = {}
            for r in rows:
                groups.setdefault(_feed_url(r.url), []).append(r)
            existing = {url: _same_feed(group, url) for url, group in groups.items()}
            for spec in specs:
                row = existing.get(spec.url)
                if row is None:
                    conn.execute(insert(feeds).values(**_spec_values(spec), origin="file", removed=False,
                                                      error_count=0, next_check_at=now, created_at=now,
                                                      updated_at=now))
                    counts["added"] += 1
                elif row.origin == "file" and not row.removed:
                    values = _spec_values(spec)
                    if row.url != spec.url and any(r.url == spec.url for r in rows):
                        values["url"] = row.url  # a removed row holds the canonical URL (unique): keep ours
                    conn.execute(update(feeds).where(feeds.c.id == row.id).values(**values, updated_at=now))
                    counts["updated"] += 1
            for url, group in groups.items():
                for row in group:
                    if row.origin == "file" and not row.removed and (url not in urls or existing[url] is not row):
                        conn.execute(update(feeds).where(feeds.c.id == row.id).values(removed=True, updated_at=now))
                        counts["removed"] += 1
        return counts

    def add_feed(self, spec: FeedSpec, origin: str) -> tuple[FeedRow, bool]:
        """Add a feed (or bring back a removed one); returns (row, created). Already-active URLs are not changed."""
        now = utcnow()
        spec = replace(spec, url=_feed_url(spec.url))
        with self.write() as conn:
            # Only rows naming the same host can be the same feed (a stored URL may differ in case or port).
            host = urlsplit(spec.url).hostname or ""
            same = _same_feed(conn.execute(select(feeds.c.id, feeds.c.url, feeds.c.removed)
                                           .where(feeds.c.url.ilike(f"%{host}%"))), spec.url)
            row = conn.execute(select(feeds).where(feeds.c.id == same.id)).one() if same else None
            if row is not None and not row.removed:
                return _feed_row(row), False
            if row is None:
                conn.execute(insert(feeds).values(**_spec_values(spec), origin=origin, removed=False,
                                                  error_count=0, next_check_at=now, created_at=now, updated_at=now))
            else:
                conn.execute(update(feeds).where(feeds.c.id == row.id).values(
                    **_spec_values(spec), origin=origin, removed=False, error_count=0, last_error=None,
                    paused_reason=None, next_check_at=now, updated_at=now))
            return _feed_row(conn.execute(select(feeds).where(feeds.c.url == spec.url)).one()), True

    def remove_feed(self, id_or_url: str | int) -> FeedRow | None:
        """Mark a feed removed (by id or URL); its stored articles stay. Returns the feed or None."""
        row = self.get_feed(id_or_url)
        if row is None:
            return None
        with self.write() as conn:
            conn.execute(update(feeds).where(feeds.c.id == row.id).values(removed=True, updated_at=utcnow()))
        return row

    def get_feed(self, id_or_url: str | int) -> FeedRow | None:
        """An active (not removed) feed by id or URL."""
        if isinstance(id_or_url, int) or str(id_or_url).isdigit():
            cond = feeds.c.id == int(id_or_url)
        else:
            cond = feeds.c.url.in_({str(id_or_url), _feed_url(str(id_or_url))})
        with self.read() as conn:
            row = conn.execute(select(feeds).where(cond, feeds.c.removed.is_(False))).first()
        return _feed_row(row) if row else None

    def list_feeds(self, *, include_disabled: bool = True) -> list[FeedRow]:
        """Active feeds in id order."""
        q = select(feeds).where(feeds.c.removed.is_(False)).order_by(feeds.c.id)
        if not include_disabled:
            q = q.where(feeds.c.enabled.is_(True))
        with self.read() as conn:
            return [_feed_row(r) for r in conn.execute(q)]

    def feed_counts(self) -> dict[str, int]:
        """Feeds (not removed) by state: active, failing (errors, not paused), paused, disabled (for metrics)."""
        state = case((feeds.c.enabled.is_(False), "disabled"), (feeds.c.paused_reason.is_not(None), "paused"),
                     (feeds.c.error_count > 0, "failing"), else_="active")
        q = select(state.label("state"), func.count().label("n")).where(feeds.c.removed.is_(False)).group_by(state)
        with self.read() as conn:
            return {r.state: r.n for r in conn.execute(q)}

    def claim_due_feeds(self, now: datetime, *, force: bool = False, lease_s: float = 300,
                        limit: int | None = None) -> list[FeedRow]:
        """Feeds due for a poll, leased so that another worker does not poll them at the same time.

        `force` takes every enabled feed, paused ones included.
        """
        cond: list[ColumnElement[bool]] = [feeds.c.removed.is_(False), feeds.c.enabled.is_(True)]
        if not force:
            cond += [feeds.c.paused_reason.is_(None),
                     or_(feeds.c.next_check_at.is_(None), feeds.c.next_check_at <= now)]
        q = select(feeds).where(and_(*cond)).order_by(feeds.c.next_check_at, feeds.c.id)
        if limit:
            q = q.limit(limit)
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        with self.write() as conn:
            rows = [_feed_row(r) for r in conn.execute(q)]
            if rows:
                conn.execute(update(feeds).where(feeds.c.id.in_([r.id for r in rows]))
                             .values(next_check_at=now + timedelta(seconds=lease_s)))
        return rows

    def next_poll_at(self, now: datetime) -> datetime | None:
        """When the next active feed is due (`now` for one never polled; None when there is none)."""
        q = select(func.min(feeds.c.next_check_at).label("first"),
                   (func.count() - func.count(feeds.c.next_check_at)).label("never")).where(
            feeds.c.removed.is_(False), feeds.c.enabled.is_(True), feeds.c.paused_reason.is_(None))
        with self.read() as conn:
            row = conn.execute(q).one()
        if row.never:
            return now
        first: datetime | None = row.first
        return first

    def record_feed_success(self, feed_id: int, *, now: datetime, next_check_at: datetime,
                            etag: str | None, last_modified: str | None, title: str | None = None) -> None:
        """Store the outcome of a successful (200 or 304) poll."""
        values: dict[str, Any] = dict(etag=etag, last_modified=last_modified, error_count=0, last_error=None,
                                      paused_reason=None, last_checked_at=now, last_success_at=now,
                                      next_check_at=next_check_at, updated_at=now)
        if title:
            values["title"] = title[:500]
        with self.write() as conn:
            conn.execute(update(feeds).where(feeds.c.id == feed_id).values(**values))

    def record_feed_failure(self, feed_id: int, *, now: datetime, error: str, error_count: int,
                            next_check_at: datetime, paused_reason: str | None) -> None:
        """Store a failed poll: error count, last error, next check and, when it keeps failing, the pause."""
        with self.write() as conn:
            conn.execute(update(feeds).where(feeds.c.id == feed_id).values(
                error_count=error_count, last_error=error[:2000], last_checked_at=now,
                next_check_at=next_check_at, paused_reason=paused_reason, updated_at=now))

    def resume_feed(self, id_or_url: str | int) -> FeedRow | None:
        """Clear a feed's pause and errors so the next poll takes it."""
        row = self.get_feed(id_or_url)
        if row is None:
            return None
        with self.write() as conn:
            conn.execute(update(feeds).where(feeds.c.id == row.id).values(
                paused_reason=None, error_count=0, next_check_at=utcnow(), updated_at=utcnow()))
        return self.get_feed(row.id)


__all__ = ["GENERIC_LABELS", "FeedRow", "FeedStorage", "display_name", "feed_host", "feed_label_columns",
           "is_generic_label", "outlet_name", "row_outlet"]

"""The Store: use-case methods over the database. Every write is idempotent and keyed by ids or natural keys."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.clock import utcnow
from bot.models import FeedSpec
from bot.pipeline.entry import canonical_url
from bot.storage.db import make_engine, upgrade
from bot.storage.tables import articles, feeds, stories, summaries

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


def _with_outlet(m: Any) -> dict[str, Any]:
    """A row's mapping with `outlet` (outlet_name of its feed) in place of the raw feed_name/title/url."""
    d = dict(m)
    d["outlet"] = outlet_name(d.pop("feed_name", None), d.pop("feed_title", None), d.pop("feed_url", None)) \
        if d.get("feed_id") is not None else ""
    return d


def _feed_label_columns() -> tuple[Any, ...]:
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


@dataclass(frozen=True)
class NewArticle:
    """An article to insert (from a parsed entry)."""

    key: str
    url: str | None
    canonical_url: str | None
    title: str
    teaser: str
    text: str
    text_source: str
    content_hash: str
    published_at: datetime | None


def _feed_row(r: Any) -> FeedRow:
    m = r._mapping
    return FeedRow(**{k: (tuple(m[k] or ()) if k == "tags" else m[k]) for k in FeedRow.__dataclass_fields__})


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


class Store:
    """Database access for the core pipeline (feeds, articles, stories, summary cache)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite allows one writer at a time; queueing writers here beats them spinning on the busy timeout.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (serialized on SQLite)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Create the engine and bring the schema up to date."""
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    def close(self) -> None:
        """Dispose of pooled connections."""
        self.engine.dispose()

    def _insert(self, table):  # noqa: ANN001, ANN202
        return (postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table))

    # feeds -----------------------------------------------------------------------------------------------

    def sync_file_feeds(self, specs: Sequence[FeedSpec]) -> dict[str, int]:
        """Make file-origin feeds follow the feeds file; operator-added and operator-removed feeds are kept as is.

        New URLs are added; a file feed's settings follow the file; a file feed gone from the file is marked
        removed; a feed an operator removed stays removed even though the file still lists it.
        """
        now = utcnow()
        counts = {"added": 0, "updated": 0, "removed": 0}
        specs = [replace(s, url=_feed_url(s.url)) for s in specs]
        urls = {s.url for s in specs}
        with self._write() as conn:
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
        with self._write() as conn:
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
        with self._write() as conn:
            conn.execute(update(feeds).where(feeds.c.id == row.id).values(removed=True, updated_at=utcnow()))
        return row

    def get_feed(self, id_or_url: str | int) -> FeedRow | None:
        """An active (not removed) feed by id or URL."""
        if isinstance(id_or_url, int) or str(id_or_url).isdigit():
            cond = feeds.c.id == int(id_or_url)
        else:
            cond = feeds.c.url.in_({str(id_or_url), _feed_url(str(id_or_url))})
        with self.engine.connect() as conn:
            row = conn.execute(select(feeds).where(cond, feeds.c.removed.is_(False))).first()
        return _feed_row(row) if row else None

    def list_feeds(self, *, include_disabled: bool = True) -> list[FeedRow]:
        """Active feeds in id order."""
        q = select(feeds).where(feeds.c.removed.is_(False)).order_by(feeds.c.id)
        if not include_disabled:
            q = q.where(feeds.c.enabled.is_(True))
        with self.engine.connect() as conn:
            return [_feed_row(r) for r in conn.execute(q)]

    def claim_due_feeds(self, now: datetime, *, force: bool = False, lease_s: float = 300,
                        limit: int | None = None) -> list[FeedRow]:
        """Feeds due for a poll, leased so that another worker does not poll them at the same time.

        `force` takes every enabled feed, paused ones included.
        """
        cond = [feeds.c.removed.is_(False), feeds.c.enabled.is_(True)]
        if not force:
            cond += [feeds.c.paused_reason.is_(None),
                     or_(feeds.c.next_check_at.is_(None), feeds.c.next_check_at <= now)]
        q = select(feeds).where(and_(*cond)).order_by(feeds.c.next_check_at, feeds.c.id)
        if limit:
            q = q.limit(limit)
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        with self._write() as conn:
            rows = [_feed_row(r) for r in conn.execute(q)]
            if rows:
                conn.execute(update(feeds).where(feeds.c.id.in_([r.id for r in rows]))
                             .values(next_check_at=now + timedelta(seconds=lease_s)))
        return rows

    def record_feed_success(self, feed_id: int, *, now: datetime, next_check_at: datetime,
                            etag: str | None, last_modified: str | None, title: str | None = None) -> None:
        """Store the outcome of a successful (200 or 304) poll."""
        values: dict[str, Any] = dict(etag=etag, last_modified=last_modified, error_count=0, last_error=None,
                                      paused_reason=None, last_checked_at=now, last_success_at=now,
                                      next_check_at=next_check_at, updated_at=now)
        if title:
            values["title"] = title[:500]
        with self._write() as conn:
            conn.execute(update(feeds).where(feeds.c.id == feed_id).values(**values))

    def record_feed_failure(self, feed_id: int, *, now: datetime, error: str, error_count: int,
                            next_check_at: datetime, paused_reason: str | None) -> None:
        """Store a failed poll: error count, last error, next check and, when it keeps failing, the pause."""
        with self._write() as conn:
            conn.execute(update(feeds).where(feeds.c.id == feed_id).values(
                error_count=error_count, last_error=error[:2000], last_checked_at=now,
                next_check_at=next_check_at, paused_reason=paused_reason, updated_at=now))

    def resume_feed(self, id_or_url: str | int) -> FeedRow | None:
        """Clear a feed's pause and errors so the next poll takes it."""
        row = self.get_feed(id_or_url)
        if row is None:
            return None
        with self._write() as conn:
            conn.execute(update(feeds).where(feeds.c.id == row.id).values(
                paused_reason=None, error_count=0, next_check_at=utcnow(), updated_at=utcnow()))
        return self.get_feed(row.id)

    # articles --------------------------------------------------------------------------------------------

    def insert_articles(self, feed_id: int | None, items: Iterable[NewArticle], now: datetime) -> list[int]:
        """Insert articles not seen before (by key or canonical URL); returns the ids of those stored now."""
        rows = [dict(feed_id=feed_id, key=a.key, url=a.url, canonical_url=a.canonical_url, title=a.title,
                     teaser=a.teaser, text=a.text, text_source=a.text_source, content_hash=a.content_hash,
                     published_at=a.published_at, fetched_at=now, extract_attempts=0) for a in items]
        if not rows:
            return []
        known = self.known_keys([r["key"] for r in rows])
        rows = [r for r in rows if r["key"] not in known]
        if not rows:
            return []
        stmt = self._insert(articles).on_conflict_do_nothing().returning(articles.c.id)
        with self._write() as conn:
            # One multi-row statement; rows that hit a unique key or canonical URL are skipped, not stored.
            return sorted(r.id for r in conn.execute(stmt, rows))

    def known_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these article keys are stored already."""
        if not keys:
            return set()
        with self.engine.connect() as conn:
            return {r.key for r in conn.execute(select(articles.c.key).where(articles.c.key.in_(list(keys))))}

    def articles_pending_text(self, limit: int = 100, max_attempts: int = 3) -> list[dict[str, Any]]:
        """Articles whose page still has to be fetched for full text."""
        q = (select(articles.c.id, articles.c.url, articles.c.feed_id, articles.c.extract_attempts)
             .where(articles.c.text_source == "pending", articles.c.extract_attempts < max_attempts)
             .order_by(articles.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def set_article_text(self, article_id: int, *, text: str | None, error: str | None = None,
                         give_up: bool = False) -> None:
        """Record the outcome of a page extraction; on give-up the teaser stays the text."""
        with self._write() as conn:
            if text is not None:
                conn.execute(update(articles).where(articles.c.id == article_id).values(
                    text=text, text_source="page", extract_error=None,
                    extract_attempts=articles.c.extract_attempts + 1))
            else:
                conn.execute(update(articles).where(articles.c.id == article_id).values(
                    extract_error=(error or "")[:2000], extract_attempts=articles.c.extract_attempts + 1,
                    text_source="failed" if give_up else "pending"))

    def list_articles(self, since: datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Stored articles, newest first, with their outlet name."""
        q = (select(articles.c.id, articles.c.key, articles.c.url, articles.c.title, articles.c.published_at,
                    articles.c.fetched_at, articles.c.text_source, articles.c.topic_score, articles.c.story_id,
                    func.length(articles.c.text).label("text_chars"), articles.c.feed_id, *_feed_label_columns())
             .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
             .order_by(articles.c.fetched_at.desc(), articles.c.id.desc()).limit(limit))
        if since is not None:
            q = q.where(articles.c.fetched_at >= since)
        with self.engine.connect() as conn:
            rows = [_with_outlet(r._mapping) for r in conn.execute(q)]
        for r in rows:
            del r["feed_id"]
        return rows

    def count_articles(self) -> int:
        """Number of stored articles."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(articles)).scalar_one()

    # processing: topics and stories ---------------------------------------------------------------------------

    def unprocessed_articles(self, limit: int = 256) -> list[dict[str, Any]]:
        """Articles not yet through topic/story processing whose text is final, oldest first."""
        q = (select(articles.c.id, articles.c.key, articles.c.title, articles.c.text, articles.c.url,
                    articles.c.canonical_url, articles.c.published_at, articles.c.fetched_at,
                    articles.c.content_hash, articles.c.feed_id,
                    func.coalesce(feeds.c.all_world, False).label("all_world"), *_feed_label_columns())
             .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
             .where(articles.c.processed_at.is_(None), articles.c.text_source != "pending")
             .order_by(articles.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [_with_outlet(r._mapping) for r in conn.execute(q)]

    def save_article_outcome(self, article_id: int, *, topic_score: float, topics: dict[str, float],
                             story_id: int | None, reason: str | None, now: datetime,
                             story_score: float | None = None) -> None:
        """Record an article's topic scores, story, and how surely it belongs there; marks it processed."""
        with self._write() as conn:
            conn.execute(update(articles).where(articles.c.id == article_id).values(
                topic_score=topic_score, topics=topics, story_id=story_id, story_reason=reason,
                story_score=story_score, processed_at=now))

    def create_story(self, *, title: str, now: datetime, topic_score: float, topics: dict[str, float],
                     state: bytes) -> int:
        """A new story; returns its id."""
        with self._write() as conn:
            return conn.execute(insert(stories).values(
                title=title, created_at=now, updated_at=now, major_update_at=now, version=1, article_count=0,
                outlet_count=0, topic_score=topic_score, topics=topics, state=state).returning(stories.c.id)
            ).scalar_one()

    def update_story(self, story_id: int, *, now: datetime, state: bytes, topic_score: float,
                     topics: dict[str, float], major: bool) -> None:
        """Store a story's new state after an article joined it; a major update bumps its version.

        Its summary is marked out of date (summary_method NULL) until set_story_summary writes the new one."""
        values: dict[str, Any] = dict(updated_at=now, state=state, topic_score=topic_score, topics=topics,
                                      summary_method=None)
        if major:
            values.update(version=stories.c.version + 1, major_update_at=now)
        with self._write() as conn:
            conn.execute(update(stories).where(stories.c.id == story_id).values(**values))

    def refresh_story_counts(self, story_ids: Iterable[int]) -> None:
        """Recount member articles and the distinct outlets among core members (those that surely belong, by
        `story.is_core_member`): a weak, possibly wrong join must not raise a story's rank."""
        # Imported here: story.py pulls numpy and scikit-learn, which the feed commands never need.
        from bot.pipeline.story import is_core_member

        with self._write() as conn:
            for sid in set(story_ids):
                rows = conn.execute(select(articles.c.feed_id, articles.c.story_reason, articles.c.story_score)
                                    .where(articles.c.story_id == sid)).all()
                core = {r.feed_id for r in rows if is_core_member(r.story_reason, r.story_score)}
                conn.execute(update(stories).where(stories.c.id == sid).values(
                    article_count=len(rows), outlet_count=max(len(core), 1)))

    def story_states(self, since: datetime) -> list[tuple[int, bytes]]:
        """(id, state) of stories updated since a time: the window the same-story index covers."""
        with self.engine.connect() as conn:
            return [(r.id, r.state) for r in conn.execute(
                select(stories.c.id, stories.c.state).where(stories.c.updated_at >= since,
                                                            stories.c.state.is_not(None)))]

    def story_members(self, story_id: int) -> list[dict[str, Any]]:
        """A story's articles with outlet, link, times, text and how they joined, earliest published first
        (the order the digest's links use, so the first core member is the story's lead everywhere)."""
        q = (select(articles.c.id, articles.c.title, articles.c.text, articles.c.url, articles.c.canonical_url,
                    articles.c.published_at, articles.c.fetched_at, articles.c.feed_id, articles.c.story_reason,
                    articles.c.story_score, *_feed_label_columns())
             .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
             .where(articles.c.story_id == story_id)
             .order_by(func.coalesce(articles.c.published_at, articles.c.fetched_at), articles.c.id))
        with self.engine.connect() as conn:
            return [_with_outlet(r._mapping) for r in conn.execute(q)]

    def set_story_summary(self, story_id: int, *, title: str, summary: str, method: str) -> None:
        """Store a story's headline and summary."""
        with self._write() as conn:
            conn.execute(update(stories).where(stories.c.id == story_id).values(
                title=title, summary=summary, summary_method=method))

    def stories_without_summary(self, since: datetime) -> list[int]:
        """Stories updated since a time whose summary is missing or out of date (a crash or an error came
        between their last change and its summary)."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(stories.c.id).where(
                stories.c.updated_at >= since, stories.c.summary_method.is_(None)).order_by(stories.c.id)).scalars())

    def get_story(self, story_id: int) -> dict[str, Any] | None:
        """One story row."""
        with self.engine.connect() as conn:
            row = conn.execute(select(stories).where(stories.c.id == story_id)).first()
        return dict(row._mapping) if row else None

    # summary cache (implements summarizer's cache protocol) ------------------------------------------------

    def summary_get(self, key: str) -> dict[str, Any] | None:
        """A cached summary payload by key."""
        with self.engine.connect() as conn:
            row = conn.execute(select(summaries.c.payload).where(summaries.c.key == key)).first()
        return row.payload if row else None

    def summary_put(self, key: str, model: str, payload: dict[str, Any]) -> None:
        """Cache a summary payload (first writer wins)."""
        with self._write() as conn:
            conn.execute(self._insert(summaries).values(key=key, model=model, payload=payload,
                                                        created_at=utcnow()).on_conflict_do_nothing())


__all__ = ["GENERIC_LABELS", "FeedRow", "NewArticle", "Store", "display_name", "feed_host", "is_generic_label",
           "outlet_name"]

"""Article storage: articles as fetched from feeds, their page text, and their topic/story outcome."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update

from bot.models import NewArticle
from bot.storage.db import Database
from bot.storage.feeds import feed_label_columns, row_outlet
from bot.storage.tables import articles, feeds


@dataclass(frozen=True)
class PendingArticle:
    """An article whose page still has to be fetched for its full text."""

    id: int
    url: str | None
    feed_id: int | None
    extract_attempts: int


@dataclass(frozen=True)
class ArticleRow:
    """A stored article as listed (`newsdigest articles`), with its outlet name."""

    id: int
    key: str
    url: str | None
    title: str
    published_at: datetime | None
    fetched_at: datetime
    text_source: str
    topic_score: float | None
    story_id: int | None
    text_chars: int | None
    outlet: str


@dataclass(frozen=True)
class UnprocessedArticle:
    """An article waiting for topic and story processing, with what those stages read."""

    id: int
    key: str
    title: str
    text: str
    url: str | None
    canonical_url: str | None
    published_at: datetime | None
    fetched_at: datetime
    content_hash: str
    feed_id: int | None
    all_world: bool
    outlet: str
    # Topic scores and story features computed ahead (bot.processing.Prepared.to_bytes); None: not yet.
    prepared: bytes | None = None


class ArticleStorage(Database):
    """Articles: insert what a poll found, complete their text, record their processing outcome."""

    def insert_articles(self, feed_id: int | None, items: Iterable[NewArticle], now: datetime) -> list[int]:
        """Insert articles not seen before (by key or canonical URL); returns the ids of those stored now."""
        rows: list[dict[str, Any]] = [dict(feed_id=feed_id, key=a.key, url=a.url, canonical_url=a.canonical_url, title=a.title,
                     teaser=a.teaser, text=a.text, text_source=a.text_source, content_hash=a.content_hash,
                     published_at=a.published_at, fetched_at=now, extract_attempts=0) for a in items]
        if not rows:
            return []
        known = self.known_keys([r["key"] for r in rows])
        rows = [r for r in rows if r["key"] not in known]
        if not rows:
            return []
        stmt = self.insert(articles).on_conflict_do_nothing().returning(articles.c.id)
        with self.write() as conn:
            # One multi-row statement; rows that hit a unique key or canonical URL are skipped, not stored.
            return sorted(r.id for r in conn.execute(stmt, rows))

    def known_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these article keys are stored already."""
        if not keys:
            return set()
        with self.read() as conn:
            return {r.key for r in conn.execute(select(articles.c.key).where(articles.c.key.in_(list(keys))))}

    def articles_pending_text(self, limit: int = 100, max_attempts: int = 3) -> list[PendingArticle]:
        """Articles whose page still has to be fetched for full text."""
        q = (select(articles.c.id, articles.c.url, articles.c.feed_id, articles.c.extract_attempts)
             .where(articles.c.text_source == "pending", articles.c.extract_attempts < max_attempts)
             .order_by(articles.c.id).limit(limit))
        with self.read() as conn:
            return [PendingArticle(**r._mapping) for r in conn.execute(q)]

    def set_article_text(self, article_id: int, *, text: str | None, error: str | None = None,
                         give_up: bool = False) -> None:
        """Record the outcome of a page extraction; on give-up the teaser stays the text."""
        with self.write() as conn:
            if text is not None:
                conn.execute(update(articles).where(articles.c.id == article_id).values(
                    text=text, text_source="page", extract_error=None,
                    extract_attempts=articles.c.extract_attempts + 1))
            else:
                conn.execute(update(articles).where(articles.c.id == article_id).values(
                    extract_error=(error or "")[:2000], extract_attempts=articles.c.extract_attempts + 1,
                    text_source="failed" if give_up else "pending"))

    def list_articles(self, since: datetime | None = None, limit: int = 500) -> list[ArticleRow]:
        """Stored articles, newest first, with their outlet name."""
        q = (select(articles.c.id, articles.c.key, articles.c.url, articles.c.title, articles.c.published_at,
                    articles.c.fetched_at, articles.c.text_source, articles.c.topic_score, articles.c.story_id,
                    func.length(articles.c.text).label("text_chars"), articles.c.feed_id, *feed_label_columns())
             .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
             .order_by(articles.c.fetched_at.desc(), articles.c.id.desc()).limit(limit))
        if since is not None:
            q = q.where(articles.c.fetched_at >= since)
        with self.read() as conn:
            return [ArticleRow(id=r.id, key=r.key, url=r.url, title=r.title, published_at=r.published_at,
                               fetched_at=r.fetched_at, text_source=r.text_source, topic_score=r.topic_score,
                               story_id=r.story_id, text_chars=r.text_chars, outlet=row_outlet(r._mapping))
                    for r in conn.execute(q)]

    def unprocessed_articles(self, limit: int = 256) -> list[UnprocessedArticle]:
        """Articles not yet through topic/story processing whose text is final, oldest first."""
        return self._unprocessed(limit=limit)

    def articles_to_prepare(self, article_ids: Sequence[int]) -> list[UnprocessedArticle]:
        """Those of these articles whose text is final and that are neither processed nor prepared yet."""
        if not article_ids:
            return []
        return self._unprocessed(ids=article_ids)

    def _unprocessed(self, *, limit: int | None = None, ids: Sequence[int] | None = None) -> list[UnprocessedArticle]:
        q = (select(articles.c.id, articles.c.key, articles.c.title, articles.c.text, articles.c.url,
                    articles.c.canonical_url, articles.c.published_at, articles.c.fetched_at,
                    articles.c.content_hash, articles.c.feed_id, articles.c.prepared,
                    func.coalesce(feeds.c.all_world, False).label("all_world"), *feed_label_columns())
             .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
             .where(articles.c.processed_at.is_(None), articles.c.text_source != "pending")
             .order_by(articles.c.id))
        if ids is not None:
            q = q.where(articles.c.id.in_(list(ids)), articles.c.prepared.is_(None))
        if limit is not None:
            q = q.limit(limit)
        with self.read() as conn:
            return [UnprocessedArticle(
                id=r.id, key=r.key, title=r.title, text=r.text, url=r.url, canonical_url=r.canonical_url,
                published_at=r.published_at, fetched_at=r.fetched_at, content_hash=r.content_hash,
                feed_id=r.feed_id, all_world=bool(r.all_world), outlet=row_outlet(r._mapping),
                prepared=r.prepared) for r in conn.execute(q)]

    def save_prepared(self, prepared: Mapping[int, bytes]) -> int:
        """Store features computed ahead for articles still unprocessed (a processed one keeps none); returns
        how many rows took them. Writing the same article twice stores the same bytes."""
        if not prepared:
            return 0
        stmt = (update(articles).where(articles.c.id == bindparam("aid"), articles.c.processed_at.is_(None))
                .values(prepared=bindparam("blob")))
        with self.write() as conn:
            result = conn.execute(stmt, [{"aid": k, "blob": v} for k, v in prepared.items()])
            return int(result.rowcount or 0)

    def save_article_outcome(self, article_id: int, *, topic_score: float, topics: dict[str, float],
                             story_id: int | None, reason: str | None, now: datetime,
                             story_score: float | None = None) -> None:
        """Record an article's topic scores, story, and how surely it belongs there; marks it processed."""
        with self.write() as conn:
            conn.execute(update(articles).where(articles.c.id == article_id).values(
                topic_score=topic_score, topics=topics, story_id=story_id, story_reason=reason,
                story_score=story_score, processed_at=now, prepared=None))


__all__ = ["ArticleRow", "ArticleStorage", "NewArticle", "PendingArticle", "UnprocessedArticle"]

"""The core pipeline's storage: one facade over the feed, article, story and summary-cache domains.

Each domain lives in its own module (bot/storage/feeds.py, articles.py, stories.py, summary_cache.py) behind a
Protocol in bot/ports.py; callers depend on the narrow Protocol, the composition root builds this facade. Every
write is idempotent and keyed by ids or natural keys.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from bot.errors import StorageError
from bot.models import NewArticle
from bot.storage.alerts import AlertStorage
from bot.storage.articles import ArticleRow, ArticleStorage, PendingArticle, UnprocessedArticle
from bot.storage.db import Database, _storage_error, make_engine, upgrade
from bot.storage.feeds import (
    GENERIC_LABELS,
    FeedRow,
    FeedStorage,
    display_name,
    feed_host,
    is_generic_label,
    outlet_name,
)
from bot.storage.stories import StoryMember, StoryRow, StoryStorage
from bot.storage.summary_cache import SummaryCacheStorage, SummaryEntry


class Store(AlertStorage, FeedStorage, ArticleStorage, StoryStorage, SummaryCacheStorage, Database):
    """Database access for the core pipeline (feeds, articles, stories, summary cache)."""

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Create the engine and bring the schema up to date."""
        try:
            engine = make_engine(url)
        except OSError as exc:  # SQLite: the file's folder cannot be made
            raise StorageError(f"cannot open {url}: {exc}") from exc
        if migrate:
            try:
                upgrade(engine)
            except SQLAlchemyError as exc:
                engine.dispose()
                raise _storage_error(exc) from exc
        return cls(engine)

    def close(self) -> None:
        """Dispose of pooled connections."""
        self.engine.dispose()


__all__ = ["GENERIC_LABELS", "ArticleRow", "FeedRow", "NewArticle", "PendingArticle", "Store", "StoryMember",
           "StoryRow", "SummaryEntry", "UnprocessedArticle", "display_name", "feed_host", "is_generic_label",
           "outlet_name"]

"""FeedAdmin over the Store and bot.feedlist: the same validation and SSRF rules as the CLI."""

from __future__ import annotations

from collections.abc import Sequence

from bot import feedlist
from bot.storage.store import FeedRow, Store


class StoreFeedAdmin:
    """Global feed list operations for bot owners' chat commands."""

    def __init__(self, store: Store, *, allow_private: bool, origin: str = "chat") -> None:
        self.store = store
        self.allow_private = allow_private
        self.origin = origin

    def add(self, url: str) -> tuple[FeedRow, bool]:
        """Validate and add one feed."""
        return feedlist.add_feed(self.store, url, origin=self.origin, allow_private=self.allow_private)

    def remove(self, id_or_url: str) -> FeedRow | None:
        """Remove a feed by id or URL."""
        return self.store.remove_feed(id_or_url)

    def list(self) -> Sequence[FeedRow]:
        """Active feeds."""
        return self.store.list_feeds()

    def import_opml(self, data: bytes) -> str:
        """Import an OPML file; one-line report."""
        report = feedlist.import_opml(self.store, data, origin=self.origin, allow_private=self.allow_private)
        line = report.summary()
        if report.rejected:
            url, reason = report.rejected[0]
            line += f" (first rejected: {url}: {reason})"
        return line

    def export_opml(self) -> bytes:
        """The feed list as OPML bytes."""
        return feedlist.export_opml(self.store.list_feeds()).encode("utf-8")

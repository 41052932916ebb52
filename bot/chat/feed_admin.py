"""FeedAdmin over the Store and bot.feedlist: the same validation and SSRF rules as the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from bot import feedlist
from bot.clock import utcnow
from bot.errors import CommandError, FetchError, ParseError
from bot.net import FetchLimits
from bot.ports import FeedStore
from bot.storage.feeds import FeedRow

Probe = Callable[[str], Awaitable[feedlist.FeedProbe]]


class StoreFeedAdmin:
    """Global feed list operations for bot owners' chat commands."""

    def __init__(self, store: FeedStore, *, allow_private: bool, origin: str = "chat", limits: FetchLimits | None = None,
                 probe: Probe | None = None) -> None:
        self.store = store
        self.allow_private = allow_private
        self.origin = origin
        limits = limits or FetchLimits(allow_private=allow_private)
        self.probe = probe or (lambda url: feedlist.probe_feed(url, limits))

    async def add(self, url: str) -> tuple[FeedRow, bool]:
        """Validate, fetch and parse a feed once, then add it with its title; returns (feed, created).

        A URL that is blocked, cannot be fetched or is not a feed (an HTML page) raises CommandError with the
        reason, and nothing is added.
        """
        url = feedlist.validate_feed_url(url, allow_private=self.allow_private)
        existing = await asyncio.to_thread(self.store.get_feed, url)
        if existing is not None:
            return existing, False
        try:
            probe = await self.probe(url)
        except (FetchError, ParseError) as exc:
            raise CommandError(feedlist.feed_refusal(exc, url)) from exc
        row, created = await asyncio.to_thread(feedlist.add_feed, self.store, url, origin=self.origin,
                                               allow_private=self.allow_private)
        if created and probe.title:
            # Its title now, so the reply and /feeds name it; the poller stores its entries on the next cycle.
            now = utcnow()
            await asyncio.to_thread(self.store.record_feed_success, row.id, now=now, next_check_at=now, etag=None,
                                    last_modified=None, title=probe.title)
            fresh = await asyncio.to_thread(self.store.get_feed, row.id)
            row = fresh or row
        return row, created

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
            line += f"; first rejected: {url}: {reason}"
        return line

    def export_opml(self) -> bytes:
        """The feed list as OPML bytes."""
        return feedlist.export_opml(self.store.list_feeds()).encode("utf-8")

"""Plain value objects that flow through the pipeline: feed -> entry -> article -> story -> digest -> delivery.

No project imports here; every stage module depends on these and nothing depends on the stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FeedSpec:
    """A feed as configured (feeds.yaml, CLI, OPML or chat admin)."""

    url: str
    name: str = ""
    tags: tuple[str, ...] = ()
    region: str | None = None
    language: str | None = None
    interval_s: int = 900
    timeout_s: float | None = None
    enabled: bool = True
    all_world: bool = False
    date_fallback: bool = False
    state_media: bool = False


@dataclass(frozen=True)
class FetchResult:
    """What one HTTP GET of a feed or page produced."""

    url: str
    status: int
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    final_url: str | None = None
    max_age_s: float | None = None
    retry_after_s: float | None = None

    @property
    def not_modified(self) -> bool:
        """True for a 304 answer to a conditional GET."""
        return self.status == 304


@dataclass(frozen=True)
class Entry:
    """One item of a parsed feed, before the article text is known."""

    key: str
    url: str | None
    canonical_url: str | None
    title: str
    summary: str = ""
    content: str = ""
    published: datetime | None = None
    author: str | None = None


@dataclass(frozen=True)
class ParsedFeed:
    """A feed document parsed into entries."""

    title: str
    link: str | None
    entries: tuple[Entry, ...]
    version: str = ""
    bozo: bool = False
    bozo_reason: str | None = None


@dataclass(frozen=True)
class NewArticle:
    """An article to store, as the entry stage made it from a parsed entry."""

    key: str
    url: str | None
    canonical_url: str | None
    title: str
    teaser: str
    text: str
    text_source: str
    content_hash: str
    published_at: datetime | None

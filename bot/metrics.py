"""Prometheus metrics of the service: counters and latency histograms moved by the stages, gauges read from the
database on scrape.

Every metric lives in one CollectorRegistry owned by a `Metrics` object (not prometheus_client's global one), so
a test installs a fresh one and reads exactly what its run did. The stages call `current()` at the moment they
count; `serve` in bot/observability.py exposes the registry on /metrics.

Not here yet: the depth of a task queue (there is no broker in the single process; the scale-out engine adds it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("newsdigest.metrics")

# Fetches run from a few ms (a 304 on loopback) to the request timeout (20 s by default).
FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0)
# A processing batch embeds up to 128 articles and summarizes their stories: seconds to minutes on a CPU.
PROCESSING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# One chat API call.
SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The service's counters and histograms in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Feed polls by outcome: fetched (a body was parsed), not_modified (304), failed.
        self.feed_polls = Counter("newsdigest_feed_polls", "Feed polls by outcome (fetched, not_modified, failed)",
                                  ["outcome"], registry=r)
        self.feeds_paused = Counter("newsdigest_feeds_paused", "Feeds the poller paused after repeated failures",
                                    registry=r)
        self.articles = Counter("newsdigest_articles", "New articles stored", registry=r)
        self.article_pages = Counter("newsdigest_article_pages",
                                     "Article pages fetched for their text, by outcome (extracted, failed)",
                                     ["outcome"], registry=r)
        self.articles_processed = Counter("newsdigest_articles_processed",
                                          "Articles through topic scoring and same-story placement", registry=r)
        self.stories = Counter("newsdigest_stories", "Stories by event (created, updated)", ["event"], registry=r)
        self.summaries = Counter("newsdigest_summaries", "Story summaries written", registry=r)
        self.digests = Counter("newsdigest_digests", "Digests queued for a chat", ["platform"], registry=r)
        self.outbox = Counter("newsdigest_outbox_parts",
                              "Outbox parts by outcome (sent, retried, failed, migrated)", ["platform", "outcome"],
                              registry=r)
        self.chats_paused = Counter("newsdigest_chats_paused", "Chats paused because they blocked the bot",
                                    ["platform"], registry=r)
        self.fetch_seconds = Histogram("newsdigest_fetch_seconds", "HTTP fetch latency (feed or article page)",
                                       ["kind"], buckets=FETCH_BUCKETS, registry=r)
        self.processing_seconds = Histogram("newsdigest_processing_seconds",
                                            "Latency of one processing batch (topics, stories, summaries)",
                                            buckets=PROCESSING_BUCKETS, registry=r)
        self.send_seconds = Histogram("newsdigest_send_seconds", "Latency of one chat send", ["platform"],
                                      buckets=SEND_BUCKETS, registry=r)
        self.poll_cycle_seconds = Histogram("newsdigest_poll_cycle_seconds",
                                            "One poll cycle: poll the due feeds, fill texts, process",
                                            buckets=PROCESSING_BUCKETS, registry=r)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 when it was never set): for tests and the bench."""
        return self.registry.get_sample_value(name, labels) or 0.0


_current = Metrics()


def current() -> Metrics:
    """The metrics the stages count into."""
    return _current


def install(metrics: Metrics) -> Metrics:
    """Make `metrics` the current one (a test's fresh registry); returns the previous one."""
    global _current
    previous, _current = _current, metrics
    return previous


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the block's wall time in `histogram`, failures included."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


class StateSource(Protocol):
    """What the scrape-time gauges read (bot/storage: feed_counts on Store, the chat counts on ChatStore)."""

    def feed_counts(self) -> dict[str, int]: ...


class ChatStateSource(Protocol):
    """The chat side of the scrape-time gauges."""

    def outbox_counts(self) -> dict[str, int]: ...

    def subscription_counts(self) -> dict[str, int]: ...


FEED_STATES = ("active", "failing", "paused", "disabled")
OUTBOX_STATES = ("pending", "sent", "failed", "cancelled")
SUBSCRIPTION_STATES = ("active", "paused", "unsubscribed")


class DatabaseCollector(Collector):
    """Gauges read from the database on each scrape: feeds, outbox parts and subscriptions by state.

    A scrape while the database is down still answers: newsdigest_database_up is 0 and the state gauges are
    left out (a stale number would look like a real one).
    """

    def __init__(self, feeds: StateSource, chats: ChatStateSource | None = None) -> None:
        self.feeds = feeds
        self.chats = chats

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """No description up front: registering must not query the database."""
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Read the counts now."""
        up = GaugeMetricFamily("newsdigest_database_up", "1 when the last scrape could read the database")
        try:
            families = [_family("newsdigest_feeds", "Feeds by state (active, failing, paused, disabled)",
                                "state", FEED_STATES, self.feeds.feed_counts())]
            if self.chats is not None:
                families.append(_family("newsdigest_outbox", "Outbox parts by status (pending, sent, failed, "
                                        "cancelled)", "status", OUTBOX_STATES, self.chats.outbox_counts()))
                families.append(_family("newsdigest_subscriptions", "Chat subscriptions by state (active, "
                                        "paused, unsubscribed)", "state", SUBSCRIPTION_STATES,
                                        self.chats.subscription_counts()))
        except Exception as exc:  # noqa: BLE001 - a scrape must answer while the database is down
            log.debug("metrics scrape could not read the database: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]


def _family(name: str, doc: str, label: str, known: tuple[str, ...], counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key in dict.fromkeys([*known, *counts]):
        family.add_metric([key], counts.get(key, 0))
    return family


__all__ = ["DatabaseCollector", "Metrics", "current", "install", "timed"]

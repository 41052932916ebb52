"""The orchestrator: runs the pipeline stages on a schedule, each as an idempotent step keyed by ids.

    claim_due_feeds ─▶ poll_feed(feed_id) ─▶ parse_feed ─▶ new entries ─▶ insert_articles
        ─▶ fill_text(article_id)          # teaser-only entries: fetch the page, extract the main text
        ─▶ processor.process()            # topic score, same-story merge, story summary
        ─▶ chat runtime                   # digest schedule, outbox, Telegram | Discord | console

A failing feed is data, not a crash: its error count, last error and next check are stored, and the other feeds
go on. Each step commits its own result, so a crash loses nothing committed and a rerun duplicates nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import multiprocessing
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from bot import metrics
from bot.clock import utcnow
from bot.errors import ConfigError, ExtractError, FetchError, NewsdigestError, ParseError, StorageError
from bot.net import PAGE_ACCEPT, Fetcher
from bot.pipeline import alerts as alert_stage
from bot.pipeline import article as article_stage
from bot.pipeline import feed as feed_stage
from bot.pipeline.entry import parse_to_articles
from bot.ports import AlertEventStore, PollStore
from bot.storage.articles import PendingArticle
from bot.storage.feeds import FeedRow
from bot.storage.outage import Backoff, describe, is_database_down
from bot.worker_init import watch_parent

log = logging.getLogger("newsdigest.runner")

_T = TypeVar("_T")

# Feeds one pool's workers parse before they are replaced: a long-lived parser process keeps what feedparser and
# lxml hold between calls (caches, fragmentation) and grows; a fresh worker costs ~0.3 s of CPU.
RECYCLE_AFTER = 500
# Parse workers are stopped after a poll phase (feeds, then pages) unless a feed is due within this long (or
# the poll tick).
PARSERS_KEPT_S = 120.0
PARSER_DIED = "the parse process died while parsing it (a crash in the parser or out of memory)"


class ParserCrashError(ParseError):
    """A parse process died while parsing this feed, alone in its pool (so this feed is the cause)."""

    def __init__(self) -> None:
        super().__init__(PARSER_DIED)


class ArticleProcessor(Protocol):
    """Runs the stages after storage (topic, story, summary) on every waiting article; idempotent."""

    def process(self) -> int:
        """Process the waiting articles; returns how many."""
        ...


@dataclass
class PollReport:
    """Counts of one poll cycle (the `poll --json` contract)."""

    feeds: int = 0
    fetched: int = 0
    not_modified: int = 0
    new_articles: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    new_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object printed by `newsdigest poll --once --json`."""
        return {"feeds": self.feeds, "fetched": self.fetched, "not_modified": self.not_modified,
                "new_articles": self.new_articles, "failed": self.failed}


class ParsePool:
    """A process pool for feed parsing and page extraction that survives the death of a worker (a crash in C
    code, an OOM kill).

    A dead worker breaks a ProcessPoolExecutor for good and fails every call it held. So the pool is rebuilt,
    and each failed call is run again alone in a fresh one-worker process: one that kills that process too
    raises ParserCrashError, the others return their result. At most `workers` calls are handed to the pool at a
    time, so a break fails only calls that were running (a few suspects, not every queued feed). Usable from one
    event loop at a time (any, one after another). After `recycle_after` calls the workers are replaced by fresh
    ones (calls running finish on the old ones), so whatever a parser leaks stays bounded. Workers start on the
    first call; `release` stops them (the Runner does after a poll phase when no feed is due within
    PARSERS_KEPT_S), so between bursts of polling (a small install polls its feeds every 15 minutes) the
    service holds no parse process.
    """

    def __init__(self, workers: int | None = None, *, initializer: Callable[[], object] | None = None,
                 recycle_after: int | None = RECYCLE_AFTER) -> None:
        # One core is left to the main process (embedding, placement): a 2-core VPS runs one parse worker.
        self.workers = workers or max(1, min(4, (os.cpu_count() or 1) - 1))
        self._initializer = initializer
        self.recycle_after = recycle_after
        self._calls = 0  # handed to the current pool
        self.recycles = 0  # pools replaced after recycle_after calls
        self._lock = threading.Lock()
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[asyncio.Semaphore, asyncio.Lock]] \
            = weakref.WeakKeyDictionary()
        self._generation = 0
        self.rebuilds = 0  # pools replaced after a break
        self.isolated = 0  # calls rerun alone to find the one that kills its process
        self.releases = 0  # idle workers stopped by release
        self._running = 0  # calls handed to a pool and not yet returned
        self._pool = self._new(self.workers)

    def _new(self, workers: int) -> ProcessPoolExecutor:
        # "spawn": forking a process that runs an event loop and holds DB connections is unsafe.
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=functools.partial(watch_parent, os.getpid(), self._initializer))

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """`fn(*args)` in a worker process; raises ParserCrashError when it kills the process running it."""
        loop = asyncio.get_running_loop()
        if loop not in self._gates:
            self._gates[loop] = (asyncio.Semaphore(self.workers), asyncio.Lock())
        gate, alone = self._gates[loop]
        for _ in range(3):
            async with gate:
                with self._lock:
                    if self.recycle_after is not None and self._calls >= self.recycle_after:
                        self._replace().shutdown(wait=False)
                        self.recycles += 1
                    self._calls += 1
                    self._running += 1
                    pool, generation = self._pool, self._generation
                try:
                    try:
                        future = pool.submit(fn, *args)
                    except BrokenProcessPool:
                        self._rebuild(generation)  # broken before this call reached it: just use the new pool
                        continue
                    try:
                        return await asyncio.wrap_future(future)
                    except BrokenProcessPool:
                        self._rebuild(generation)
                        break
                finally:
                    with self._lock:
                        self._running -= 1
        # One suspect at a time, so that a process that dies here died of this call and no other.
        async with alone:
            return await self._run_alone(fn, args)

    @property
    def started(self) -> bool:
        """Whether the current pool has workers (they start on its first call)."""
        return self._calls > 0

    def release(self) -> bool:
        """Stop the workers unless a call is running, and wait for them to exit (the next call starts fresh
        ones, ~0.7 s of CPU); returns whether it stopped any."""
        with self._lock:
            if self._running or not self.started:
                return False
            old = self._replace()
            self.releases += 1
        old.shutdown(wait=True)  # idle workers exit at once; waited for, so none outlives the pool
        log.debug("parse workers stopped: no feed is due soon")
        return True

    def _rebuild(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # another call saw the same break and rebuilt already
            old = self._replace()
            self.rebuilds += 1
        log.warning("a parse process died; parse pool rebuilt")
        old.shutdown(wait=False, cancel_futures=True)

    def _replace(self) -> ProcessPoolExecutor:
        """Put a new pool in place of the current one (the lock held); returns the old one."""
        old, self._pool = self._pool, self._new(self.workers)
        self._generation += 1
        self._calls = 0
        return old

    async def _run_alone(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        self.isolated += 1
        pool = self._new(1)
        try:
            return await asyncio.wrap_future(pool.submit(fn, *args))
        except BrokenProcessPool:
            raise ParserCrashError() from None
        finally:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop the workers and wait for them to exit."""
        with self._lock:
            pool = self._pool
        pool.shutdown(wait=True, cancel_futures=True)


class Runner:
    """Polls feeds and fills article text; owns no chat logic.

    `parse_pool` spreads feed parsing and page extraction, which are CPU-bound and read untrusted XML and HTML,
    over the machine's cores in worker processes; without one, both run in a thread.
    """

    def __init__(self, store: PollStore, fetcher: Fetcher, *, policy: feed_stage.PollPolicy | None = None,
                 processor: ArticleProcessor | None = None, rng: random.Random | None = None,
                 progress_every_s: float = 5.0, parse_pool: ParsePool | None = None,
                 alerts: AlertEventStore | None = None) -> None:
        self.store = store
        # Owner alerts are recorded in the store when it keeps them (the Store does; test fakes need not).
        self.alerts = alerts if alerts is not None else store if isinstance(store, AlertEventStore) else None
        self.fetcher = fetcher
        self.policy = policy or feed_stage.PollPolicy()
        self.processor = processor
        self.rng = rng or random.Random()
        self.progress_every_s = progress_every_s
        self.parse_pool = parse_pool
        self.tick_s = 30.0  # run_forever's tick: parse workers stay when a feed is due before the next one
        self._on_polling: Callable[[], object] | None = None  # run_forever's

    async def poll_feed(self, feed: FeedRow, report: PollReport) -> None:
        """Poll one feed and store its new entries; failures are recorded on the feed, never raised."""
        now = utcnow()
        m = metrics.current()
        ids = {"feed_id": feed.id, "feed_url": feed.url}
        try:
            with metrics.timed(m.fetch_seconds.labels("feed")):
                result = await self.fetcher.get(feed.url, etag=feed.etag, last_modified=feed.last_modified,
                                                timeout_s=feed.timeout_s)
            if result.not_modified:
                report.not_modified += 1
                m.feed_polls.labels("not_modified").inc()
                await asyncio.to_thread(
                    self.store.record_feed_success, feed.id, now=now, etag=result.etag or feed.etag,
                    last_modified=result.last_modified or feed.last_modified,
                    next_check_at=feed_stage.next_check_after_success(now, feed.interval_s, result.max_age_s,
                                                                      self.policy))
                await self._recovered(feed, now)
                return
            args = (result.body, result.final_url or feed.url, result.content_type, feed.date_fallback)
            if self.parse_pool is not None:
                parsed = await self.parse_pool.run(parse_to_articles, *args)
            else:
                parsed = await asyncio.to_thread(parse_to_articles, *args)
            report.fetched += 1
            new_ids = await asyncio.to_thread(self.store.insert_articles, feed.id, parsed.articles, now)
            report.new_articles += len(new_ids)
            report.new_ids.extend(new_ids)
            m.feed_polls.labels("fetched").inc()
            m.articles.inc(len(new_ids))
            await asyncio.to_thread(
                self.store.record_feed_success, feed.id, now=now, etag=result.etag,
                last_modified=result.last_modified, title=parsed.title,
                next_check_at=feed_stage.next_check_after_success(now, feed.interval_s, result.max_age_s,
                                                                  self.policy))
            await self._recovered(feed, now)
            if parsed.bozo_reason:
                log.info("%s: parsed with problems (%s); %d entries kept", feed.url, parsed.bozo_reason,
                         len(parsed.articles), extra=ids)
        except Exception as exc:  # noqa: BLE001 - every failure is data on the feed, ours included
            m.feed_polls.labels("failed").inc()
            db_down = is_database_down(exc)
            if db_down:
                # One line per feed: the poll loop logs the outage (with one traceback) and backs off.
                log.warning("%s: database unavailable while polling (%s)", feed.url, describe(exc), extra=ids)
            elif not isinstance(exc, NewsdigestError) or isinstance(exc, StorageError):
                # A database error that is no outage (a bad statement) is ours: its traceback is wanted.
                log.error("%s: unexpected error while polling", feed.url, exc_info=exc, extra=ids)
            decision = feed_stage.after_failure(exc, previous_errors=feed.error_count, interval_s=feed.interval_s,
                                                now=now, rng=self.rng, policy=self.policy)
            if isinstance(exc, ParserCrashError) and PARSER_DIED in (feed.last_error or "") \
                    and decision.paused_reason is None:
                decision = dataclasses.replace(
                    decision, paused_reason="it killed the parse process twice in a row (a crash in the parser "
                                            "or out of memory)")
            report.failed.append({"url": feed.url, "error": decision.error})
            try:
                await asyncio.to_thread(self.store.record_feed_failure, feed.id, now=now, error=decision.error,
                                        error_count=decision.error_count, next_check_at=decision.next_check_at,
                                        paused_reason=decision.paused_reason)
            except Exception as record_exc:  # noqa: BLE001 - the database is down: the claim's lease brings it back
                log.warning("%s: could not record the failure (%s); polled again after its lease", feed.url,
                            decision.error, exc_info=None if db_down and is_database_down(record_exc) else record_exc,
                            extra=ids)
                return
            if decision.paused_reason and not feed.paused_reason:  # a forced poll of a paused feed is no news
                await self._alert(alert_stage.FEED_PAUSED, feed, decision.paused_reason, now)
            elif decision.error_count == alert_stage.FAILING_AFTER:
                await self._alert(alert_stage.FEED_FAILING, feed,
                                  f"{decision.error_count} failures in a row: {decision.error}", now)
            if decision.paused_reason:
                m.feeds_paused.inc()
                log.warning("%s: paused: %s", feed.url, decision.paused_reason, extra=ids)
            else:
                log.warning("%s: %s (failure %d, next try %s)", feed.url, decision.error, decision.error_count,
                            decision.next_check_at.strftime("%H:%M:%S"), extra=ids)

    async def _recovered(self, feed: FeedRow, now: datetime) -> None:
        if feed.error_count >= alert_stage.FAILING_AFTER:
            await self._alert(alert_stage.FEED_RECOVERED, feed, f"after {feed.error_count} failures", now)

    async def _alert(self, kind: str, feed: FeedRow, detail: str, now: datetime) -> None:
        """Record an owner alert event; a failure to record it is logged, never ends the poll."""
        if self.alerts is None:
            return
        try:
            await asyncio.to_thread(self.alerts.record_alert, kind, feed.url, detail, now)
        except Exception as exc:  # noqa: BLE001 - an alert is not worth a failed poll
            log.warning("%s: could not record the %s alert (%s)", feed.url, kind, describe(exc),
                        extra={"feed_id": feed.id})

    async def poll_once(self, *, force: bool = False) -> PollReport:
        """Poll every due feed (every enabled feed with `force`) concurrently; one slow feed delays no other."""
        report = PollReport()
        feeds = await asyncio.to_thread(self.store.claim_due_feeds, utcnow(), force=force)
        report.feeds = len(feeds)
        if not feeds:
            return report
        log.info("polling %d feed%s", len(feeds), "" if len(feeds) == 1 else "s")
        tasks = [asyncio.create_task(self.poll_feed(f, report)) for f in feeds]
        await asyncio.sleep(0)  # each poll runs to its first wait: the requests are on their way
        self._polling_started()
        await self._wait_with_progress(tasks, "feeds polled")
        return report

    def _polling_started(self) -> None:
        if self._on_polling is not None:
            hook, self._on_polling = self._on_polling, None
            hook()

    async def fill_texts(self, limit: int = 200, *, all_pending: bool = False) -> int:
        """Fetch and extract the pages of teaser-only articles, `limit` at a time (one batch, or with
        `all_pending` batches until every waiting page was tried once in this call); returns how many got text."""
        tried: set[int] = set()
        done = 0
        while True:
            # Pages that failed for a passing reason stay pending: skip them here, the next cycle tries again.
            rows = await asyncio.to_thread(self.store.articles_pending_text, limit + len(tried))
            pending = [r for r in rows if r.id not in tried][:limit]
            if not pending:
                return done
            tried.update(r.id for r in pending)
            done += await self._fill_batch(pending)
            if not all_pending:
                return done

    async def fill_one(self, item: PendingArticle) -> bool:
        """Fetch and extract one article's page (a scale-out task); a failure is recorded on the article."""
        return await self._fill_batch([item]) == 1

    async def _fill_batch(self, pending: list[PendingArticle]) -> int:
        done = 0

        m = metrics.current()

        async def one(item: PendingArticle) -> None:
            nonlocal done
            ids = {"article_id": item.id}
            try:
                with metrics.timed(m.fetch_seconds.labels("page")):
                    page = await self.fetcher.get(item.url or "", accept=PAGE_ACCEPT)
                text = await self.extract_page(page.body, page.final_url)
            except Exception as exc:  # noqa: BLE001 - a bad page is recorded on its article, never ends the pass
                m.article_pages.labels("failed").inc()
                if not isinstance(exc, FetchError | ExtractError | ParserCrashError):
                    log.error("article %s: unexpected error while extracting %s", item.id, item.url,
                              exc_info=exc, extra=ids)
                # A page that killed a parse process alone would kill the next one too.
                give_up = (item.extract_attempts + 1 >= 3 or isinstance(exc, ParserCrashError)
                           or (isinstance(exc, FetchError) and not exc.transient))
                await asyncio.to_thread(self.store.set_article_text, item.id, text=None,
                                        error=feed_stage.describe_error(exc), give_up=give_up)
                log.debug("article %s: %s", item.id, exc, extra=ids)
                return
            await asyncio.to_thread(self.store.set_article_text, item.id, text=text)
            m.article_pages.labels("extracted").inc()
            done += 1

        await self._wait_with_progress([asyncio.create_task(one(p)) for p in pending], "article pages fetched")
        return done

    async def extract_page(self, body: bytes, url: str | None) -> str:
        """The article text of a fetched page: in a parse worker when there is a pool (untrusted HTML stays out
        of the service process, and so does trafilatura's ~10 MB), else in a thread."""
        return await self._parse(article_stage.extract_article, body, url)

    async def read_page(self, body: bytes, url: str | None) -> tuple[str, str]:
        """A fetched page's article text and headline (`/summary <link>`), where `extract_page` would run."""
        return await self._parse(article_stage.read_page, body, url)

    async def _parse(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self.parse_pool is not None:
            return await self.parse_pool.run(fn, *args)
        return await asyncio.to_thread(fn, *args)

    async def cycle(self, *, force: bool = False, all_pages: bool = False) -> PollReport:
        """One full pass: poll, fill texts (a batch, or with `all_pages` every waiting page), process."""
        with metrics.timed(metrics.current().poll_cycle_seconds):
            report = await self.poll_once(force=force)
            await self.fill_texts(all_pending=all_pages)
            await self._release_parsers()  # before processing, the phase that holds the most memory
            if self.processor is not None:
                await asyncio.to_thread(self.processor.process)
        return report

    async def _release_parsers(self) -> None:
        """Stop the parse workers when no feed is due within PARSERS_KEPT_S (or the next tick): a small
        install polls its feeds every 15 minutes, and a worker kept between polls holds ~35 MB for nothing.
        Where feeds are due every minute or two they stay (a fresh worker costs ~0.7 s of CPU)."""
        if self.parse_pool is None or not self.parse_pool.started:
            return  # no worker to stop: spare the database the query
        now = utcnow()
        try:
            due = await asyncio.to_thread(self.store.next_poll_at, now)
        except Exception as exc:  # noqa: BLE001 - only a memory saving: the workers stay until the next cycle
            log.debug("next poll time unknown (%s); parse workers kept", describe(exc))
            return
        if due is None or due > now + timedelta(seconds=max(self.tick_s, PARSERS_KEPT_S)):
            await asyncio.to_thread(self.parse_pool.release)

    async def run_forever(self, stop: asyncio.Event, *, tick_s: float = 30.0,
                          on_cycle: Callable[[PollReport], None] | None = None,
                          on_polling: Callable[[], object] | None = None,
                          db_retry_max_s: float = 300.0) -> None:
        """Poll due feeds every `tick_s` until `stop` is set; errors in one cycle never end the loop.

        `on_polling` is called once, as soon as the first cycle's feed requests are on their way (or it found no
        feed due, or it failed): the service starts loading its models then.

        While the database is unreachable the next cycle waits longer each time (tick_s doubling up to
        `db_retry_max_s`, jittered), and the outage is logged once with its traceback, not once per tick.
        """
        backoff = Backoff("poller", base_s=tick_s, max_s=db_retry_max_s, logger=log, rng=self.rng)
        self.tick_s = tick_s
        self._on_polling = on_polling
        while not stop.is_set():
            wait_s = tick_s
            try:
                try:
                    report = await self.cycle()
                finally:
                    self._polling_started()
                backoff.succeeded()
                if on_cycle:
                    on_cycle(report)
            except ConfigError:
                raise  # bad configuration (models that cannot load): no later tick can fix it
            except Exception as exc:  # noqa: BLE001 - the service must outlive any single bad cycle
                delay = backoff.failed(exc)
                if delay is None:
                    log.exception("poll cycle failed; retrying next tick")
                else:
                    wait_s = delay
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait_s)
            except TimeoutError:
                pass

    async def _wait_with_progress(self, tasks: list[asyncio.Task[Any]], what: str) -> None:
        total, started, last = len(tasks), time.monotonic(), time.monotonic()
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=self.progress_every_s)
            if pending and time.monotonic() - last >= self.progress_every_s:
                last = time.monotonic()
                log.info("%d/%d %s (%.0f s)", total - len(pending), total, what, last - started)
        for t in tasks:
            t.result()


def parse_pool(workers: int | None = None) -> ParsePool:
    """A process pool for feed parsing and page extraction: one worker per core but one (at least 1, at most 4)."""
    return ParsePool(workers)

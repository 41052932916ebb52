"""The pipeline stages as Dramatiq actors, each calling the same idempotent stage function `newsdigest run` calls.

    poll       poll_feed(feed_id, lease)      Runner.poll_feed on the feed the scheduler leased
    pages      fill_text(article_id, ...)     Runner.fill_one: fetch and extract one teaser-only article's page
    embed      embed_articles(article_ids)    Processor.prepare: topic scores and story features, stored (parallel)
    process    process()                      Processor.process under the PostgreSQL advisory lock "processing"
    summaries  summarize_story(story_id)      summarize_stories for one story (a queue of its own: GPU workers)
    digests    schedule_digests()             ChatRuntime.schedule_due: due digests into the outbox
    deliver    deliver_part(part, lease)      one outbox part through the shared send limiter to its chat

Messages are acknowledged after the actor returns (Dramatiq acks late on both brokers), so a worker killed
mid-task leaves its messages to another worker. Each task checks its key before acting: a poll whose lease is
gone (the feed was recorded, or leased again) and a part that is no longer pending under its claim are skipped,
so a redelivered message doubles nothing. Retries are for transient errors only (database or Redis unreachable).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from bot import metrics
from bot.clock import utcnow
from bot.errors import DeliveryError
from bot.models import FetchResult
from bot.net import FEED_ACCEPT, Fetcher, FetchLimits
from bot.pipeline.alerts import CHAT_PAUSED
from bot.pipeline.delivery import Limits, on_failure
from bot.pipeline.feed import PollPolicy
from bot.ports import ChatRef, OutgoingMessage
from bot.runner import PollReport, Runner
from bot.settings import FeedsFile, Settings
from bot.storage.articles import PendingArticle
from bot.storage.chat_store import ChatStore
from bot.storage.outage import is_database_down
from bot.storage.outbox import OutboxItem
from bot.storage.store import Store

if TYPE_CHECKING:
    import dramatiq

    from bot.chat.runtime import ChatRuntime
    from bot.distributed.limiter import SharedLimiter
    from bot.processing import Processor

log = logging.getLogger("newsdigest.tasks")

_T = TypeVar("_T")

QUEUES = ("poll", "pages", "embed", "process", "summaries", "digests", "deliver")
MAX_RETRIES = 5
FEED_LEASE_S = 300.0
OUTBOX_LEASE_S = 300.0
# A part that would wait longer than this for a send slot goes back to the outbox until then (the worker
# thread is not held, and its claim cannot run out while it waits).
MAX_SEND_WAIT_S = 5.0
# Articles per embed message: one embedding batch, small enough that the workers share a poll's articles.
EMBED_CHUNK = 32
# Placement waits this long for an article's features from the embed queue, then computes them itself.
AWAIT_PREPARED_S = 120.0


def is_transient(exc: BaseException) -> bool:
    """The errors a task is retried for: the database or Redis could not be reached. Everything else is data
    (recorded by the stage) or a bug (logged, not retried)."""
    if is_database_down(exc):
        return True
    import redis.exceptions

    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)


def retry_when(retries: int, exc: BaseException) -> bool:
    """Dramatiq's retry predicate: transient errors, at most MAX_RETRIES times."""
    return retries < MAX_RETRIES and is_transient(exc)


def same_instant(a: datetime | None, b: datetime) -> bool:
    """Whether a stored time is this lease (the database keeps microseconds)."""
    return a is not None and abs((a - b).total_seconds()) < 1e-3


class PoliteFetcher(Fetcher):
    """The service's Fetcher, with the per-host request rate shared by every worker (through Redis)."""

    def __init__(self, limits: FetchLimits, limiter: SharedLimiter) -> None:
        super().__init__(limits)
        self.limiter = limiter

    async def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
                  timeout_s: float | None = None, accept: str = FEED_ACCEPT) -> FetchResult:
        """Wait for the host's shared slot, then fetch as Fetcher.get does."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        await self.limiter.acquire_host(f"{(parts.hostname or '').lower()}:{parts.port or ''}")
        return await super().get(url, etag=etag, last_modified=last_modified, timeout_s=timeout_s,
                                 accept=accept)


def part_message(item: OutboxItem) -> dict[str, Any]:
    """An outbox part as a message argument (JSON)."""
    c = item.chat
    return {"id": item.id, "chat_db_id": item.chat_db_id, "subscription_id": item.subscription_id,
            "digest_key": item.digest_key, "part": item.part, "payload": item.payload, "attempts": item.attempts,
            "chat": {"platform": c.platform, "chat_id": c.chat_id, "thread_id": c.thread_id, "kind": c.kind,
                     "title": c.title}}


def part_from_message(d: dict[str, Any]) -> OutboxItem:
    """The inverse of part_message."""
    return OutboxItem(id=d["id"], chat_db_id=d["chat_db_id"], chat=ChatRef(**d["chat"]),
                      subscription_id=d["subscription_id"], digest_key=d["digest_key"], part=d["part"],
                      payload=d["payload"], attempts=d["attempts"])


class WorkerContext:
    """What the tasks of one worker process share: store, an event loop thread with the fetcher, the shared
    limiter and the chat sinks, and the processor (models loaded on first use)."""

    def __init__(self, settings: Settings, feeds_file: FeedsFile, store: Store, redis_url: str, *,
                 host_per_s: float, send_margin_s: float) -> None:
        self.settings = settings
        self.feeds_file = feeds_file
        self.store = store
        self.chats = ChatStore(store.engine)
        self.redis_url = redis_url
        self.host_per_s = host_per_s
        self.send_margin_s = send_margin_s
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="newsdigest-task-loop", daemon=True)
        self._thread.start()
        self._processor: Processor | None = None
        self._processor_lock = threading.Lock()
        # Held while this process runs Processor.process: a second process task here returns at once (the
        # running one takes every waiting article) instead of holding a worker thread on the lock; it leaves
        # `process_again` set, so that the running one goes round once more for what that task was sent for
        # (features stored after it stopped waiting).
        self.processing = threading.Lock()
        self.process_again = threading.Event()
        self._runtime: ChatRuntime | None = None
        self.actors: Actors | None = None
        self.sinks: dict[str, Any] = {}
        self.limits: dict[str, Limits] = {}
        self.limiter: SharedLimiter | None = None
        self.fetcher: PoliteFetcher | None = None
        self.runner: Runner | None = None

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the context's loop from a task thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def open(self) -> None:
        """Connect the limiter, the fetcher and the chat sinks (on the loop)."""
        self.run(self._open())

    async def _open(self) -> None:
        from bot.distributed.limiter import SharedLimiter

        self.limiter = SharedLimiter(self.redis_url, margin_s=self.send_margin_s, host_per_s=self.host_per_s)
        await self.limiter.ping()
        self.fetcher = PoliteFetcher(FetchLimits.from_settings(self.settings), self.limiter)
        await self.fetcher.__aenter__()
        self.runner = Runner(self.store, self.fetcher,
                             policy=PollPolicy(pause_after_failures=self.settings.pause_after_failures))
        for sink in delivery_sinks(self.settings, self.store, self.feeds_file):
            start = getattr(sink, "start", None)
            if start is not None:
                await start()
            self.sinks[sink.platform] = sink
            self.limits[sink.platform] = sink.limits

    def close(self) -> None:
        """Close connections and stop the loop."""
        async def _close() -> None:
            for sink in self.sinks.values():
                stop = getattr(sink, "stop", None)
                if stop is not None:
                    await stop()
            if self.fetcher is not None:
                await self.fetcher.aclose()
            if self.limiter is not None:
                await self.limiter.aclose()

        try:
            self.run(_close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)

    def processor(self) -> Processor:
        """The processor, built once (it loads the embedder); touched stories go to the summaries queue."""
        with self._processor_lock:
            if self._processor is None:
                from bot.processing import Processor

                proc = Processor.build(self.store, self.settings, self.feeds_file)
                proc.summarize_touched = self._queue_summaries
                proc.await_prepared_s = AWAIT_PREPARED_S  # features come from embed tasks, in parallel
                proc.others_place = True  # other workers take turns placing: their stories join the index
                self._processor = proc
            return self._processor

    def _queue_summaries(self, story_ids: Sequence[int]) -> int:
        assert self.actors is not None
        for sid in story_ids:
            self.actors.summarize_story.send(sid)
        return 0  # counted by the summary tasks when they write

    def runtime(self) -> ChatRuntime:
        """A ChatRuntime over this worker's sinks, used for its scheduling step only (its loops never run)."""
        if self._runtime is None:
            from bot.chat.runtime import ChatRuntime

            self._runtime = ChatRuntime(self.chats, self.feeds_file.digest, list(self.sinks.values()),
                                        owners=sorted(self.settings.admins), alerts=self.chats)
        return self._runtime


def delivery_sinks(settings: Settings, store: Store, feeds_file: FeedsFile) -> list[Any]:
    """The send-only sinks a worker delivers through: Telegram and Discord for the tokens set, else the console.

    Discord sends over its REST API only (bot/chat/discord_send.py): the worker logs in without a gateway
    connection; commands stay with the one process that holds the gateway session.
    """
    sinks: list[Any] = []
    if settings.telegram_bot_token:
        from bot.chat.telegram_chat import TelegramChat
        from bot.chat.wiring import build_command_service

        service = build_command_service(settings, store, feeds_file)
        sinks.append(TelegramChat(settings.telegram_bot_token, service, api_root=settings.telegram_api_base_url,
                                  receive=False))
    if settings.discord_bot_token:
        from bot.chat.discord_chat import owner_ids
        from bot.chat.discord_send import DiscordSender

        sinks.append(DiscordSender(settings.discord_bot_token, dm_users=owner_ids(settings.admins)))
    if sinks:
        return sinks
    from bot.chat.console import ConsoleSink

    return [ConsoleSink()]


def delivery_platforms(settings: Settings) -> list[str]:
    """The platforms whose parts the scheduler hands to workers (the ones delivery_sinks serves)."""
    platforms = [p for p, token in (("telegram", settings.telegram_bot_token),
                                    ("discord", settings.discord_bot_token)) if token]
    return platforms or ["console"]


@dataclass
class Actors:
    """The declared actors; `.send(...)` enqueues a message."""

    poll_feed: dramatiq.Actor[..., None]
    fill_text: dramatiq.Actor[..., None]
    embed_articles: dramatiq.Actor[..., None]
    process: dramatiq.Actor[..., None]
    summarize_story: dramatiq.Actor[..., None]
    schedule_digests: dramatiq.Actor[..., None]
    deliver_part: dramatiq.Actor[..., None]


def declare(broker: dramatiq.Broker, ctx: WorkerContext | None) -> Actors:
    """Declare the actors on `broker`; `ctx` is None where messages are only sent (the scheduler)."""
    import dramatiq

    def need() -> WorkerContext:
        if ctx is None:
            raise RuntimeError("this process only sends tasks")
        return ctx

    def poll_feed(feed_id: int, lease_until: str) -> None:
        c = need()
        assert c.runner is not None
        feed = c.store.get_feed(feed_id)
        if feed is None or not same_instant(feed.next_check_at, datetime.fromisoformat(lease_until)):
            log.debug("feed %s: lease gone (polled already or leased again); skipped", feed_id,
                      extra={"feed_id": feed_id})
            return
        report = PollReport()
        c.run(c.runner.poll_feed(feed, report))
        ids = sorted(report.new_ids)
        for i in range(0, len(ids), EMBED_CHUNK):  # those still waiting for their page are skipped there
            actors.embed_articles.send(ids[i:i + EMBED_CHUNK])

    def fill_text(article_id: int, url: str | None, feed_id: int | None, attempts: int) -> None:
        c = need()
        assert c.runner is not None
        item = PendingArticle(id=article_id, url=url, feed_id=feed_id, extract_attempts=attempts)
        c.run(c.runner.fill_one(item))
        actors.embed_articles.send([article_id])

    def embed_articles(article_ids: list[int]) -> None:
        # Keyed by the article ids: articles processed or prepared already are skipped, and a store of the same
        # features twice is harmless. Killed before the write: the message comes back (late ack); after it,
        # before "process" was sent: the scheduler's tick sends one.
        c = need()
        rows = c.store.articles_to_prepare(article_ids)
        if rows:
            c.store.save_prepared(c.processor().prepare_bytes(rows))
        actors.process.send()

    def process() -> None:
        c = need()
        c.process_again.set()
        while c.process_again.is_set():
            if not c.processing.acquire(blocking=False):
                return  # the running task sees process_again after it releases the lock
            try:
                c.process_again.clear()
                c.processor().process()
            finally:
                c.processing.release()

    def summarize_story(story_id: int) -> None:
        from bot.summaries import summarize_stories

        c = need()
        metrics.current().summaries.inc(summarize_stories(c.store, c.processor().summarizer, [story_id]))

    def schedule_digests() -> None:
        c = need()
        if c.runtime().schedule_due(utcnow()):
            log.info("digests queued")
        if c.runtime().schedule_alerts(utcnow()):  # owner alerts ride on the same scheduling step
            log.info("owner alerts queued")

    def deliver_part(part: dict[str, Any], claimed_until: str) -> None:
        c = need()
        c.run(_deliver(c, part_from_message(part), datetime.fromisoformat(claimed_until)))

    def actor(fn: Callable[..., None], queue: str, **options: Any) -> dramatiq.Actor[..., None]:
        return dramatiq.Actor(fn, broker=broker, actor_name=fn.__name__, queue_name=queue, priority=0,
                              options={"max_retries": MAX_RETRIES, "retry_when": retry_when, "min_backoff": 1000,
                                       "max_backoff": 60_000, **options})

    actors = Actors(
        poll_feed=actor(poll_feed, "poll"),
        fill_text=actor(fill_text, "pages"),
        embed_articles=actor(embed_articles, "embed"),
        # A first run can have thousands of articles waiting: more than Dramatiq's default 10 minutes.
        process=actor(process, "process", time_limit=6 * 3600 * 1000),
        summarize_story=actor(summarize_story, "summaries"),
        schedule_digests=actor(schedule_digests, "digests"),
        deliver_part=actor(deliver_part, "deliver"))
    if ctx is not None:
        ctx.actors = actors
    return actors


async def _deliver(c: WorkerContext, item: OutboxItem, claimed_until: datetime) -> None:
    """Send one claimed part within the shared limits; settle it as ChatRuntime's sender does."""
    assert c.limiter is not None
    platform = item.chat.platform
    sink, limits = c.sinks.get(platform), c.limits.get(platform)
    ids = {"chat": item.chat.key, "outbox_id": item.id}
    if sink is None or limits is None:
        log.warning("no sink for %s in this worker; part %s released", platform, item.id, extra=ids)
        await asyncio.to_thread(c.chats.release, [item.id])
        return
    if not await asyncio.to_thread(c.chats.claimed, item.id, claimed_until):
        log.debug("part %s sent or claimed again already; skipped", item.id, extra=ids)
        return
    wait = await c.limiter.acquire_send(platform, limits, item.chat.key, item.chat.is_group,
                                        max_wait_s=MAX_SEND_WAIT_S)
    if wait:
        await asyncio.to_thread(c.chats.retry_later, item.id, utcnow() + timedelta(seconds=wait), None,
                                count_attempt=False)
        return
    m = metrics.current()
    try:
        with metrics.timed(m.send_seconds.labels(platform)):
            ref = await sink.send(item.chat, OutgoingMessage.from_payload(item.payload))
    except DeliveryError as exc:
        await _failed(c, item, limits, exc)
        return
    except Exception as exc:  # noqa: BLE001 - an adapter bug is a failed try of this part, not a lost part
        log.exception("sink %s raised an unexpected error", platform, extra=ids)
        await _failed(c, item, limits, DeliveryError(f"{type(exc).__name__}: {exc}"))
        return
    m.outbox.labels(platform, "sent").inc()
    await asyncio.to_thread(c.chats.mark_sent, item.id, str(ref), utcnow())


async def _failed(c: WorkerContext, item: OutboxItem, limits: Limits, exc: DeliveryError) -> None:
    """ChatRuntime._failed, with the 429 blocks written to the shared limiter."""
    assert c.limiter is not None
    action = on_failure(exc, item.attempts + 1, limits, item.id)
    now, platform = utcnow(), item.chat.platform
    m, ids = metrics.current(), {"chat": item.chat.key, "outbox_id": item.id}
    if action.block_chat_s:
        await c.limiter.block(platform, action.block_chat_s, item.chat.key)
    if action.block_all_s:
        await c.limiter.block(platform, action.block_all_s)
    if action.action == "retry":
        m.outbox.labels(platform, "retried").inc()
        log.info("send to %s failed (%s); retry in %.1f s", item.chat.key, action.reason, action.delay_s, extra=ids)
        await asyncio.to_thread(c.chats.retry_later, item.id, now + timedelta(seconds=action.delay_s),
                                action.reason, count_attempt=action.counts)
    elif action.action == "pause":
        m.chats_paused.labels(platform).inc()
        log.warning("chat %s blocked the bot (%s); its subscription is paused", item.chat.key, action.reason,
                    extra=ids)
        await asyncio.to_thread(c.chats.pause, item.chat_db_id, f"blocked: {action.reason}", now)
        if not item.digest_key.startswith("alerts"):  # as ChatRuntime._failed: an owner alert for the pause
            where = item.chat.key + (f" ({item.chat.title})" if item.chat.title else "")
            try:
                await asyncio.to_thread(c.chats.record_alert, CHAT_PAUSED, where, action.reason, now)
            except Exception as record_exc:  # noqa: BLE001 - the pause is stored; an alert is not worth a retry
                log.warning("could not record the alert for %s (%s)", item.chat.key, record_exc, extra=ids)
    elif action.action == "migrate":
        m.outbox.labels(platform, "migrated").inc()
        assert action.migrate_to is not None
        await asyncio.to_thread(c.chats.migrate_chat, platform, item.chat.chat_id, action.migrate_to)
        await asyncio.to_thread(c.chats.retry_later, item.id, now, None, count_attempt=False)
    else:
        m.outbox.labels(platform, "failed").inc()
        log.warning("giving up on a part for %s: %s", item.chat.key, action.reason, extra=ids)
        await asyncio.to_thread(c.chats.mark_failed, item.id, action.reason, now)


__all__ = ["FEED_LEASE_S", "MAX_RETRIES", "OUTBOX_LEASE_S", "QUEUES", "Actors", "PoliteFetcher", "WorkerContext",
           "declare", "delivery_platforms", "delivery_sinks", "is_transient", "part_from_message", "part_message",
           "retry_when"]

"""`newsdigest worker` and `newsdigest scheduler`: the broker, the task metrics, the worker process and the one
scheduler (leader elected through a PostgreSQL advisory lock; a standby waits for the lock)."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot import metrics
from bot.clock import utcnow
from bot.distributed.config import ScaleConfig, load_scale_config
from bot.distributed.tasks import (
    FEED_LEASE_S,
    OUTBOX_LEASE_S,
    QUEUES,
    Actors,
    WorkerContext,
    declare,
    delivery_platforms,
    part_message,
)
from bot.errors import ConfigError
from bot.settings import Settings, load_feeds_file, load_settings
from bot.storage.chat_store import ChatStore
from bot.storage.outage import describe, is_database_down
from bot.storage.store import Store

log = logging.getLogger("newsdigest.scale")

_task_counter: Counter | None = None
# Per million broker commands (see make_broker).
REDIS_MAINTENANCE_CHANCE = 20_000


def task_counter() -> Counter:
    """newsdigest_tasks{actor, outcome}: tasks finished (ok, failed) in this process, in the service registry."""
    global _task_counter
    if _task_counter is None:
        _task_counter = Counter("newsdigest_tasks", "Scale-out tasks finished by actor and outcome (ok, failed)",
                                ["actor", "outcome"], registry=metrics.current().registry)
    return _task_counter


def make_broker(cfg: ScaleConfig, *, confirm: bool = False) -> Any:
    """The Dramatiq broker for NEWSDIGEST_BROKER_URL, with the middleware the tasks rely on (retries for
    transient errors, time limits, task metrics)."""
    import dramatiq
    from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

    class TaskMetrics(dramatiq.Middleware):
        """Counts finished tasks into newsdigest_tasks."""

        def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                                  exception: BaseException | None = None) -> None:
            task_counter().labels(message.actor_name, "failed" if exception else "ok").inc()

    middleware = [AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(),
                  Retries(max_retries=5), TaskMetrics()]
    if cfg.broker_kind == "redis":
        from dramatiq.brokers.redis import RedisBroker

        # A dead worker's messages are requeued by "maintenance", which the Redis broker runs on a random share
        # of its commands (0.1 % by default: with a few idle workers, a minute or more after the heartbeat
        # timeout); 2 % brings them back within seconds of it, for one cheap sorted-set scan each time.
        return RedisBroker(url=cfg.broker_url, middleware=middleware,  # type: ignore[no-untyped-call]
                           heartbeat_timeout=int(cfg.redis_heartbeat_s * 1000),  # untyped in dramatiq 2.2
                           maintenance_chance=REDIS_MAINTENANCE_CHANCE)
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    # Publisher confirms where messages are made (the scheduler): a send that returns is on the broker.
    return RabbitmqBroker(url=cfg.broker_url, middleware=middleware, confirm_delivery=confirm)


def broker_check(broker: Any) -> None:
    """Raise when the broker cannot be reached (readiness)."""
    client = getattr(broker, "client", None)
    if client is not None:
        client.ping()
        return
    import pika  # type: ignore[import-untyped]  # pika ships no types

    pika.BlockingConnection(broker.parameters).close()


class QueueDepth(Collector):
    """newsdigest_queue_depth{queue}: messages waiting in each task queue, read from the broker on scrape."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._lock = threading.Lock()

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The family without samples (no broker call at registration)."""
        return [GaugeMetricFamily("newsdigest_queue_depth", "Messages waiting in a task queue", labels=["queue"])]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Ask the broker."""
        g = GaugeMetricFamily("newsdigest_queue_depth", "Messages waiting in a task queue", labels=["queue"])
        with self._lock:
            for q in QUEUES:
                try:
                    g.add_metric([q], float(queue_depth(self.broker, q)))
                except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the broker
                    log.debug("queue depth of %s: %s", q, exc)
        return [g]


def queue_depth(broker: Any, queue: str) -> int:
    """Messages waiting (not yet delivered to a worker) in one queue."""
    client = getattr(broker, "client", None)
    if client is not None:
        return int(client.llen(f"{broker.namespace}:{queue}"))
    return int(broker.get_queue_message_counts(queue)[0])


class _Observed:
    """/metrics, /healthz, /readyz on its own loop thread when NEWSDIGEST_METRICS_PORT is set."""

    def __init__(self, settings: Settings, store: Store, broker: Any, *, queue_depth: bool) -> None:
        self.server: Any = None
        if settings.metrics_port is None:
            return
        from bot.observability import ObservabilityServer

        registry = metrics.current().registry
        if queue_depth:
            registry.register(QueueDepth(broker))
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="newsdigest-metrics", daemon=True).start()
        self.server = ObservabilityServer(metrics.current(), host=settings.metrics_host, port=settings.metrics_port,
                                          checks={"database": store.ping, "broker": lambda: broker_check(broker)})
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result()
        except OSError as exc:
            raise ConfigError("NEWSDIGEST_METRICS_PORT", "NEWSDIGEST_METRICS_PORT",
                              f"cannot listen on {settings.metrics_host}:{settings.metrics_port}: "
                              f"{exc.strerror or exc}") from exc

    def stop(self) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run_worker(queues: Sequence[str] | None = None, threads: int = 8) -> int:
    """`newsdigest worker`: consume the task queues until SIGTERM/SIGINT."""
    cfg = load_scale_config()
    unknown = sorted(set(queues or ()) - set(QUEUES))
    if unknown:
        raise ConfigError("--queues", "--queues", f"unknown queue(s) {', '.join(unknown)} (known: {', '.join(QUEUES)})")
    settings = load_settings()
    feeds_file = load_feeds_file(settings.feeds_file)
    import dramatiq

    broker = make_broker(cfg)
    store = Store.open(settings.database_url)
    ctx = WorkerContext(settings, feeds_file, store, cfg.redis_url, host_per_s=cfg.host_requests_per_s,
                        send_margin_s=cfg.send_margin_s)
    observed: _Observed | None = None
    worker = None
    try:
        ctx.open()
        declare(broker, ctx)
        observed = _Observed(settings, store, broker, queue_depth=False)
        stop = _stop_event()
        worker = dramatiq.Worker(broker, queues=set(queues or QUEUES), worker_threads=threads)
        worker.start()
        log.info("worker started: queues %s, %d threads, broker %s", ",".join(sorted(queues or QUEUES)), threads,
                 cfg.broker_kind)
        stop.wait()
        log.info("worker stopping")
    finally:
        if worker is not None:
            worker.stop(timeout=30_000)
        broker.close()
        if observed is not None:
            observed.stop()
        ctx.close()
        store.close()
    log.info("worker stopped cleanly")
    return 0


class Scheduler:
    """The one scheduler: each tick it leases due feeds and turns them into poll tasks, and queues page fetches,
    processing, owed summaries, digest scheduling and due outbox parts. Every step is keyed (feed leases, part
    claims, conditional digest updates), so a second leader for a moment (a lost lock not yet noticed) doubles
    messages, never work."""

    def __init__(self, store: Store, actors: Actors, cfg: ScaleConfig, platforms: Sequence[str]) -> None:
        self.store = store
        self.chats = ChatStore(store.engine)
        self.actors = actors
        self.cfg = cfg
        self.platforms = list(platforms)
        self._queued_pages: dict[int, float] = {}
        self._queued_summaries: dict[int, float] = {}
        self.ticks = 0

    def tick(self) -> dict[str, int]:
        """One round of scheduling; returns what it queued."""
        now = utcnow()
        counts = {"feeds": 0, "pages": 0, "summaries": 0, "parts": 0}
        lease_until = now + timedelta(seconds=FEED_LEASE_S)
        for feed in self.store.claim_due_feeds(now, lease_s=FEED_LEASE_S, limit=5000):
            self.actors.poll_feed.send(feed.id, lease_until.isoformat())
            counts["feeds"] += 1
        mono = time.monotonic()
        for d in (self._queued_pages, self._queued_summaries):
            for k in [k for k, t in d.items() if mono - t > FEED_LEASE_S]:
                del d[k]
        for a in self.store.articles_pending_text(2000):
            if a.id not in self._queued_pages:
                self._queued_pages[a.id] = mono
                self.actors.fill_text.send(a.id, a.url, a.feed_id, a.extract_attempts)
                counts["pages"] += 1
        # At most one waiting "process" and one "schedule digests" message: with no worker up they do not pile up.
        if self._idle("process"):
            self.actors.process.send()
        if self.ticks % 6 == 0:
            for sid in self.store.stories_without_summary(now - timedelta(days=2)):
                if sid not in self._queued_summaries:
                    self._queued_summaries[sid] = mono
                    self.actors.summarize_story.send(sid)
                    counts["summaries"] += 1
        if self._idle("digests"):
            self.actors.schedule_digests.send()
        if self.platforms:
            parts = self.chats.claim_outbox(now, lease_s=OUTBOX_LEASE_S, limit=2000, platforms=self.platforms)
            until = (now + timedelta(seconds=OUTBOX_LEASE_S)).isoformat()
            for item in parts:
                self.actors.deliver_part.send(part_message(item), until)
            counts["parts"] = len(parts)
        self.ticks += 1
        return counts

    def _idle(self, queue: str) -> bool:
        try:
            return queue_depth(self.actors.process.broker, queue) == 0
        except Exception as exc:  # noqa: BLE001 - unknown depth: send (a spare message is harmless)
            log.debug("queue depth of %s: %s", queue, exc)
            return True

    def lead(self, stop: threading.Event) -> None:
        """Tick until `stop` (or until the database fails, which gives up the lock: the caller tries again)."""
        log.info("scheduler: leading")
        while not stop.is_set():
            started = time.monotonic()
            counts = self.tick()
            if any(counts.values()):
                log.info("scheduler tick: %s", counts)
            stop.wait(max(0.0, self.cfg.scheduler_tick_s - (time.monotonic() - started)))


def run_scheduler() -> int:
    """`newsdigest scheduler`: become the leader (or wait as a standby) and schedule until SIGTERM/SIGINT."""
    cfg = load_scale_config()
    settings = load_settings()
    feeds_file = load_feeds_file(settings.feeds_file)
    broker = make_broker(cfg, confirm=True)
    store = Store.open(settings.database_url)
    observed: _Observed | None = None
    try:
        actors = declare(broker, None)
        observed = _Observed(settings, store, broker, queue_depth=True)
        stop = _stop_event()
        scheduler = Scheduler(store, actors, cfg, delivery_platforms(settings))
        standby_logged = False
        while not stop.is_set():
            try:
                with store.single_writer_lock("scheduler") as leader:
                    if leader:
                        standby_logged = False
                        if feeds_file.path is not None:
                            store.sync_file_feeds(feeds_file.feeds)
                        scheduler.lead(stop)
                        continue
            except Exception as exc:  # noqa: BLE001 - the scheduler outlives outages; the lock goes with them
                if is_database_down(exc):
                    log.warning("scheduler: database unavailable (%s); trying again", describe(exc))
                else:
                    log.exception("scheduler: tick failed; trying again")
            if not standby_logged:
                log.info("scheduler: another scheduler leads; standing by")
                standby_logged = True
            stop.wait(cfg.scheduler_tick_s)
    finally:
        broker.close()
        if observed is not None:
            observed.stop()
        store.close()
    log.info("scheduler stopped cleanly")
    return 0


__all__ = ["QueueDepth", "Scheduler", "broker_check", "make_broker", "queue_depth", "run_scheduler", "run_worker",
           "task_counter"]

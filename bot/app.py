"""Composition root: the one place that wires settings, storage, fetcher, pipeline, summarizer and chat adapters."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.errors import StorageError
from bot.memory import release_free_memory
from bot.net import Fetcher, FetchLimits
from bot.pipeline.feed import PollPolicy
from bot.runner import ArticleProcessor, ParsePool, PollReport, Runner, parse_pool
from bot.settings import FeedsFile, Settings, load_feeds_file, load_settings
from bot.storage.outage import Backoff
from bot.storage.store import Store

if TYPE_CHECKING:  # the processor loads models: imported on first use only
    from bot.processing import Processor
    from summarizer import Summarizer

log = logging.getLogger("newsdigest")
DB_WAIT_BASE_S = 1.0
DB_WAIT_MAX_S = 30.0


def open_store(url: str, *, wait: bool, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> Store:
    """Store.open; with `wait`, retried while a database server is unreachable (bounded, jittered backoff, one
    log line per attempt), never for other errors (a bad URL, a failed migration) nor for SQLite (a local file:
    no server to wait for)."""
    backoff = Backoff("start", base_s=DB_WAIT_BASE_S, max_s=DB_WAIT_MAX_S, logger=log, clock=clock)
    wait = wait and not url.startswith("sqlite")
    while True:
        try:
            store = Store.open(url)
        except StorageError as exc:
            delay = backoff.failed(exc) if wait else None
            if delay is None:
                raise
            sleep(delay)
            continue
        backoff.succeeded()
        return store


class ModelsLoading:
    """The article processor, built in a thread once `start` is called, so that `newsdigest run` polls its feeds
    while the models load (~2 s on 2 cores); `process` and `summarizer` start the build if nobody has, wait for
    it, and raise its error."""

    def __init__(self, build: Callable[[], Processor]) -> None:
        self._future: concurrent.futures.Future[Processor] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._build, args=(build,), name="newsdigest-models", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start building in the background (again: nothing)."""
        with self._lock:
            if self._thread.ident is None:
                self._thread.start()

    def _build(self, build: Callable[[], Processor]) -> None:
        try:
            self._future.set_result(build())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the processor
            self._future.set_exception(exc)

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[Processor]], object]) -> None:
        """Call `fn(future)` once the build has finished or failed (at once if it has)."""
        self._future.add_done_callback(fn)

    def get(self) -> Processor:
        """The processor, once built."""
        self.start()
        return self._future.result()

    def process(self) -> int:
        """Process the waiting articles (ArticleProcessor)."""
        return self.get().process()

    def summarizer(self) -> Summarizer:
        """The processor's summarizer (for `/summary <link>`)."""
        return self.get().summarizer


class App:
    """Everything a command needs, built from validated settings."""

    def __init__(self, settings: Settings, feeds_file: FeedsFile, store: Store) -> None:
        self.settings = settings
        self.feeds_file = feeds_file
        self.store = store
        self._processor: Processor | None = None
        self._parse_pool: ParsePool | None = None

    @classmethod
    def from_environment(cls, *, wait_for_database: bool = False,
                         sleep: Callable[[float], None] = time.sleep) -> App:
        """Validate the environment and feeds file first, then open (and migrate) the database. With
        `wait_for_database` (the service), an unreachable database is waited for: a service may start before its
        database (a reboot, docker compose); a command fails at once with StorageError."""
        settings = load_settings()
        feeds_file = load_feeds_file(settings.feeds_file)
        store = open_store(settings.database_url, wait=wait_for_database, sleep=sleep)
        if feeds_file.path is not None:
            counts = store.sync_file_feeds(feeds_file.feeds)
            if counts["added"] or counts["removed"]:
                log.info("feeds file %s: %d added, %d removed", feeds_file.path, counts["added"], counts["removed"])
        return cls(settings, feeds_file, store)

    def close(self) -> None:
        """Release the parse pool and the database."""
        if self._parse_pool is not None:
            self._parse_pool.shutdown()
            self._parse_pool = None
        self.store.close()

    def fetch_limits(self) -> FetchLimits:
        """HTTP limits from the settings."""
        return FetchLimits.from_settings(self.settings)

    def processor(self) -> Processor:
        """The article processor (topic, story, summary), built on first use because it loads models."""
        if self._processor is None:
            from bot.processing import Processor

            self._processor = Processor.build(self.store, self.settings, self.feeds_file)
        return self._processor

    def runner(self, fetcher: Fetcher, *, process: bool = True, processor: ArticleProcessor | None = None) -> Runner:
        """A pipeline runner over this app's store (`processor`: instead of this app's, e.g. one still loading)."""
        if self._parse_pool is None and self.settings.parse_workers != 0:
            self._parse_pool = parse_pool(self.settings.parse_workers)
        if process and processor is None:
            processor = self.processor()
        return Runner(self.store, fetcher, policy=PollPolicy(pause_after_failures=self.settings.pause_after_failures),
                      processor=processor if process else None, parse_pool=self._parse_pool)

    async def poll_once(self, *, force: bool = False, process: bool = True) -> PollReport:
        """One poll cycle (the `poll --once` command): every waiting article page is fetched before processing,
        so one run shows the whole result (the service fetches a batch a cycle)."""
        async with Fetcher(self.fetch_limits()) as fetcher:
            return await self.runner(fetcher, process=process).cycle(force=force, all_pages=True)

    def print_digest(self, since: timedelta, *, as_json: bool) -> int:
        """Print the digest `/summary` would send now."""
        from bot.chat.digest_cli import print_digest

        return print_digest(self.store, self.feeds_file.digest, since, as_json=as_json)

    def run_service(self) -> int:
        """`newsdigest run`: poller, processor, scheduler and chat adapters in one process until a signal."""
        return asyncio.run(self._serve_observed())

    async def _serve_observed(self) -> int:
        """The service with /metrics, /healthz and /readyz beside it when NEWSDIGEST_METRICS_PORT is set."""
        if self.settings.metrics_port is None:
            return await self._serve()
        from bot import metrics
        from bot.errors import ConfigError
        from bot.observability import ObservabilityServer
        from bot.storage.chat_store import ChatStore

        host, port = self.settings.metrics_host, self.settings.metrics_port
        server = ObservabilityServer(metrics.current(), host=host, port=port, checks={"database": self.store.ping},
                                     collector=metrics.DatabaseCollector(self.store, ChatStore(self.store.engine)))
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError("NEWSDIGEST_METRICS_PORT", "NEWSDIGEST_METRICS_PORT",
                              f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        try:
            return await self._serve()
        finally:
            await server.stop()

    async def _serve(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        from bot.chat import wiring
        from bot.chat.console import CONSOLE_CHAT
        from bot.summaries import LinkSummarizer

        models = ModelsLoading(self.processor)  # the first poll need not wait for the models
        failed: list[BaseException] = []

        def models_done(future: concurrent.futures.Future[Processor]) -> None:
            exc = future.exception()
            if exc is not None:  # a bad topic head, say: the service stops with that error, as it did at start
                failed.append(exc)
                loop.call_soon_threadsafe(stop.set)

        models.add_done_callback(models_done)
        async with Fetcher(self.fetch_limits()) as fetcher:
            runner = self.runner(fetcher, processor=models)
            # Looked up on the module at call time: tests/fakes/scaled_service.py wraps it.
            chat = wiring.build_chat_runtime(
                self.settings, self.store, self.feeds_file,
                summarize=LinkSummarizer(models.summarizer, self.fetch_limits(), read_page=runner.read_page))

            def after_cycle(report: PollReport) -> None:
                release_free_memory()  # a cycle's parse and embedding buffers, freed, back to the system
                # On the terminal there is no schedule to wait for: show new stories as soon as they are in.
                if report.new_articles and CONSOLE_CHAT.platform in chat.sinks:
                    chat.digest_now(CONSOLE_CHAT)

            # The first poll runs while the chat adapters start (a Discord login and its guilds take seconds);
            # an adapter that cannot start stops the poller again and the service exits with its error.
            # The models load once the first poll's requests are out: their imports (numpy, scipy, onnxruntime)
            # would otherwise hold the interpreter while the poller starts, and put the first poll ~1 s later.
            poller = asyncio.create_task(runner.run_forever(stop, on_cycle=after_cycle, on_polling=models.start),
                                         name="poller")
            try:
                await chat.start()
            except BaseException:
                stop.set()
                await asyncio.gather(poller, return_exceptions=True)
                raise
            try:
                await poller
            finally:
                await chat.stop()
        if failed:
            raise failed[0]
        log.info("stopped cleanly")
        return 0

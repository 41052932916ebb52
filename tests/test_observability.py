"""/metrics, /healthz and /readyz scraped over HTTP while the stages run: the counters move as the run does,
the database gauges follow the store, and readiness fails while the database is unreachable."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from bot import metrics
from bot.clock import utcnow
from bot.errors import ConfigError
from bot.logfmt import JsonFormatter
from bot.metrics import DatabaseCollector, Metrics
from bot.models import FeedSpec
from bot.net import Fetcher, FetchLimits
from bot.observability import ObservabilityServer
from bot.pipeline.digest import next_due
from bot.pipeline.feed import PollPolicy
from bot.runner import Runner
from bot.settings import DigestDefaults, load_settings
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from bot.storage.tables import subscriptions
from tests.test_processing import FIRST, SECOND, make_processor, processor_parts, rss  # noqa: F401 - a fixture

LIMITS = FetchLimits(timeout_s=15.0, max_bytes=2_000_000, allow_private=True, per_host=16)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def fresh_metrics() -> Iterator[Metrics]:
    """A fresh registry for this test, the previous one put back after."""
    m = Metrics()
    previous = metrics.install(m)
    yield m
    metrics.install(previous)


async def scrape(client: httpx.AsyncClient, server: ObservabilityServer) -> Samples:
    """Every sample on /metrics, keyed by name and sorted labels."""
    r = await client.get(f"http://{server.host}:{server.port}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def val(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when absent (a labelled counter appears at its first increment)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_move_as_a_run_does(sqlite_store: Store, feed_server, processor_parts,  # noqa: ANN001, F811
                                           fresh_metrics: Metrics) -> None:
    store = sqlite_store
    feed_server.files["/a.xml"] = rss([("Breaking: Russia Warns NATO – No Troops in Ukraine Allowed!",
                                        "https://a.example/lavrov", FIRST)])
    feed_server.files["/b.xml"] = rss([("JUST IN – Russia will not tolerate any NATO troops in Ukraine — Lavrov",
                                        "https://b.example/lavrov-nato", SECOND)])
    # Named outlets: two items of one outlet never vouch for each other's story.
    for path, name in (("/a.xml", "Outlet A"), ("/b.xml", "Outlet B"), ("/status/500", "Outlet C")):
        store.add_feed(FeedSpec(url=feed_server.url(path), name=name, interval_s=600), "cli")
    # Holds the first cycle open (it times out) while the others are done: the scrape in between sees them.
    slow, _ = store.add_feed(FeedSpec(url=feed_server.url("/slow?s=8"), interval_s=600, timeout_s=4.0), "cli")
    chats = ChatStore(store.engine)
    server = ObservabilityServer(fresh_metrics, port=0, checks={"database": store.ping},
                                 collector=DatabaseCollector(store, chats))
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client, Fetcher(LIMITS) as fetcher:
            health = await client.get(f"http://127.0.0.1:{server.port}/healthz")
            ready = await client.get(f"http://127.0.0.1:{server.port}/readyz")
            assert health.status_code == 200 and ready.status_code == 200
            assert ready.json() == {"status": "ready", "checks": {"database": "ok"}}
            before = await scrape(client, server)
            assert val(before, "newsdigest_database_up") == 1
            assert val(before, "newsdigest_feeds", state="active") == 4
            assert val(before, "newsdigest_feed_polls_total", outcome="fetched") == 0
            assert val(before, "newsdigest_outbox", status="pending") == 0

            runner = Runner(store, fetcher, policy=PollPolicy(pause_after_failures=2),
                            processor=make_processor(store, processor_parts))
            cycle = asyncio.create_task(runner.cycle(force=True))
            during: Samples = {}
            while not cycle.done():
                during = await scrape(client, server)
                if val(during, "newsdigest_feed_polls_total", outcome="fetched") == 2:
                    break
                await asyncio.sleep(0.05)
            assert not cycle.done(), "the slow feed holds the cycle open"
            assert val(during, "newsdigest_feed_polls_total", outcome="fetched") == 2
            assert val(during, "newsdigest_feed_polls_total", outcome="failed") == 1  # the 500
            assert val(during, "newsdigest_articles_total") == 2
            assert val(during, "newsdigest_articles_processed_total") == 0, "processing waits for the poll"
            report = await cycle

            after = await scrape(client, server)
            assert report.fetched == 2 and len(report.failed) == 2 and report.new_articles == 2
            assert val(after, "newsdigest_feed_polls_total", outcome="failed") == 2  # the 500 and the timeout
            assert val(after, "newsdigest_fetch_seconds_count", kind="feed") == 4
            # The slow feed timed out at 4 s: its fetch is in the 5 s bucket, not below.
            assert val(after, "newsdigest_fetch_seconds_bucket", kind="feed", le="2.5") == 3
            assert val(after, "newsdigest_fetch_seconds_bucket", kind="feed", le="5.0") == 4
            assert val(after, "newsdigest_articles_processed_total") == 2
            assert val(after, "newsdigest_stories_total", event="created") == 1
            assert val(after, "newsdigest_stories_total", event="updated") == 1, "the second outlet joined it"
            assert val(after, "newsdigest_summaries_total") >= 1
            assert val(after, "newsdigest_processing_seconds_count") == 1
            assert val(after, "newsdigest_poll_cycle_seconds_count") == 1
            assert val(after, "newsdigest_feeds", state="failing") == 2
            assert val(after, "newsdigest_feeds", state="active") == 2

            # Second cycle without the slow feed: the unchanged feeds answer 304, the 500 pauses its feed.
            store.remove_feed(slow.id)
            report = await runner.cycle(force=True)
            assert report.not_modified == 2
            second = await scrape(client, server)
            assert val(second, "newsdigest_feed_polls_total", outcome="not_modified") == 2
            assert val(second, "newsdigest_feed_polls_total", outcome="fetched") == 2
            assert val(second, "newsdigest_feed_polls_total", outcome="failed") == 3
            assert val(second, "newsdigest_feeds_paused_total") == 1
            assert val(second, "newsdigest_feeds", state="paused") == 1
            assert val(second, "newsdigest_articles_total") == 2, "nothing new"
            assert val(second, "newsdigest_poll_cycle_seconds_count") == 2
    finally:
        await server.stop()
    # What the stages counted is what the registry holds (the object the tests and the bench read).
    assert fresh_metrics.value("newsdigest_feed_polls_total", outcome="not_modified") == 2


async def test_readyz_fails_while_the_database_is_unreachable(tmp_path, fresh_metrics: Metrics) -> None:  # noqa: ANN001
    gone = Store.open(f"sqlite:///{tmp_path / 'db' / 'nd.db'}", migrate=False)
    shutil.rmtree(tmp_path / "db")  # the file's folder is gone: no connection can open it
    server = ObservabilityServer(fresh_metrics, port=0, checks={"database": gone.ping},
                                 collector=DatabaseCollector(gone, ChatStore(gone.engine)))
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            ready = await client.get(f"http://127.0.0.1:{server.port}/readyz")
            assert ready.status_code == 503, ready.text
            body = ready.json()
            assert body["status"] == "not ready" and body["checks"]["database"].startswith("unavailable:")
            assert (await client.get(f"http://127.0.0.1:{server.port}/healthz")).status_code == 200
            samples = await scrape(client, server)
            assert val(samples, "newsdigest_database_up") == 0
            assert not any(name == "newsdigest_feeds" for name, _ in samples), "no stale state gauges"
    finally:
        await server.stop()
        gone.close()


@pytest.mark.postgres
async def test_readyz_follows_a_postgresql_outage(fresh_metrics: Metrics) -> None:
    from tests.conftest import PG_SKIP, PG_URL

    if not PG_URL:
        pytest.skip(PG_SKIP)
    from tests.test_fault_pg_proxy import ProxiedDatabase

    db = ProxiedDatabase(PG_URL)
    server = ObservabilityServer(fresh_metrics, port=0, checks={"database": db.store.ping},
                                 collector=DatabaseCollector(db.store, ChatStore(db.store.engine)),
                                 check_timeout_s=3.0)
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            url = f"http://127.0.0.1:{server.port}/readyz"
            assert (await client.get(url)).status_code == 200
            db.proxy.cut("refuse")
            assert (await client.get(url)).status_code == 503
            assert val(await scrape(client, server), "newsdigest_database_up") == 0
            db.proxy.restore()
            for _ in range(50):  # the pool's dead connections are replaced on the next checkout
                if (await client.get(url)).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await client.get(url)).status_code == 200
            assert val(await scrape(client, server), "newsdigest_database_up") == 1
    finally:
        await server.stop()
        db.close()


async def test_delivery_counts_sends_and_the_outbox_gauges(sqlite_store: Store, fresh_metrics: Metrics) -> None:
    from bot.chat.console import CONSOLE_CHAT, ConsoleSink
    from bot.chat.runtime import ChatRuntime, RuntimeConfig
    from tests.fakes.stories import seed

    chats = ChatStore(sqlite_store.engine)
    now = utcnow()
    seed(sqlite_store, now, 3)
    chats.subscribe(CONSOLE_CHAT, DigestDefaults(), now - timedelta(days=1), next_due=next_due)
    with sqlite_store.engine.begin() as conn:
        conn.execute(update(subscriptions).values(next_due_at=now))
    out = io.StringIO()
    runtime = ChatRuntime(chats, DigestDefaults(), [ConsoleSink(out)],
                          config=RuntimeConfig(scheduler_tick_s=0.05, claim_interval_s=0.02))
    server = ObservabilityServer(fresh_metrics, port=0, collector=DatabaseCollector(sqlite_store, chats))
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            assert val(await scrape(client, server), "newsdigest_subscriptions", state="active") == 1
            await runtime.start()
            try:
                for _ in range(250):
                    if "News digest" in out.getvalue():
                        break
                    await asyncio.sleep(0.02)
                await runtime.drain(5)
            finally:
                await runtime.stop()
            samples = await scrape(client, server)
    finally:
        await server.stop()
    sent = chats.outbox_counts().get("sent", 0)
    assert sent >= 1
    assert val(samples, "newsdigest_digests_total", platform="console") == 1
    assert val(samples, "newsdigest_outbox_parts_total", platform="console", outcome="sent") == sent
    assert val(samples, "newsdigest_send_seconds_count", platform="console") == sent
    assert val(samples, "newsdigest_outbox", status="sent") == sent
    assert val(samples, "newsdigest_outbox", status="pending") == 0


async def test_json_log_lines_carry_the_feed_id(sqlite_store: Store, feed_server, fresh_metrics: Metrics) -> None:  # noqa: ANN001
    row, _ = sqlite_store.add_feed(FeedSpec(url=feed_server.url("/status/500"), interval_s=600), "cli")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("newsdigest")
    logger.addHandler(handler)
    try:
        async with Fetcher(LIMITS) as fetcher:
            await Runner(sqlite_store, fetcher).poll_once(force=True)
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    (failure,) = [line for line in lines if "HTTP 500" in line["message"]]
    assert failure["feed_id"] == row.id and failure["feed_url"] == row.url
    assert failure["level"] == "WARNING" and failure["logger"] == "newsdigest.runner"
    assert failure["time"].endswith("Z")


def test_json_formatter_keeps_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("newsdigest.x", logging.ERROR, __file__, 1, "failed %s", ("here",),
                                   exc_info=__import__("sys").exc_info())
    record.story_id = 7
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed here" and line["story_id"] == 7
    assert "ValueError: boom" in line["exception"] and "article_id" not in line


@pytest.mark.parametrize(("env", "problem"), [
    ({"NEWSDIGEST_METRICS_PORT": "http"}, "TCP port number"),
    ({"NEWSDIGEST_METRICS_PORT": "70000"}, "from 1 to 65535"),
    ({"NEWSDIGEST_METRICS_PORT": "0"}, "from 1 to 65535"),
    ({"NEWSDIGEST_LOG_FORMAT": "xml"}, "text or json"),
])
def test_bad_observability_settings_are_config_errors(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(env)


def test_observability_settings() -> None:
    s = load_settings({})
    assert (s.metrics_port, s.metrics_host, s.log_format) == (None, "127.0.0.1", "text")
    s = load_settings({"NEWSDIGEST_METRICS_PORT": " 9464 ", "NEWSDIGEST_METRICS_HOST": "0.0.0.0",
                       "NEWSDIGEST_LOG_FORMAT": "JSON"})
    assert (s.metrics_port, s.metrics_host, s.log_format) == (9464, "0.0.0.0", "json")


def test_dashboard_queries_only_metrics_the_service_exports(sqlite_store: Store, fresh_metrics: Metrics) -> None:
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parent.parent / "deploy" / "grafana" / "newsdigest.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for e in exprs for name in re.findall(r"\bnewsdigest_\w+", e)}
    fresh_metrics.registry.register(DatabaseCollector(sqlite_store, ChatStore(sqlite_store.engine)))
    for m in (fresh_metrics.outbox, fresh_metrics.digests, fresh_metrics.send_seconds, fresh_metrics.chats_paused,
              fresh_metrics.feed_polls, fresh_metrics.article_pages, fresh_metrics.stories,
              fresh_metrics.fetch_seconds):
        m.labels(*(["x"] * len(m._labelnames)))  # a labelled metric exports samples once a child exists
    exported = {s.name for fam in fresh_metrics.registry.collect() for s in fam.samples}
    assert used - exported == set(), "the dashboard queries metrics nobody exports"
    assert len(used) >= 15


def test_the_stages_count_without_loading_the_http_server() -> None:
    """bot.metrics is imported by the runner, processing and the chat runtime: aiohttp (the endpoints) and the
    database stay out of it, and the runner loads no aiohttp; only `run` with a metrics port does."""
    import subprocess
    import sys

    def loaded(module: str) -> set[str]:
        code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        return set(out.stdout.split())

    assert loaded("bot.metrics") & {"aiohttp", "sqlalchemy", "httpx"} == set()
    assert "aiohttp" not in loaded("bot.runner")

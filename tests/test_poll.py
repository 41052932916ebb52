"""Polling end to end over real sockets: real feeds and misbehaving endpoints served from 127.0.0.1."""

from __future__ import annotations

import html
from datetime import timedelta
from pathlib import Path

import pytest

from bot.clock import utcnow
from bot.models import FeedSpec
from bot.net import Fetcher, FetchLimits
from bot.pipeline.entry import parse_feed
from bot.pipeline.feed import PollPolicy
from bot.runner import Runner
from bot.storage.store import Store
from tests.fakes.store_queries import count_articles

DATA = Path(__file__).parent / "data"
GOOD = ["bbc_2020-04-27T2107Z.xml", "nytimes_2020-04-27T2107Z.xml", "aljazeera_youtube_2020-04-27T2107Z.atom",
        "dw_chinese_2015_rdf.xml", "uol_wrong_encoding.rss", "nzherald_2020-04-28T0034Z_bozo.xml",
        "cp1251_russian.xml"]
BAD = {"/slow?s=8": "timed out", "/status/500": "HTTP 500", "/status/404": "HTTP 404",
       "/status/429?retry_after=120": "HTTP 429", "/huge": "larger than", "/loop/0": "redirects",
       "/feeds/latimes_2021-09-20T0028Z_403.html": "not a usable feed"}
LIMITS = FetchLimits(timeout_s=15.0, max_bytes=1_000_000, allow_private=True, per_host=16)


def expected_entries(name: str) -> int:
    return len(parse_feed((DATA / "feeds" / name).read_bytes(), url="http://x/" + name).entries)


def add_feeds(store: Store, server) -> dict[str, int]:  # noqa: ANN001
    ids = {}
    for path in [f"/feeds/{n}" for n in GOOD] + list(BAD):
        # Only the slow feed gets a short timeout, so a busy test machine cannot time out the others.
        timeout = 4.0 if path.startswith("/slow") else None
        row, _ = store.add_feed(FeedSpec(url=server.url(path), interval_s=600, timeout_s=timeout), "cli")
        ids[path] = row.id
    return ids


class RecordingStore(Store):
    """Records the order in which feed outcomes are stored."""

    order: list[int]

    def record_feed_success(self, feed_id: int, **kw) -> None:  # noqa: ANN003
        self.order.append(feed_id)
        super().record_feed_success(feed_id, **kw)

    def record_feed_failure(self, feed_id: int, **kw) -> None:  # noqa: ANN003
        self.order.append(feed_id)
        super().record_feed_failure(feed_id, **kw)


async def test_poll_cycle_counts_failures_and_304s(store: Store, feed_server) -> None:  # noqa: ANN001
    store.__class__ = RecordingStore
    store.order = []
    ids = add_feeds(store, feed_server)
    async with Fetcher(LIMITS) as fetcher:
        runner = Runner(store, fetcher, policy=PollPolicy(pause_after_failures=3))
        first = await runner.poll_once()

        expected = sum(expected_entries(n) for n in GOOD)
        assert first.feeds == len(GOOD) + len(BAD)
        assert first.fetched == len(GOOD) and first.not_modified == 0
        assert first.new_articles == expected == count_articles(store) and expected > 200
        failed = {f["url"].removeprefix(feed_server.base): f["error"] for f in first.failed}
        assert set(failed) == set(BAD)
        for path, needle in BAD.items():
            assert needle in failed[path], (path, failed[path])
        # Every good feed was stored before the slow one timed out: it delayed none of them.
        slow_at = store.order.index(ids["/slow?s=8"])
        assert all(store.order.index(ids[f"/feeds/{n}"]) < slow_at for n in GOOD)

        now = utcnow()
        rows = {r.id: r for r in store.list_feeds()}
        for path in BAD:
            row = rows[ids[path]]
            assert row.error_count == 1 and row.last_error and row.paused_reason is None
            assert row.next_check_at >= now + timedelta(seconds=600 * 0.5 - 5), "backoff"
        assert rows[ids["/status/429?retry_after=120"]].next_check_at >= now + timedelta(seconds=110)
        for n in GOOD:
            assert rows[ids[f"/feeds/{n}"]].etag and rows[ids[f"/feeds/{n}"]].error_count == 0

        # Nothing is due now: a plain poll does nothing; a forced one is all 304s for the good feeds.
        assert (await runner.poll_once()).feeds == 0
        second = await runner.poll_once(force=True)
        assert second.not_modified == len(GOOD) and second.fetched == 0 and second.new_articles == 0
        assert count_articles(store) == expected
        for n in GOOD:
            assert feed_server.conditional_hits[f"/feeds/{n}"] == 1

        # A feed that keeps failing is paused with its reason; the others keep working.
        await runner.poll_once(force=True)
        rows = {r.id: r for r in store.list_feeds()}
        paused = rows[ids["/status/500"]]
        assert paused.error_count == 3 and "3 consecutive failures" in paused.paused_reason
        assert "HTTP 500" in paused.paused_reason
        assert all(rows[ids[f"/feeds/{n}"]].paused_reason is None for n in GOOD)
        assert all(r.id in {f.id for f in store.list_feeds()} for r in rows.values()), "never dropped"


async def test_updated_feed_stores_only_new_items(sqlite_store: Store, feed_server) -> None:  # noqa: ANN001
    old, new = (DATA / "feeds" / "bbc_2020-04-27T2107Z.xml").read_bytes(), \
        (DATA / "feeds" / "bbc_2020-04-28T0034Z.xml").read_bytes()
    feed_server.files["/live/bbc.xml"] = old
    sqlite_store.add_feed(FeedSpec(url=feed_server.url("/live/bbc.xml")), "cli")
    keys_old = {e.key for e in parse_feed(old, url="u").entries}
    keys_new = {e.key for e in parse_feed(new, url="u").entries}
    async with Fetcher(LIMITS) as fetcher:
        runner = Runner(sqlite_store, fetcher)
        a = await runner.poll_once(force=True)
        feed_server.files["/live/bbc.xml"] = new
        b = await runner.poll_once(force=True)
    assert a.new_articles == len(keys_old)
    assert b.new_articles == len(keys_new - keys_old) > 0
    assert count_articles(sqlite_store) == len(keys_old | keys_new)


async def test_teaser_entries_get_page_text(sqlite_store: Store, feed_server) -> None:  # noqa: ANN001
    seed = (DATA / "seed_article.txt").read_text(encoding="utf-8")
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in seed.split("\n\n") if p.strip())
    feed_server.files["/news/lavrov.html"] = (
        "<html><head><title>Lavrov warns NATO</title></head><body><nav>Home | World | Sport</nav>"
        f"<article><h1>Russia warns NATO</h1>{paragraphs}</article><footer>Copyright</footer></body></html>"
    ).encode()
    feed_server.files["/live/teasers.xml"] = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>http://x/</link>'
        f"<item><title>Russia warns NATO</title><link>{feed_server.url('/news/lavrov.html')}?utm_source=rss</link>"
        "<guid isPermaLink=\"false\">lavrov-1</guid><description>Lavrov says Russia will not tolerate...</description>"
        "</item></channel></rss>").encode()
    sqlite_store.add_feed(FeedSpec(url=feed_server.url("/live/teasers.xml")), "cli")
    async with Fetcher(LIMITS) as fetcher:
        runner = Runner(sqlite_store, fetcher)
        report = await runner.poll_once()
        assert report.new_articles == 1
        assert await runner.fill_texts() == 1
    with sqlite_store.engine.connect() as conn:
        from bot.storage.tables import articles

        row = conn.execute(articles.select()).one()
    assert row.text_source == "page" and row.canonical_url.endswith("/news/lavrov.html")
    assert "Sergey Lavrov" in row.text
    assert "YOU MAY ALSO LIKE" not in row.text and "Leave a Reply" not in row.text
    assert "email address will not be published" not in row.text


async def test_fill_texts_in_batches_until_every_waiting_page_was_tried(sqlite_store: Store, feed_server) -> None:  # noqa: ANN001
    items = ""
    for i in range(5):
        feed_server.files[f"/news/{i}.html"] = (
            f"<html><body><article><h1>Story {i}</h1><p>{'Officials said the talks would go on. ' * 20}</p>"
            f"<p>Story number {i} continues here with more detail.</p></article></body></html>").encode()
        items += (f"<item><title>Story {i}</title><link>{feed_server.url(f'/news/{i}.html')}</link>"
                  f"<guid>s{i}</guid><description>Teaser {i}...</description></item>")
    items += (f"<item><title>Gone</title><link>{feed_server.url('/news/missing.html')}</link>"
              "<guid>gone</guid><description>Teaser...</description></item>")
    feed_server.files["/live/many.xml"] = ('<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
                                           f"<link>http://x/</link>{items}</channel></rss>").encode()
    sqlite_store.add_feed(FeedSpec(url=feed_server.url("/live/many.xml")), "cli")
    async with Fetcher(LIMITS) as fetcher:
        runner = Runner(sqlite_store, fetcher)
        assert (await runner.poll_once()).new_articles == 6
        assert await runner.fill_texts(limit=2) == 2  # one batch: the service's cycle
        assert await runner.fill_texts(limit=2, all_pending=True) == 3  # the rest; the missing page tried once
        assert [p.extract_attempts for p in sqlite_store.articles_pending_text()] in ([], [1])


async def test_pages_are_extracted_in_the_parse_workers_and_a_killer_page_is_given_up(
        sqlite_store: Store, feed_server) -> None:  # noqa: ANN001
    from bot.runner import ParsePool
    from tests.fakes.crashing_parser import CRASH_MARKER, install

    # The marked page kills the process that extracts it: this one would have died with it (or, without the
    # workers' patch, extracted it).
    items = ""
    for i, extra in enumerate(["", CRASH_MARKER.decode()]):
        feed_server.files[f"/news/{i}.html"] = (
            f"<html><body><article><h1>Story {i}</h1><p>{'Officials said the talks would go on. ' * 20}</p>"
            f"<p>Story number {i} continues here.</p></article>{extra}</body></html>").encode()
        items += (f"<item><title>Story {i}</title><link>{feed_server.url(f'/news/{i}.html')}</link>"
                  f"<guid>s{i}</guid><description>Teaser {i}...</description></item>")
    feed_server.files["/live/two.xml"] = ('<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
                                          f"<link>http://x/</link>{items}</channel></rss>").encode()
    sqlite_store.add_feed(FeedSpec(url=feed_server.url("/live/two.xml")), "cli")
    pool = ParsePool(1, initializer=install)
    try:
        async with Fetcher(LIMITS) as fetcher:
            runner = Runner(sqlite_store, fetcher, parse_pool=pool)
            assert (await runner.poll_once()).new_articles == 2
            assert await runner.fill_texts() == 1
            assert sqlite_store.articles_pending_text() == [], "the page that kills its parser is not retried"
            text, title = await runner.read_page(feed_server.files["/news/0.html"], None)
            assert "Story number 0 continues" in text and title == "Story 0"
    finally:
        pool.shutdown()
    with sqlite_store.engine.connect() as conn:
        from bot.storage.tables import articles

        rows = {r.title: r for r in conn.execute(articles.select())}
    assert rows["Story 0"].text_source == "page" and "Story number 0 continues" in rows["Story 0"].text
    assert rows["Story 1"].text_source == "failed" and "parse process died" in rows["Story 1"].extract_error
    assert pool.isolated >= 1


@pytest.mark.parametrize("allow", [False])
async def test_private_feed_blocked_by_default(sqlite_store: Store, feed_server, allow: bool) -> None:  # noqa: ANN001
    sqlite_store.add_feed(FeedSpec(url=feed_server.url("/feeds/wsj_2020-04-27T2107Z.xml")), "cli")
    async with Fetcher(FetchLimits(allow_private=allow)) as fetcher:
        report = await Runner(sqlite_store, fetcher).poll_once()
    assert report.failed and "non-public" in report.failed[0]["error"]
    assert sum(feed_server.hits.values()) == 0
    assert sqlite_store.list_feeds()[0].paused_reason.startswith("blocked URL")


def _rss(title: str, link: str, extra: str = "") -> bytes:
    return ('<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>http://x/</link>'
            f"<item><title>{title}</title><link>{link}</link><description>{title}.</description></item>"
            f"</channel></rss>{extra}").encode()


async def test_dead_parse_worker_is_recorded_on_its_feed_and_paused_the_second_time(
        sqlite_store: Store, feed_server) -> None:  # noqa: ANN001
    from bot.runner import ParsePool
    from tests.fakes.crashing_parser import CRASH_MARKER, install

    feed_server.files["/crash.xml"] = _rss("Boom", "https://c.example/1", CRASH_MARKER.decode())
    for i in range(8):
        feed_server.files[f"/ok{i}.xml"] = _rss(f"Story {i}", f"https://ok.example/{i}")
    crash, _ = sqlite_store.add_feed(FeedSpec(url=feed_server.url("/crash.xml")), "cli")
    good = [sqlite_store.add_feed(FeedSpec(url=feed_server.url(f"/ok{i}.xml")), "cli")[0].id for i in range(8)]
    pool = ParsePool(2, initializer=install)
    try:
        async with Fetcher(LIMITS) as fetcher:
            runner = Runner(sqlite_store, fetcher, parse_pool=pool)
            first = await runner.poll_once(force=True)
            rows = {r.id: r for r in sqlite_store.list_feeds()}
            # Only the feed that killed the worker fails; those parsed beside it when it died are stored.
            assert [f["url"] for f in first.failed] == [crash.url]
            assert first.new_articles == 8 == count_articles(sqlite_store)
            assert rows[crash.id].error_count == 1 and "parse process died" in rows[crash.id].last_error
            assert rows[crash.id].paused_reason is None and rows[crash.id].next_check_at > utcnow()
            assert all(rows[i].error_count == 0 and rows[i].last_success_at for i in good)

            second = await runner.poll_once(force=True)
            assert [f["url"] for f in second.failed] == [crash.url]
            paused = sqlite_store.get_feed(crash.id)
            assert paused.error_count == 2 and "twice" in paused.paused_reason
            assert "parse process" in paused.paused_reason

            # The rebuilt pool keeps parsing: a new feed is stored, and the paused one is left alone.
            feed_server.files["/new.xml"] = _rss("Story n", "https://ok.example/n")
            sqlite_store.add_feed(FeedSpec(url=feed_server.url("/new.xml")), "cli")
            third = await runner.poll_once()
            assert (third.feeds, third.failed, third.new_articles) == (1, [], 1)
            assert pool.rebuilds == 2
            # A break fails only the calls running in the pool (at most its 2 workers), not every queued feed.
            assert 2 <= pool.isolated <= 4
    finally:
        pool.shutdown()


def test_next_poll_at_is_the_first_active_feed_due(sqlite_store: Store) -> None:
    now = utcnow()
    assert sqlite_store.next_poll_at(now) is None
    a, _ = sqlite_store.add_feed(FeedSpec(url="https://a.example/feed"), "cli")
    assert sqlite_store.next_poll_at(now) <= utcnow(), "a feed never polled is due now"
    sqlite_store.record_feed_success(a.id, now=now, next_check_at=now + timedelta(minutes=15), etag=None,
                                     last_modified=None)
    assert sqlite_store.next_poll_at(now) == now + timedelta(minutes=15)
    b, _ = sqlite_store.add_feed(FeedSpec(url="https://b.example/feed"), "cli")
    sqlite_store.record_feed_failure(b.id, now=now, error="gone", error_count=5, next_check_at=now,
                                     paused_reason="it failed 5 times")
    assert sqlite_store.next_poll_at(now) == now + timedelta(minutes=15), "a paused feed is not due"


async def test_parse_workers_stop_when_no_feed_is_due_before_the_next_tick(
        sqlite_store: Store, feed_server) -> None:  # noqa: ANN001
    import os

    from bot.runner import ParsePool

    for i in range(2):
        feed_server.files[f"/ok{i}.xml"] = _rss(f"Story {i}", f"https://ok.example/{i}")
        sqlite_store.add_feed(FeedSpec(url=feed_server.url(f"/ok{i}.xml")), "cli")  # polled every 15 minutes
    pool = ParsePool(1)
    try:
        async with Fetcher(LIMITS) as fetcher:
            runner = Runner(sqlite_store, fetcher, parse_pool=pool)
            runner.tick_s = 3600.0  # the feeds are due again before the next tick: the worker stays
            first = await runner.cycle()
            worker = await pool.run(os.getpid)
            assert first.new_articles == 2 and pool.releases == 0
            runner.tick_s = 30.0  # nothing due for 15 minutes: the worker is stopped after the poll phase
            await runner.cycle(force=True)
            assert pool.releases == 1
            assert await pool.run(os.getpid) != worker, "the next parse starts a fresh worker"
    finally:
        pool.shutdown()


async def test_unexpected_exception_is_recorded_on_the_feed(sqlite_store: Store, feed_server, monkeypatch,
                                                           caplog) -> None:  # noqa: ANN001
    import bot.runner

    real = bot.runner.parse_to_articles

    def buggy(body: bytes, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if b"Bug" in body:
            return {}["no such key"]
        return real(body, *args, **kwargs)

    monkeypatch.setattr(bot.runner, "parse_to_articles", buggy)
    feed_server.files["/bug.xml"] = _rss("Bug", "https://b.example/1")
    feed_server.files["/ok.xml"] = _rss("Fine", "https://ok.example/1")
    bug, _ = sqlite_store.add_feed(FeedSpec(url=feed_server.url("/bug.xml"), interval_s=600), "cli")
    ok, _ = sqlite_store.add_feed(FeedSpec(url=feed_server.url("/ok.xml")), "cli")
    async with Fetcher(LIMITS) as fetcher:
        report = await Runner(sqlite_store, fetcher).poll_once()
    assert report.failed == [{"url": bug.url, "error": "KeyError: 'no such key'"}]
    assert report.new_articles == 1
    row = sqlite_store.get_feed(bug.id)
    assert row.error_count == 1 and row.last_error == "KeyError: 'no such key'" and row.paused_reason is None
    assert row.next_check_at >= utcnow() + timedelta(seconds=600 * 0.5 - 5), "backoff as for any failure"
    assert sqlite_store.get_feed(ok.id).error_count == 0
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is KeyError]
    assert logged and bug.url in logged[0].getMessage(), "the traceback goes to the log"

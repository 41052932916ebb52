"""bench/real_snapshot.py: feeds made fresh and relinked to local article pages that serve each item's own text."""

from __future__ import annotations

import calendar
import html
import importlib.util
import io
import sys
import tarfile
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from bot.pipeline.article import extract_article, html_to_text

ROOT = Path(__file__).resolve().parent.parent
FEEDS = Path(__file__).parent / "data" / "feeds"
BBC = (FEEDS / "bbc_world_2025-06-23.xml").read_bytes()
ATOM = (FEEDS / "aljazeera_youtube_2020-04-27T2107Z.atom").read_bytes()
NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)


def _load():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("real_snapshot", ROOT / "bench" / "real_snapshot.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_snapshot"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


rs = _load()


def _when(entry: feedparser.FeedParserDict, field: str = "published_parsed") -> datetime:
    return datetime.fromtimestamp(calendar.timegm(entry[field]), UTC)


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - a loopback test server
        return r.status, r.read()


def test_rss_dates_move_together_so_the_newest_is_now() -> None:
    before = feedparser.parse(BBC).entries
    shift = rs.time_shift([BBC], NOW)
    new, links = rs.rewrite_feed(BBC, shift=shift, base_url="http://127.0.0.1:9", name="bbc_world")
    after = feedparser.parse(new).entries

    assert [e.title for e in after] == [e.title for e in before]
    assert max(_when(e) for e in after) == NOW.replace(microsecond=0)
    # One shift for every item: order and gaps as the outlet published them.
    assert {_when(a) - _when(b) for a, b in zip(after, before, strict=True)} == {shift}
    assert shift > timedelta(days=300)


def test_rss_links_point_at_local_pages_and_guids_stay() -> None:
    before = feedparser.parse(BBC).entries
    new, links = rs.rewrite_feed(BBC, shift=timedelta(0), base_url="http://127.0.0.1:9", name="bbc_world")
    after = feedparser.parse(new).entries

    assert [e.link for e in after] == links
    assert links == [f"http://127.0.0.1:9/article/bbc_world/{i}" for i in range(len(before))]
    assert [e.id for e in after] == [e.id for e in before]
    assert not any("bbc.co" in e.link for e in after)


def test_atom_entries_get_local_alternate_links_and_fresh_dates() -> None:
    before = feedparser.parse(ATOM).entries
    shift = rs.time_shift([ATOM], NOW)
    new, links = rs.rewrite_feed(ATOM, shift=shift, base_url="http://127.0.0.1:9", name="aje")
    after = feedparser.parse(new).entries

    assert len(after) == len(before) == len(links) > 0
    assert [e.link for e in after] == links
    for a, b in zip(after, before, strict=True):
        assert _when(a) - _when(b) == shift
        assert _when(a, "updated_parsed") - _when(b, "updated_parsed") == shift
    # The newest publication date is now (an entry's later update time does not count).
    assert max(_when(e) for e in after) == NOW.replace(microsecond=0)


def test_item_without_link_gets_one_and_late_dates_do_not_set_now() -> None:
    feed = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            b"<item><title>A</title><guid isPermaLink=\"false\">a</guid>"
            b"<pubDate>Mon, 27 Apr 2020 20:00:00 GMT</pubDate></item>"
            b"<item><title>B</title><link>https://example.com/b</link>"
            b"<pubDate>Tue, 28 Apr 2020 10:00:00 +1200</pubDate></item>"  # 22:00 UTC: after the snapshot
            b"</channel></rss>")
    moment = rs.snapshot_time("news_outlets/x/2020-04-27T2107Z")
    assert moment == datetime(2020, 4, 27, 21, 7, tzinfo=UTC)
    shift = rs.time_shift([feed], NOW, moment=moment)
    new, links = rs.rewrite_feed(feed, shift=shift, base_url="http://127.0.0.1:9", name="x")
    a, b = feedparser.parse(new).entries

    assert [a.link, b.link] == links == ["http://127.0.0.1:9/article/x/0", "http://127.0.0.1:9/article/x/1"]
    assert _when(a) == NOW.replace(microsecond=0)
    assert _when(b) - _when(a) == timedelta(hours=2)


def test_served_feeds_and_pages_carry_each_items_own_text() -> None:
    site = rs.LocalSite()
    with rs.serve(site):
        assert site.base_url.startswith("http://127.0.0.1:")
        site.add_snapshot({"bbc_world": BBC, "aje": ATOM}, now=NOW)
        originals = {"bbc_world": feedparser.parse(BBC).entries, "aje": feedparser.parse(ATOM).entries}
        for name, url in site.feed_urls.items():
            status, body = _get(url)
            served = feedparser.parse(body).entries
            assert status == 200 and len(served) == len(originals[name])
            for entry, original in zip(served, originals[name], strict=True):
                assert entry.link.startswith(f"{site.base_url}/article/{name}/")
                status, page = _get(entry.link)
                assert status == 200
                assert f"<h1>{html.escape(original.title)}</h1>" in page.decode()
                # The page holds the item's own description, where the extractor finds it.
                lead = html_to_text(original.summary).split("\n")[0]
                assert len(lead.split()) >= 5 and lead in extract_article(page)
        with pytest.raises(urllib.error.HTTPError):
            _get(f"{site.base_url}/article/bbc_world/9999")
        base = site.base_url
    with pytest.raises(OSError):  # stopped with the block
        _get(f"{base}/feeds/bbc_world.xml")


def test_read_snapshot_takes_only_that_folders_feeds(tmp_path: Path) -> None:
    members = {"rss_feeds/news/snap/a.xml": BBC, "rss_feeds/news/snap/deep/b.xml": ATOM,
               "rss_feeds/news/other/c.xml": ATOM, "rss_feeds/news/snap/notes.txt": b"x"}
    tar_path = tmp_path / "feeds.tar.xz"
    with tarfile.open(tar_path, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert rs.read_snapshot(tar_path, "news/snap") == {"a": BBC}
    with pytest.raises(SystemExit):
        rs.read_snapshot(tar_path, "news/missing")

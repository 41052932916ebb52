"""Feed URLs are canonical as article URLs are: a tracking parameter or a different spelling is the same feed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert

from bot.clock import utcnow
from bot.errors import ConfigError
from bot.feedlist import add_feed, import_opml
from bot.models import FeedSpec
from bot.settings import load_feeds_file
from bot.storage.store import Store
from bot.storage.tables import feeds

FEED = "https://news.example.org/world/rss.xml"
SAME = ["https://news.example.org/world/rss.xml?utm_source=x", "https://NEWS.example.org:443/world/rss.xml",
        "https://news.example.org/world/rss.xml#top", "https://news.example.org/world/rss.xml?utm_medium=rss&fbclid=1"]


def _urls(store: Store) -> list[str]:
    return [f.url for f in store.list_feeds()]


@pytest.mark.parametrize("other", SAME)
def test_add_of_the_same_feed_spelt_differently_adds_nothing(store: Store, other: str) -> None:
    first, created = add_feed(store, FEED, origin="cli", allow_private=False)
    again, created_again = add_feed(store, other, origin="chat", allow_private=False)
    assert created and not created_again and again.id == first.id
    assert _urls(store) == [FEED]


def test_tracking_parameters_are_dropped_on_add(store: Store) -> None:
    row, created = add_feed(store, FEED + "?utm_source=newsletter&edition=int", origin="cli", allow_private=False)
    assert created and row.url == FEED + "?edition=int"
    assert store.add_feed(FeedSpec(url=FEED + "?edition=int&utm_campaign=a"), "cli")[1] is False
    # The URL as the operator typed it still names the feed.
    assert store.get_feed(FEED + "?utm_source=newsletter&edition=int").id == row.id


def test_opml_import_skips_copies_of_existing_and_of_each_other(store: Store) -> None:
    add_feed(store, FEED, origin="cli", allow_private=False)
    outlines = "".join(f'<outline type="rss" text="x" xmlUrl="{u.replace("&", "&amp;")}"/>'
                       for u in [*SAME, "https://other.example/feed?utm_source=a", "https://other.example/feed"])
    report = import_opml(store, f'<opml version="2.0"><head/><body>{outlines}</body></opml>'.encode(),
                         origin="opml", allow_private=False)
    assert [u for u, _ in report.added] == ["https://other.example/feed"]
    assert len(report.duplicates) == len(SAME) + 1
    assert sorted(_urls(store)) == sorted([FEED, "https://other.example/feed"])


def test_file_sync_matches_canonically_and_keeps_the_feed(store: Store) -> None:
    store.sync_file_feeds([FeedSpec(url=FEED, name="World")])
    (before,) = store.list_feeds()
    counts = store.sync_file_feeds([FeedSpec(url=SAME[0], name="World news")])
    (after,) = store.list_feeds()
    assert counts["added"] == 0 and counts["removed"] == 0
    assert after.id == before.id and after.url == FEED and after.name == "World news"


def test_a_stored_non_canonical_url_is_found_and_not_copied(store: Store) -> None:
    # A feed stored before URLs were canonical keeps its row (and its articles) when added or synced again.
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(insert(feeds).values(url=SAME[0], name="", tags=[], interval_s=900, enabled=True,
                                          all_world=False, date_fallback=False, state_media=False, origin="file",
                                          removed=False, error_count=0, next_check_at=now, created_at=now,
                                          updated_at=now))
    (old,) = store.list_feeds()
    row, created = add_feed(store, FEED, origin="cli", allow_private=False)
    assert not created and row.id == old.id
    counts = store.sync_file_feeds([FeedSpec(url=FEED)])
    assert counts == {"added": 0, "updated": 1, "removed": 0}
    (synced,) = store.list_feeds()
    assert synced.id == old.id and synced.url == FEED, "the row takes the canonical URL"


def test_feeds_file_urls_are_canonical_and_copies_refused(tmp_path: Path) -> None:
    p = tmp_path / "feeds.yaml"
    p.write_text(f"feeds: [{{url: '{SAME[0]}'}}]")
    assert [f.url for f in load_feeds_file(p).feeds] == [FEED]
    p.write_text(f"feeds: [{{url: '{FEED}'}}, {{url: '{SAME[1]}'}}]")
    with pytest.raises(ConfigError) as info:
        load_feeds_file(p)
    assert info.value.key == "feeds[1].url" and "duplicate of feeds[0]" in info.value.problem

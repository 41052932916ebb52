"""Storage on SQLite and PostgreSQL: idempotent writes, feed state, the file/database feed merge."""

from __future__ import annotations

from datetime import timedelta

from bot.clock import utcnow
from bot.models import FeedSpec
from bot.storage.store import NewArticle, Store
from tests.fakes.store_queries import count_articles


def art(key: str, url: str | None = None, title: str = "t") -> NewArticle:
    return NewArticle(key=key, url=url, canonical_url=url, title=title, teaser="", text="body",
                      text_source="feed", content_hash="h" + key, published_at=utcnow())


def test_same_article_never_stored_twice(store: Store) -> None:
    feed, _ = store.add_feed(FeedSpec(url="https://a.example/rss"), "cli")
    now = utcnow()
    first = store.insert_articles(feed.id, [art("k1", "https://a.example/1"), art("k2", "https://a.example/2")], now)
    again = store.insert_articles(feed.id, [art("k1", "https://a.example/1"), art("k3", "https://a.example/2")], now)
    assert len(first) == 2 and again == [], "same key or same canonical URL is the same article"
    assert count_articles(store) == 2
    assert store.known_keys(["k1", "k9"]) == {"k1"}


def test_feed_file_seeds_and_admin_changes_persist(store: Store) -> None:
    a, b = FeedSpec(url="https://a.example/rss", name="A"), FeedSpec(url="https://b.example/rss", name="B")
    assert store.sync_file_feeds([a, b])["added"] == 2
    store.remove_feed("https://a.example/rss")
    store.add_feed(FeedSpec(url="https://c.example/rss"), "chat")
    counts = store.sync_file_feeds([a, FeedSpec(url="https://b.example/rss", name="B renamed")])
    urls = {f.url: f for f in store.list_feeds()}
    assert "https://a.example/rss" not in urls, "an operator's removal survives a restart"
    assert urls["https://b.example/rss"].name == "B renamed", "file feeds follow the file"
    assert urls["https://c.example/rss"].origin == "chat" and counts["added"] == 0
    store.sync_file_feeds([a])
    assert {f.url for f in store.list_feeds()} == {"https://c.example/rss"}, "a feed deleted from the file goes"


def test_claim_due_feeds_leases_and_records_state(store: Store) -> None:
    feed, _ = store.add_feed(FeedSpec(url="https://a.example/rss", interval_s=600), "cli")
    now = utcnow()
    assert [f.id for f in store.claim_due_feeds(now)] == [feed.id]
    assert store.claim_due_feeds(now) == [], "a claimed feed is leased"
    store.record_feed_failure(feed.id, now=now, error="HTTP 500", error_count=1,
                              next_check_at=now + timedelta(minutes=5), paused_reason=None)
    row = store.get_feed(feed.id)
    assert (row.error_count, row.last_error) == (1, "HTTP 500")
    assert store.claim_due_feeds(now + timedelta(minutes=6))[0].id == feed.id
    store.record_feed_failure(feed.id, now=now, error="HTTP 500", error_count=10, next_check_at=now,
                              paused_reason="paused after 10 consecutive failures")
    assert store.claim_due_feeds(now + timedelta(days=1)) == [], "paused feeds are skipped"
    assert len(store.claim_due_feeds(now, force=True)) == 1, "--force polls paused feeds too"
    store.resume_feed(feed.id)
    assert store.get_feed(feed.id).paused_reason is None
    store.record_feed_success(feed.id, now=now, next_check_at=now, etag='"e"', last_modified="lm", title="T")
    row = store.get_feed(feed.id)
    assert (row.etag, row.error_count, row.title, row.display_name) == ('"e"', 0, "T", "T")


def test_article_text_lifecycle(store: Store) -> None:
    feed, _ = store.add_feed(FeedSpec(url="https://a.example/rss"), "cli")
    pending = NewArticle(key="p", url="https://a.example/p", canonical_url="https://a.example/p", title="t",
                         teaser="teaser", text="teaser", text_source="pending", content_hash="x", published_at=None)
    (aid,) = store.insert_articles(feed.id, [pending], utcnow())
    assert [p.id for p in store.articles_pending_text()] == [aid]
    store.set_article_text(aid, text=None, error="HTTP 500")
    assert store.articles_pending_text()[0].extract_attempts == 1
    store.set_article_text(aid, text="full text")
    assert store.articles_pending_text() == []
    assert store.list_articles()[0].text_source == "page"


def test_summary_cache_first_writer_wins(store: Store) -> None:
    store.summary_put("k", "m", {"text": "a"})
    store.summary_put("k", "m", {"text": "b"})
    entry = store.summary_get("k")
    assert entry is not None and (entry.model, entry.payload) == ("m", {"text": "a"})
    assert store.summary_get("nope") is None


def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.storage.tables import metadata

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], diff


def test_core_outlets_lead_order_and_outlet_names(store: Store) -> None:
    from bot.pipeline.digest import build_digest
    from bot.storage.chat_store import ChatStore

    now = utcnow()
    reuters, _ = store.add_feed(FeedSpec(url="https://reuters.example/rss", name="Reuters"), "cli")
    bbc, _ = store.add_feed(FeedSpec(url="https://feeds.bbc.example/news/world/rss.xml", name="RSS"), "opml")
    bare, _ = store.add_feed(FeedSpec(url="https://www.c.example/rss", name="https://www.c.example/rss"), "opml")
    # The OPML label "RSS" gives way to the feed's own title once a poll stored it.
    store.record_feed_success(bbc.id, now=now, next_check_at=now, etag=None, last_modified=None,
                              title="BBC News - World")

    def one(feed_id: int, key: str, title: str, minutes: int) -> int:
        a = NewArticle(key=key, url=f"https://{key}.example/a", canonical_url=f"https://{key}.example/a",
                       title=title, teaser="", text="body", text_source="feed", content_hash="h" + key,
                       published_at=now - timedelta(minutes=minutes))
        return store.insert_articles(feed_id, [a], now)[0]

    # Fetched in this order, but the BBC piece was published first: it leads (headline and first link).
    first_seen = one(reuters.id, "r", "Floods kill 40 in Kerala", 10)
    earliest = one(bbc.id, "b", "Kerala floods: 40 dead as rivers burst", 30)
    weak = one(bare.id, "c", "Floods hit Kerala tourism season", 5)
    sid = store.create_story(title="Floods kill 40 in Kerala", now=now, topic_score=0.9, topics={"world": 0.9},
                             state=b"")
    store.save_article_outcome(first_seen, topic_score=0.9, topics={}, story_id=sid, reason="new", now=now)
    store.save_article_outcome(earliest, topic_score=0.9, topics={}, story_id=sid, reason="same_story", now=now,
                               story_score=0.93)
    store.save_article_outcome(weak, topic_score=0.9, topics={}, story_id=sid, reason="same_story", now=now,
                               story_score=0.36)
    store.refresh_story_counts([sid])
    row = store.get_story(sid)
    assert (row.article_count, row.outlet_count) == (3, 2), "the weak join's outlet does not count"

    members = store.story_members(sid)
    assert [m.id for m in members] == [earliest, first_seen, weak]
    assert [m.outlet for m in members] == ["BBC News - World", "Reuters", "c.example"]
    assert [m.story_score for m in members] == [0.93, None, 0.36]

    cands = ChatStore(store.engine).candidate_stories(now - timedelta(hours=1), now + timedelta(minutes=1))
    (story,) = build_digest(cands, now=now + timedelta(minutes=1), since=now - timedelta(hours=1),
                            max_stories=5).stories
    assert story.title == "Kerala floods: 40 dead as rivers burst"
    assert [(lk.outlet, lk.url) for lk in story.links] == [("BBC News - World", "https://b.example/a"),
                                                           ("Reuters", "https://r.example/a")]
    assert story.outlet_count == 2


def test_generic_feed_labels_fall_back_to_the_feed_title() -> None:
    from bot.storage.store import display_name, is_generic_label, outlet_name

    url = "https://feeds.bbci.co.uk/news/world/rss.xml"
    for generic in ("", "  ", "RSS", "rss feed", "Atom", "News", "Top Stories", "Top stories - RSS", "Latest News",
                    "RSS 2.0", url, "feeds.bbci.co.uk", "bbc.co.uk/news", "https://example.org/"):
        assert is_generic_label(generic, url), generic
    for named in ("BBC News", "BBC News - World", "Reuters: World News", "Al Jazeera English", "Meduza"):
        assert not is_generic_label(named, url), named
    assert display_name("RSS", "BBC News - World", url) == "BBC News - World"
    assert display_name(url, "BBC News - World", url) == "BBC News - World"
    assert display_name("BBC", "BBC News - World", url) == "BBC", "an operator's own name wins"
    assert display_name("Top stories", None, url) == url, "no title yet: the admin list shows the URL"
    assert outlet_name("Top stories", None, url) == "bbci.co.uk", "next to an article: the host, not the URL"
    assert outlet_name("RSS", "News", url) == "bbci.co.uk"


def test_migration_adds_story_score_to_existing_articles(tmp_path) -> None:  # noqa: ANN001
    from sqlalchemy import insert, inspect, select

    from bot.storage.db import upgrade
    from bot.storage.tables import articles

    s = Store.open(f"sqlite:///{tmp_path / 'old.db'}", migrate=False)
    try:
        upgrade(s.engine, "0001")
        assert "story_score" not in {c["name"] for c in inspect(s.engine).get_columns("articles")}
        with s.engine.begin() as conn:
            conn.execute(insert(articles).values(key="k", title="t", teaser="", text="x", text_source="feed",
                                                 content_hash="h", fetched_at=utcnow(), extract_attempts=0))
        upgrade(s.engine)
        with s.engine.connect() as conn:
            assert conn.execute(select(articles.c.key, articles.c.story_score)).all() == [("k", None)]
    finally:
        s.close()

"""Storage on SQLite and PostgreSQL: idempotent writes, feed state, the file/database feed merge."""

from __future__ import annotations

from datetime import timedelta

from bot.models import FeedSpec
from bot.net import utcnow
from bot.storage.store import NewArticle, Store


def art(key: str, url: str | None = None, title: str = "t") -> NewArticle:
    return NewArticle(key=key, url=url, canonical_url=url, title=title, teaser="", text="body",
                      text_source="feed", content_hash="h" + key, published_at=utcnow())


def test_same_article_never_stored_twice(store: Store) -> None:
    feed, _ = store.add_feed(FeedSpec(url="https://a.example/rss"), "cli")
    now = utcnow()
    first = store.insert_articles(feed.id, [art("k1", "https://a.example/1"), art("k2", "https://a.example/2")], now)
    again = store.insert_articles(feed.id, [art("k1", "https://a.example/1"), art("k3", "https://a.example/2")], now)
    assert len(first) == 2 and again == [], "same key or same canonical URL is the same article"
    assert store.count_articles() == 2
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
    assert [p["id"] for p in store.articles_pending_text()] == [aid]
    store.set_article_text(aid, text=None, error="HTTP 500")
    assert store.articles_pending_text()[0]["extract_attempts"] == 1
    store.set_article_text(aid, text="full text")
    assert store.articles_pending_text() == []
    assert store.list_articles()[0]["text_source"] == "page"


def test_summary_cache_first_writer_wins(store: Store) -> None:
    store.summary_put("k", "m", {"text": "a"})
    store.summary_put("k", "m", {"text": "b"})
    assert store.summary_get("k") == {"text": "a"} and store.summary_get("nope") is None


def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.storage.tables import metadata

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], diff

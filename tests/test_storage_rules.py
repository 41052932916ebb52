"""The storage rules every domain follows: database errors leave storage as StorageError, and writes to a SQLite
file are serialized by one lock whichever domain (Store or ChatStore) writes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import event

from bot.clock import utcnow
from bot.errors import StorageError
from bot.models import FeedSpec, NewArticle
from bot.pipeline.digest import next_due
from bot.ports import ChatRef
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.db import make_engine, sqlite_write_lock
from bot.storage.outage import is_database_down
from bot.storage.store import Store

NOW = utcnow()
CHAT = ChatRef("telegram", "1")
ARTICLE = NewArticle(key="k", url="https://a.example/1", canonical_url="https://a.example/1", title="t", teaser="",
                     text="x", text_source="feed", content_hash="h", published_at=None)

# One read and one write per domain (feeds, articles, stories, summary cache, chats, outbox, candidates, lock).
CALLS: dict[str, Callable[[Store, ChatStore], object]] = {
    "feeds.read": lambda s, c: s.list_feeds(),
    "feeds.write": lambda s, c: s.add_feed(FeedSpec(url="https://a.example/rss"), "cli"),
    "articles.read": lambda s, c: s.unprocessed_articles(),
    "articles.write": lambda s, c: s.insert_articles(None, [ARTICLE], NOW),
    "stories.read": lambda s, c: s.story_members(1),
    "stories.write": lambda s, c: s.create_story(title="t", now=NOW, topic_score=0.5, topics={}, state=b""),
    "summary_cache.read": lambda s, c: s.summary_get("k"),
    "summary_cache.write": lambda s, c: s.summary_put("k", "m", {"text": "a"}),
    "chats.read": lambda s, c: c.get_subscription(CHAT),
    "chats.write": lambda s, c: c.subscribe(CHAT, DigestDefaults(), NOW, next_due=next_due),
    "outbox.read": lambda s, c: c.outbox_counts(),
    "outbox.write": lambda s, c: c.claim_outbox(NOW, lease_s=60, limit=10),
    "candidates.read": lambda s, c: c.candidate_stories(NOW - timedelta(hours=1), NOW),
    "single_writer_lock": lambda s, c: s.single_writer_lock("processing").__enter__(),
}


@pytest.fixture(scope="module")
def dead() -> tuple[Store, ChatStore]:
    """Both facades on a PostgreSQL URL where nothing listens: every connection is refused."""
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=3")
    yield Store(engine), ChatStore(engine)
    engine.dispose()


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_dead_database_raises_storage_error_in_every_domain(dead: tuple[Store, ChatStore], call: str) -> None:
    with pytest.raises(StorageError) as info:
        CALLS[call](*dead)
    assert info.value.unavailable, "a refused connection means: unavailable, retry later"
    assert is_database_down(info.value), "the outage loops recognize it"
    assert info.value.__cause__ is not None, "the driver's error is kept as the cause"


def test_a_bad_statement_is_a_storage_error_but_not_an_outage(sqlite_store: Store) -> None:
    feed, _ = sqlite_store.add_feed(FeedSpec(url="https://a.example/rss"), "cli")
    with pytest.raises(StorageError) as info:
        # No such feed: the foreign key refuses the row.
        sqlite_store.insert_articles(feed.id + 1000, [ARTICLE], NOW)
    assert not info.value.unavailable and not is_database_down(info.value)


def test_every_domain_on_a_sqlite_file_shares_one_write_lock(sqlite_store: Store) -> None:
    chats = ChatStore(sqlite_store.engine)
    again = Store(make_engine(str(sqlite_store.engine.url)))  # another engine on the same file
    try:
        assert sqlite_store._write_lock is not None
        assert chats._write_lock is sqlite_store._write_lock is again._write_lock
        assert sqlite_write_lock(sqlite_store.engine) is sqlite_store._write_lock
    finally:
        again.close()


def _no_busy_wait(store: Store) -> Store:
    """The same database with SQLite's busy timeout off: a second writer fails at once instead of waiting."""
    engine = make_engine(str(store.engine.url))

    @event.listens_for(engine, "connect")
    def _impatient(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    return Store(engine)


def test_concurrent_store_and_chat_store_writes_never_find_the_database_locked(sqlite_store: Store) -> None:
    store = _no_busy_wait(sqlite_store)
    chats = ChatStore(store.engine)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def store_writes() -> None:
        start.wait()
        for i in range(150):
            store.summary_put(f"k{i}", "m", {"text": "x" * 2000})

    def chat_writes() -> None:
        start.wait()
        for i in range(150):
            chats.claim_summary(ChatRef("telegram", str(i)), NOW, 60)

    def run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in (store_writes, chat_writes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    store.close()
    assert not errors, errors[0]
    assert sqlite_store.summary_get("k149") is not None

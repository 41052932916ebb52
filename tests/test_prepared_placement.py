"""Embeddings ahead of placement (scale-out, issue 13): the embed tasks compute each article's topic scores and
story features in parallel and store them (`articles.prepared`); the serialized placement reads them.

Checked on real models and local articles (the crash rig's generated events, several outlets per event):
the distributed path (embed and process tasks on an in-process Dramatiq worker with 4 threads) puts the same
articles into the same stories as the single process (`Processor.build`, as `newsdigest run`) on the same
database; a worker gone between the two steps loses nothing (a redelivered embed message changes nothing, and a
fresh worker places from the stored features without embedding anything); two workers placing in turns see
each other's stories (no event split in two); stored features round-trip bit for bit.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.net import Fetcher, FetchLimits
from bot.processing import Prepared, Processor
from bot.runner import Runner
from bot.settings import FeedsFile, load_settings
from bot.storage.store import Store
from tests.fakes.crash_rig import World
from tests.fakes.feed_server import FeedServer

FEEDS = 5
EVENTS = 9


@pytest.fixture(scope="module")
def polled_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SQLite file with the local articles polled and their pages fetched, nothing processed yet."""
    server = FeedServer().start()
    path = tmp_path_factory.mktemp("prepared") / "polled.db"
    try:
        world = World(server, random.Random(21), feeds=FEEDS)
        world.publish(EVENTS)
        store = Store.open(f"sqlite:///{path}")
        try:
            for f in range(FEEDS):
                from bot.models import FeedSpec

                store.add_feed(FeedSpec(url=server.url(world.feed_path(f)), name=f"Outlet {f}"), "cli")

            async def poll() -> None:
                async with Fetcher(FetchLimits(allow_private=True)) as fetcher:
                    runner = Runner(store, fetcher)
                    await runner.poll_once(force=True)
                    await runner.fill_texts(all_pending=True)

            asyncio.run(poll())
            assert not store.articles_pending_text(), "every page fetched"
            assert len(store.unprocessed_articles(1000)) == len({i.link for i in world.items})
        finally:
            store.close()
        yield path
    finally:
        server.stop()


def copy_of(polled: Path, tmp_path: Path, name: str) -> Store:
    """A store on a copy of the polled database: every run sees the same articles with the same ids."""
    target = tmp_path / f"{name}.db"
    shutil.copy(polled, target)
    return Store.open(f"sqlite:///{target}")


def stories_of(store: Store) -> set[frozenset[str]]:
    """The stories as sets of article keys (ids of stories may differ between runs, their members may not)."""
    members: dict[int, set[str]] = defaultdict(set)
    with store.read() as conn:
        from sqlalchemy import select

        from bot.storage.tables import articles

        for r in conn.execute(select(articles.c.key, articles.c.story_id, articles.c.processed_at)):
            assert r.processed_at is not None, f"article {r.key} was not processed"
            if r.story_id is not None:
                members[r.story_id].add(r.key)
    return {frozenset(v) for v in members.values()}


def outcomes_of(store: Store) -> dict[str, tuple[float | None, str | None]]:
    """Per article key: its topic score and same-story reason."""
    with store.read() as conn:
        from sqlalchemy import select

        from bot.storage.tables import articles

        return {r.key: (r.topic_score, r.story_reason)
                for r in conn.execute(select(articles.c.key, articles.c.topic_score, articles.c.story_reason))}


class Workers:
    """The real actors (bot/distributed/tasks.py) on a Dramatiq StubBroker, consumed by an in-process worker."""

    def __init__(self, store: Store) -> None:
        import dramatiq
        from dramatiq.brokers.stub import StubBroker
        from dramatiq.middleware import (
            AgeLimit,
            Callbacks,
            Pipelines,
            Retries,
            ShutdownNotifications,
            TimeLimit,
        )

        from bot.distributed.tasks import WorkerContext, declare

        self.dramatiq = dramatiq
        self.broker = StubBroker(middleware=[AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(),
                                             Pipelines(), Retries(max_retries=5)])
        self.broker.emit_after("process_boot")
        # The limiter and the chat sinks are not opened: the embed and process tasks use neither.
        self.ctx = WorkerContext(load_settings({}), FeedsFile(path=None), store, "", host_per_s=2.0,
                                 send_margin_s=0.1)
        self.actors = declare(self.broker, self.ctx)
        self.worker: Any = None

    def start(self, queues: set[str]) -> None:
        self.worker = self.dramatiq.Worker(self.broker, queues=queues, worker_threads=4, worker_timeout=50)
        self.worker.start()

    def embed_as_polls_do(self, store: Store) -> None:
        """One embed message per feed's new articles (chunked), as `poll_feed` sends them."""
        from bot.distributed.tasks import EMBED_CHUNK

        by_feed: dict[int | None, list[int]] = defaultdict(list)
        for a in store.unprocessed_articles(1000):
            by_feed[a.feed_id].append(a.id)
        for ids in by_feed.values():
            for i in range(0, len(ids), EMBED_CHUNK):
                self.actors.embed_articles.send(ids[i:i + EMBED_CHUNK])

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.broker.close()
        self.ctx.close()


def single_process(polled: Path, tmp_path: Path) -> tuple[set[frozenset[str]], dict[str, Any]]:
    store = copy_of(polled, tmp_path, "single")
    try:
        proc = Processor.build(store, load_settings({}), FeedsFile(path=None))
        assert proc.process() > 0
        return stories_of(store), outcomes_of(store)
    finally:
        store.close()


def test_distributed_path_places_the_same_articles_into_the_same_stories(polled_db: Path, tmp_path: Path) -> None:
    expected, expected_outcomes = single_process(polled_db, tmp_path)
    assert any(len(s) > 1 for s in expected), "the world has stories reported by several outlets"

    store = copy_of(polled_db, tmp_path, "distributed")
    workers = Workers(store)
    try:
        # Embeds run in parallel with placement: placement waits for the features it has not got yet.
        workers.start({"embed", "process"})
        workers.embed_as_polls_do(store)
        workers.broker.join("embed", fail_fast=True)
        workers.broker.join("process", fail_fast=True)
        workers.worker.join()
        assert stories_of(store) == expected
        outcomes = outcomes_of(store)
        assert outcomes.keys() == expected_outcomes.keys()
        for key, (score, reason) in expected_outcomes.items():
            assert outcomes[key][1] == reason, key
            assert outcomes[key][0] == pytest.approx(score, abs=2e-3), key  # embedding batches differ
        assert all(a.prepared is None for a in store.unprocessed_articles(1000))
        with store.read() as conn:
            from sqlalchemy import func, select

            from bot.storage.tables import articles

            left = conn.execute(select(func.count()).where(articles.c.prepared.is_not(None))).scalar()
        assert left == 0, "processing clears the stored features"
    finally:
        workers.close()
        store.close()


def test_a_worker_gone_between_embedding_and_placement_loses_nothing(polled_db: Path, tmp_path: Path) -> None:
    expected, _ = single_process(polled_db, tmp_path)
    store = copy_of(polled_db, tmp_path, "killed")
    first = Workers(store)
    try:
        first.start({"embed"})  # this worker embeds, and is gone before any placement
        first.embed_as_polls_do(store)
        first.broker.join("embed", fail_fast=True)
        first.worker.join()
        waiting = store.unprocessed_articles(1000)
        assert waiting and all(a.prepared is not None for a in waiting), "every article's features are stored"
        stored = {a.id: a.prepared for a in waiting}
        # A redelivered embed message (acked late: the kill came after the write) changes nothing.
        first.actors.embed_articles.send(sorted(stored))
        first.broker.join("embed", fail_fast=True)
        first.worker.join()
        assert {a.id: a.prepared for a in store.unprocessed_articles(1000)} == stored
    finally:
        first.close()

    second = Workers(store)  # a fresh worker: nothing in memory, the process message lost with the first one
    try:
        proc = second.ctx.processor()

        def no_embedding(texts: Any) -> np.ndarray:
            raise AssertionError(f"placement embedded {len(texts)} texts instead of reading stored features")

        proc.encode = no_embedding
        proc.classifier.embedder.encode = no_embedding  # type: ignore[method-assign]
        second.start({"process"})
        second.actors.process.send()
        second.broker.join("process", fail_fast=True)
        second.worker.join()
        assert stories_of(store) == expected
    finally:
        second.close()
        store.close()


def test_stored_features_round_trip_bit_for_bit(polled_db: Path, tmp_path: Path) -> None:
    store = copy_of(polled_db, tmp_path, "roundtrip")
    try:
        proc = Processor.build(store, load_settings({}), FeedsFile(path=None))
        batch = store.unprocessed_articles(1000)
        fresh = proc.prepare(batch)
        for a, p in zip(batch, fresh, strict=True):
            back = Prepared.from_bytes(p.to_bytes(proc.fingerprint(a)), proc.fingerprint(a))
            assert back is not None and back.topics == p.topics
            if p.features is None:
                assert back.features is None
                continue
            f, g = p.features, back.features
            assert g is not None and f.signals is not None and g.signals is not None
            assert np.array_equal(f.embedding, g.embedding) and np.array_equal(f.minhash, g.minhash)
            assert np.array_equal(f.signals.embedding, g.signals.embedding)
            assert np.array_equal(f.signals.title_embedding, g.signals.title_embedding)
            assert (f.terms, f.lead_terms, f.published, f.outlet, f.title) == \
                (g.terms, g.lead_terms, g.published, g.outlet, g.title)
            assert f.signals.to_doc(exact=True) == g.signals.to_doc(exact=True)
        a = batch[0]
        blob = fresh[0].to_bytes(proc.fingerprint(a))
        renamed = type(a)(**{**a.__dict__, "outlet": "Another name"})
        assert Prepared.from_bytes(blob, proc.fingerprint(renamed)) is None, "other inputs: computed again"
        assert Prepared.from_bytes(b"not json", proc.fingerprint(a)) is None
    finally:
        store.close()


def test_placers_taking_turns_see_each_others_stories(polled_db: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers' processors place in turns (as the lock "processing" orders them): each turn starts with the
    stories the other one created or joined, so no event is split into two stories."""
    import bot.processing

    monkeypatch.setattr(bot.processing, "BATCH", 4)  # a turn places one batch: the single process takes the same
    expected, _ = single_process(polled_db, tmp_path)
    store = copy_of(polled_db, tmp_path, "turns")
    try:
        first = Processor.build(store, load_settings({}), FeedsFile(path=None))
        second = Processor(store, first.classifier, first.encode, first.summarizer,
                           min_topic_score=first.min_topic_score)
        for p in (first, second):
            p.await_prepared_s, p.others_place = 120.0, True
        waiting = store.unprocessed_articles(1000)
        turns = 0
        for k in range(0, len(waiting), 4):
            # the next batch's features arrive; the placer whose turn it is places it and waits for the next
            store.save_prepared(first.prepare_bytes(waiting[k:k + 4]))
            assert (first, second)[turns % 2].process() == len(waiting[k:k + 4])
            turns += 1
        assert turns >= 4 and not store.unprocessed_articles(1000)
        assert stories_of(store) == expected
    finally:
        store.close()

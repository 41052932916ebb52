"""Story summaries under concurrency (the scale-out flake: a 14-member story stored with summary '').

Root causes, each pinned here with a controlled interleaving rather than by luck:
- pysbd's Segmenter keeps the text it splits on the instance; one shared by a worker's threads gave a summary
  task the other thread's text back, hence no sentence, hence an empty summary;
- a summary task that read a story before an article joined it could write last, over the newer summary.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pysbd
import pytest
from sqlalchemy import text

from bot.clock import utcnow
from bot.models import FeedSpec, NewArticle
from bot.pipeline.digest import strip_headline
from bot.storage.store import Store, StoryMember
from bot.summaries import story_summary_text, summarize_stories
from summarizer import Summarizer, Summary
from summarizer.text import split_sentences

ALPHA = ("Alpha ministers met in Geneva for talks on a ceasefire. The envoy said five proposals had been tabled. "
         "Aid agencies said thousands of civilians had fled.")
BRAVO = "Bravo troops moved closer to the frontier overnight. The council will meet on Monday, diplomats said."


def test_sentence_splitting_is_not_disturbed_by_another_thread_splitting_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Thread A is held inside pysbd (after it recorded its text) while thread B splits a whole other text.
    a_inside, b_done = threading.Event(), threading.Event()
    real = pysbd.Segmenter.processor

    def processor(self: pysbd.Segmenter, part: str) -> Any:
        if part.startswith("Alpha"):
            a_inside.set()
            assert b_done.wait(10)
        return real(self, part)

    monkeypatch.setattr(pysbd.Segmenter, "processor", processor)
    got: dict[str, list[str]] = {}
    a = threading.Thread(target=lambda: got.setdefault("a", [s.text for s in split_sentences(ALPHA)]))
    a.start()
    assert a_inside.wait(10)
    b = threading.Thread(target=lambda: got.setdefault("b", [s.text for s in split_sentences(BRAVO)]))
    b.start()
    b.join(10)
    b_done.set()
    a.join(10)
    assert got["b"] == ["Bravo troops moved closer to the frontier overnight.",
                        "The council will meet on Monday, diplomats said."]
    assert got["a"] == ["Alpha ministers met in Geneva for talks on a ceasefire.",
                        "The envoy said five proposals had been tabled.",
                        "Aid agencies said thousands of civilians had fled."]


@pytest.fixture(scope="module")
def summarizer() -> Summarizer:
    return Summarizer()


REPORTS = [("Floods hit Kerala", "Rivers burst their banks across Kerala on Monday, flooding hundreds of villages. "
            "Rescue teams used boats to reach stranded families."),
           ("Kerala floods kill 40", "Officials said at least 40 people died in the floods. The state government "
            "announced compensation for the families of the victims. Rain is expected to continue for three days.")]


def _article(store: Store, k: int, title: str, body: str) -> int:
    now = utcnow()
    feed, _ = store.add_feed(FeedSpec(url=f"https://o{k}.example/rss", name=f"Outlet {k}"), "cli")
    (aid,) = store.insert_articles(feed.id, [NewArticle(
        key=f"k{k}", url=f"https://o{k}.example/a{k}", canonical_url=None, title=title, teaser="", text=body,
        text_source="feed", content_hash=f"h{k}", published_at=now - timedelta(minutes=30 - k))], now)
    return aid


def _join(store: Store, aid: int, sid: int, reason: str = "same_story") -> None:
    store.save_article_outcome(aid, topic_score=0.9, topics={}, story_id=sid, reason=reason, now=utcnow(),
                               story_score=0.95 if reason == "same_story" else None)


class JoinsMidway:
    """The real summarizer; while it works on the story, a `process` task lets another article join it."""

    def __init__(self, inner: Summarizer, join: Any) -> None:
        self.inner, self.join = inner, join

    def summarize_batch(self, *args: Any, **kwargs: Any) -> list[Summary]:
        out = self.inner.summarize_batch(*args, **kwargs)
        if self.join is not None:
            self.join()
            self.join = None
        return out


def test_a_summary_made_before_an_article_joined_never_overwrites_the_newer_version(
        store: Store, summarizer: Summarizer) -> None:
    first, second = (_article(store, k, t, b) for k, (t, b) in enumerate(REPORTS))
    sid = store.create_story(title=REPORTS[0][0], now=utcnow(), topic_score=0.9, topics={}, state=b"")
    _join(store, first, sid, "new")
    stale = JoinsMidway(summarizer, lambda: (store.update_story(sid, now=utcnow(), state=b"", topic_score=0.9,
                                                                topics={}, major=True), _join(store, second, sid)))
    assert summarize_stories(store, stale, [sid]) == 0  # type: ignore[arg-type]  # the real one, wrapped
    row = store.get_story(sid)
    assert row is not None and row.summary is None and row.summary_method is None  # still owed
    # The newer version's task (queued when the article joined) writes; a stale one arriving after it does not.
    assert summarize_stories(store, summarizer, [sid]) == 1
    newer = store.get_story(sid)
    assert newer is not None and newer.summary and newer.summary_method
    assert "40" in newer.summary or "compensation" in newer.summary or "Rain" in newer.summary
    members_before = [m for m in store.story_members(sid) if m.id == first]
    assert not store.set_story_summary(sid, title="old", summary="old", method="m",
                                       members=[m.id for m in members_before])
    assert store.get_story(sid) == newer


@pytest.mark.postgres
def test_the_membership_check_waits_for_an_article_joining_in_an_open_transaction(
        store: Store, summarizer: Summarizer) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("the row lock matters where writers run concurrently (PostgreSQL)")
    first, second = (_article(store, k, t, b) for k, (t, b) in enumerate(REPORTS))
    sid = store.create_story(title=REPORTS[0][0], now=utcnow(), topic_score=0.9, topics={}, state=b"")
    _join(store, first, sid, "new")
    result: list[bool] = []
    with store.engine.connect() as conn:
        conn.execute(text("UPDATE articles SET story_id = :s WHERE id = :a"), {"s": sid, "a": second})
        writer = threading.Thread(target=lambda: result.append(store.set_story_summary(
            sid, title="t", summary="stale", method="m", members=[first])))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive()  # held by the joining transaction's lock on the story row
        conn.commit()
    writer.join(10)
    assert result == [False]
    row = store.get_story(sid)
    assert row is not None and row.summary is None


def test_a_summary_that_only_repeats_the_headline_is_stored_whole_never_empty(
        sqlite_store: Store, summarizer: Summarizer) -> None:
    title = "Russia and Ukraine hold talks in Geneva"
    body = "Russia and Ukraine held talks in Geneva. Ukraine and Russia met for talks in Geneva."
    aid = _article(sqlite_store, 0, title, body)
    sid = sqlite_store.create_story(title=title, now=utcnow(), topic_score=0.9, topics={}, state=b"")
    _join(sqlite_store, aid, sid, "new")
    made = summarizer.summarize_batch([[body]], titles=[title], max_sentences=3, max_chars=600)[0]
    assert made.text and strip_headline(made.text, title).strip() == ""  # what used to be stored
    assert summarize_stories(sqlite_store, summarizer, [sid]) == 1
    row = sqlite_store.get_story(sid)
    assert row is not None and row.summary == made.text.strip()


def test_a_summary_without_any_sentence_falls_back_to_the_leads_text() -> None:
    lead = StoryMember(id=1, title="T", text="x", url=None, canonical_url=None, published_at=None,
                       fetched_at=utcnow(), feed_id=1, story_reason="new", story_score=None, outlet="O")
    empty = Summary("", (), (), "extractive", "m")
    long = "word " * 400
    assert story_summary_text(empty, [(lead, "  The lead\n says   this. ")], "T") == "The lead says this."
    cut = story_summary_text(empty, [(lead, long)], "T")
    assert cut.endswith("…") and len(cut) <= 600 and cut.startswith("word word")
    kept = Summary("Ministers met. Talks went on.", ("Ministers met.", "Talks went on."), (0, 0), "extractive", "m")
    assert story_summary_text(kept, [(lead, "x")], "Quake hits Chile") == "Ministers met. Talks went on."

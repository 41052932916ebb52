"""Fault campaign, crashes (issue 10): `newsdigest run` killed with SIGKILL mid-poll, mid-processing and
mid-delivery, restarted, and checked: every item stored once, every article in at most one story (each story
with members and a current summary), every outbox part delivered once (Telegram: only the part in flight at a
kill may come again), nothing due left undelivered, and the service still running after the last restart.

The rig (what is injected, how often, the invariants) is tests/fakes/crash_rig.py; this test runs three
iterations, one per stage, with a fixed seed; `bench/crash_campaign.py --iterations N --seed S` runs many.
The regression test below is the bug the campaign found: a crash between an article batch and its story
summaries left those stories without a summary for good.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

import bot.processing
from bot.clock import utcnow
from bot.models import NewArticle
from bot.pipeline.entry import content_hash
from bot.processing import Processor
from bot.storage.store import Store
from tests.fakes.crash_rig import Campaign
from tests.fakes.stories import add_outlet

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux process groups")


@needs_proc
async def test_killed_mid_poll_processing_and_delivery_then_restarted(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = await Campaign(tmp_path, iterations=3, seed=7, schedule=("process", "deliver", "poll"),
                             trigger_timeout_s=30, settle_timeout_s=90, log=lines.append).run()
    report = json.dumps(summary, indent=1, default=str)
    log_tail = (tmp_path / "service.log").read_text(errors="replace")[-3000:]
    assert summary["kills"] == 3 and summary["kills_per_stage"] == {"deliver": 1, "poll": 1, "process": 1}
    assert summary["untriggered_per_stage"] == {}, f"each kill landed in its stage\n{report}"
    for name, inv in summary["invariants"].items():
        assert inv["ok"], f"{name}: {inv['problems']}\n{report}\n{log_tail}"
    assert summary["invariants"]["items_stored_once"]["articles"] == summary["items_published"]
    assert summary["invariants"]["parts_delivered_once"]["parts"] > 0, "digests went out"
    assert summary["final_run"]["stopped_cleanly"], log_tail


# --- regression: summaries lost between a batch and its summarization ---------------------------------------


class StubClassifier:
    """Every article scores as geopolitics (the models are not what this test is about)."""

    names = ("geopolitics",)

    def score_many(self, texts: list[str]) -> list[dict[str, float]]:
        return [{"geopolitics": 0.9} for _ in texts]


def stub_encode(texts: list[str]) -> np.ndarray:
    """Unit vectors from the text's first word, so that articles opening alike land in one story."""
    out = np.zeros((len(texts), 384), np.float32)
    for i, t in enumerate(texts):
        out[i, int(hashlib.sha1(t.split()[0].encode()).hexdigest(), 16) % 384] = 1.0
    return out


@dataclass
class StubSummary:
    text: str
    model: str = "stub"
    # As summarizer.Summary: per sentence, the document it came from (none here: the stub's text is generated).
    sentences: tuple[str, ...] = ()
    sources: tuple[int, ...] = ()


class StubSummarizer:
    """Summarizes a story as its documents' first words."""

    def summarize_batch(self, stories: list[list[str]], **_: object) -> list[StubSummary]:
        return [StubSummary(" / ".join(d.split(".")[0] for d in docs)) for docs in stories]


def article(n: int, text: str) -> NewArticle:
    title = text.split(".")[0]
    return NewArticle(key=f"k{n}", url=f"https://x{n}.example/a", canonical_url=f"https://x{n}.example/a",
                      title=title, teaser="", text=text, text_source="feed", content_hash=content_hash(title, text),
                      published_at=utcnow() - timedelta(minutes=10 - n))


def processor(store: Store) -> Processor:
    return Processor(store, StubClassifier(), stub_encode, StubSummarizer())  # type: ignore[arg-type]


def test_stories_are_summarized_after_a_crash_between_batch_and_summaries(sqlite_store: Store,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store = sqlite_store
    now = utcnow()
    text = ("Ministers met in Geneva. Talks on the border went on late into the night. " * 20).strip()
    feeds = [add_outlet(store, name, now) for name in ("Outlet A", "Outlet B")]
    store.insert_articles(feeds[0], [article(1, text)], now)

    def crash(*_: object, **__: object) -> None:
        raise SystemExit("killed")  # as a SIGKILL would: after the articles' outcomes were committed

    with monkeypatch.context() as m:
        m.setattr(bot.processing, "summarize_stories", crash)
        with pytest.raises(SystemExit):
            processor(store).process()
    (a,) = store.list_articles()
    story = store.get_story(a.story_id)
    assert story is not None and story.summary is None, "the crash came before the summary"

    # The restart: a new process finds no article to process, but the story still owed its summary.
    assert processor(store).process() == 0
    story = store.get_story(a.story_id)
    assert story.summary and story.summary_method == "stub"

    # A story that gains a member and crashes before its new summary gets it after the restart too.
    store.insert_articles(feeds[1], [article(2, text.replace("Geneva", "Geneva on Monday"))], now)
    with monkeypatch.context() as m:
        m.setattr(bot.processing, "summarize_stories", crash)
        with pytest.raises(SystemExit):
            processor(store).process()
    members = store.story_members(a.story_id)
    assert len(members) == 2, "the second write-up joined the story"
    assert store.get_story(a.story_id).summary_method is None, "its summary is marked out of date"
    assert processor(store).process() == 0
    story = store.get_story(a.story_id)
    assert story.summary_method == "stub" and story.article_count == 2 and story.outlet_count == 2

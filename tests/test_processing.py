"""Articles -> topic scores -> stories -> summaries, on real models and a real database (idempotent, restartable)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from bot.models import FeedSpec
from bot.net import Fetcher, FetchLimits
from bot.processing import Processor
from bot.runner import Runner
from bot.settings import DigestDefaults, FeedsFile, TopicSpecConfig, load_settings
from bot.storage.store import Store

SEED = (Path(__file__).parent / "data" / "seed_article.txt").read_text(encoding="utf-8")
FIRST, SECOND = SEED.split("JUST IN –", 1)
SECOND = "JUST IN –" + SECOND
SPORT = ("Manchester City beat Arsenal 3-1 on Sunday to go top of the Premier League table. Erling Haaland "
         "scored twice in the first half and Phil Foden added a third after the break, before Bukayo Saka "
         "pulled one back for the visitors. The title race now heads into the final ten matches of the season. "
         ) * 3


def rss(items: list[tuple[str, str, str]]) -> bytes:
    body = "".join(f"<item><title>{html.escape(t)}</title><link>{html.escape(link)}</link><guid>{html.escape(link)}"
                   f"</guid><description>{html.escape(text)}</description></item>" for t, link, text in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{body}</channel></rss>'.encode()


@pytest.fixture(scope="module")
def processor_parts():
    """Models loaded once for the module."""
    from bot.pipeline.topic import TopicClassifier
    from summarizer import Summarizer
    from summarizer.embedding import Embedder

    embedder = Embedder()
    return embedder, TopicClassifier(embedder), Summarizer(embedder=embedder)


def make_processor(store: Store, parts) -> Processor:  # noqa: ANN001
    embedder, classifier, summarizer = parts
    return Processor(store, classifier, embedder.encode, summarizer, min_topic_score=0.5)


async def poll(store: Store) -> None:
    async with Fetcher(FetchLimits(allow_private=True)) as f:
        await Runner(store, f).poll_once(force=True)


async def test_same_story_from_two_outlets_becomes_one_summarized_story(store: Store, feed_server,
                                                                        processor_parts) -> None:  # noqa: ANN001
    feed_server.files["/a.xml"] = rss([("Breaking: Russia Warns NATO – No Troops in Ukraine Allowed!",
                                        "https://a.example/lavrov", FIRST),
                                       ("City beat Arsenal to go top", "https://a.example/football", SPORT)])
    feed_server.files["/b.xml"] = rss([("JUST IN – Russia will not tolerate any NATO troops in Ukraine — Lavrov",
                                        "https://b.example/lavrov-nato", SECOND)])
    store.add_feed(FeedSpec(url=feed_server.url("/a.xml"), name="Outlet A"), "cli")
    store.add_feed(FeedSpec(url=feed_server.url("/b.xml"), name="Outlet B"), "cli")
    await poll(store)
    proc = make_processor(store, processor_parts)
    assert proc.process() == 3
    assert proc.process() == 0, "nothing is processed twice"

    arts = {a.title[:10]: a for a in store.list_articles()}
    football = arts["City beat "]
    assert football.topic_score < 0.5 and football.story_id is None
    lavrov = [a for a in arts.values() if a is not football]
    assert all(a.topic_score >= 0.5 for a in lavrov)
    assert lavrov[0].story_id == lavrov[1].story_id is not None, "the two write-ups are one story"
    story = store.get_story(lavrov[0].story_id)
    assert (story.article_count, story.outlet_count) == (2, 2)
    assert "Lavrov" in story.summary and "YOU MAY ALSO LIKE" not in story.summary
    flat = " ".join(SEED.split())
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", story.summary):
        assert " ".join(sentence.split()) in flat, sentence

    # A restart rebuilds the index from the database: a third outlet's copy joins the same story.
    feed_server.files["/c.xml"] = rss([("Lavrov: Russia will not tolerate NATO troops in Ukraine",
                                        "https://c.example/x", FIRST)])
    store.add_feed(FeedSpec(url=feed_server.url("/c.xml"), name="Outlet C"), "cli")
    await poll(store)
    assert make_processor(store, processor_parts).process() == 1
    story2 = store.get_story(lavrov[0].story_id)
    assert (story2.article_count, story2.outlet_count) == (3, 3)
    assert story2.version == story.version, "a copy of known facts is not a substantial update"


def test_processor_builds_from_settings(sqlite_store: Store) -> None:
    ff = FeedsFile(path=None, topics=(TopicSpecConfig("world", "world news"),
                                      TopicSpecConfig("energy", "oil and gas", ("OPEC cuts output",), ("OPEC",))),
                   digest=DigestDefaults(min_topic_score=0.6))
    proc = Processor.build(sqlite_store, load_settings({}), ff)
    assert proc.classifier.names == ["geopolitics", "world", "energy"] and proc.min_topic_score == 0.6
    assert proc.process() == 0

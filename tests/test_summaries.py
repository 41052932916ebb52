"""Summaries at the core's edge: `/summary <link>` over a real socket, and the database-backed cache."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.errors import BlockedURLError, FetchError
from bot.net import FetchLimits
from bot.storage.store import Store, StoryMember
from bot.summaries import LinkSummarizer, StoreSummaryCache
from summarizer import Summarizer, Summary

SEED = (Path(__file__).parent / "data" / "seed_article.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def summarizer() -> Summarizer:
    return Summarizer()


def page(title: str, body: str) -> bytes:
    paras = "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n") if p.strip())
    return (f"<html><head><title>{html.escape(title)}</title></head><body><nav>Home | World</nav>"
            f"<article><h1>{html.escape(title)}</h1>{paras}</article></body></html>").encode()


async def test_link_summary_is_verbatim_and_clean(feed_server, summarizer: Summarizer) -> None:  # noqa: ANN001
    feed_server.files["/news/lavrov.html"] = page("Russia warns NATO", SEED)
    result = await LinkSummarizer(lambda: summarizer, FetchLimits(allow_private=True))(
        feed_server.url("/news/lavrov.html"))
    assert result.title == "Russia warns NATO" and result.url.endswith("/news/lavrov.html")
    assert result.summary and "Lavrov" in result.summary
    flat = " ".join(SEED.split())
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", result.summary):
        assert " ".join(sentence.split()) in flat, sentence
    assert "YOU MAY ALSO LIKE" not in result.summary and "Leave a Reply" not in result.summary


async def test_link_summary_obeys_ssrf_rules_and_reports_errors(feed_server, summarizer: Summarizer) -> None:  # noqa: ANN001
    with pytest.raises(BlockedURLError):
        await LinkSummarizer(lambda: summarizer, FetchLimits())(feed_server.url("/news/x.html"))
    with pytest.raises(FetchError, match="404"):
        await LinkSummarizer(lambda: summarizer, FetchLimits(allow_private=True))(feed_server.url("/nothing"))
    assert sum(feed_server.hits.values()) == 1


def test_store_summary_cache_roundtrip(sqlite_store: Store) -> None:
    cache = StoreSummaryCache(sqlite_store)
    s = Summary(text="A. B.", sentences=("A.", "B."), sources=(0, 1), method="extractive", model="m")
    assert cache.get("k") is None
    cache.put("k", s)
    assert cache.get("k") == s


HEADLINE = "Lavrov: Russia will not accept NATO troops in Ukraine"


async def test_link_summary_never_repeats_the_headline(feed_server, summarizer: Summarizer) -> None:  # noqa: ANN001
    from bot.pipeline.digest import repeats_headline

    # The page's first paragraph restates its headline: the reply shows the headline above the summary, so the
    # summary must say something else.
    feed_server.files["/news/restated.html"] = page(
        HEADLINE, "Russia will not accept NATO troops in Ukraine, Lavrov said.\n\n" + SEED)
    result = await LinkSummarizer(lambda: summarizer, FetchLimits(allow_private=True))(
        feed_server.url("/news/restated.html"))
    assert result.title == HEADLINE and result.summary
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", result.summary)
    assert not any(repeats_headline(s, HEADLINE) for s in sentences), result.summary
    assert HEADLINE not in result.summary and "Lavrov" in result.summary


def member(i: int, feed_id: int, title: str, text: str, reason: str, score: float | None = None) -> StoryMember:
    return StoryMember(id=i, title=title, text=text, url=None, canonical_url=None, published_at=None,
                       fetched_at=datetime(2024, 1, 1, tzinfo=UTC), feed_id=feed_id, story_reason=reason,
                       story_score=score, outlet="")


def test_story_documents_use_only_core_members() -> None:
    from bot.summaries import story_documents

    members = [member(1, 1, "Floods kill 40 in Kerala", "Floods kill 40 in Kerala\nRivers burst their banks.", "new"),
               member(2, 2, "Arsenal beat City", "Arsenal beat City 2-1 on Sunday.", "same_story", 0.2),
               member(3, 3, "Kerala floods: 40 dead", "Kerala floods: 40 dead\nThe army was deployed.", "same_story",
                      0.9),
               member(4, 1, "Kerala rain", "More rain is due.", "exact")]
    docs, title = story_documents(members)
    assert title == "Floods kill 40 in Kerala", "the lead is the first core member"
    assert docs == ["Rivers burst their banks.", "The army was deployed."], "weak members and headlines left out"
    docs, title = story_documents([member(1, 1, "", "", "same_story", 0.1)])
    assert (docs, title) == ([], "")


def test_story_summary_is_built_from_core_members_only(sqlite_store: Store, summarizer: Summarizer) -> None:
    from datetime import timedelta

    from bot.clock import utcnow
    from bot.models import FeedSpec
    from bot.pipeline.digest import repeats_headline
    from bot.storage.store import NewArticle
    from bot.summaries import summarize_stories

    store, now = sqlite_store, utcnow()
    lead_text = "Russia will not accept NATO troops in Ukraine, Lavrov said.\n\n" + SEED
    football = ("Arsenal beat Manchester City 2-1 at the Emirates on Sunday. Bukayo Saka scored twice in the second "
                "half. The result lifts Arsenal to the top of the Premier League table. City manager Pep Guardiola "
                "said his side lacked energy after the midweek Champions League trip.")
    ids = []
    for k, (title, text) in enumerate([(HEADLINE, lead_text), ("Arsenal beat City to go top", football)]):
        feed, _ = store.add_feed(FeedSpec(url=f"https://o{k}.example/rss", name=f"Outlet {k}"), "cli")
        ids += store.insert_articles(feed.id, [NewArticle(
            key=f"k{k}", url=f"https://o{k}.example/a", canonical_url=f"https://o{k}.example/a", title=title,
            teaser="", text=text, text_source="feed", content_hash=f"h{k}",
            published_at=now - timedelta(minutes=10 - k))], now)
    sid = store.create_story(title=HEADLINE, now=now, topic_score=0.9, topics={}, state=b"")
    store.save_article_outcome(ids[0], topic_score=0.9, topics={}, story_id=sid, reason="new", now=now)
    # A wrong join with a low score: it must not feed the story's summary.
    store.save_article_outcome(ids[1], topic_score=0.9, topics={}, story_id=sid, reason="same_story", now=now,
                               story_score=0.33)
    assert summarize_stories(store, summarizer, [sid]) == 1
    row = store.get_story(sid)
    assert row is not None and row.title == HEADLINE and row.summary and "Lavrov" in row.summary
    assert not any(w in row.summary for w in ("Arsenal", "Saka", "Guardiola", "Premier League"))
    assert not any(repeats_headline(s, HEADLINE) for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", row.summary))


def test_story_summary_keeps_each_sentence_source_and_old_rows_have_none(sqlite_store: Store) -> None:
    from datetime import timedelta

    from bot.clock import utcnow
    from bot.storage.chat_store import ChatStore
    from bot.storage.stories import sentences_from_json
    from tests.fakes.stories import KERALA, add_story, add_summarized_story

    now = utcnow()
    sid = add_summarized_story(sqlite_store, now)
    members = {m.id: m for m in sqlite_store.story_members(sid)}
    (cand,) = [c for c in ChatStore(sqlite_store.engine).candidate_stories(now - timedelta(hours=1), now)
               if c.id == sid]
    assert len(cand.sentences) >= 2 and cand.summary == " ".join(s.text for s in cand.sentences)
    for s in cand.sentences:
        # The recorded source is the member whose text holds the sentence verbatim: outlet and link are its own.
        m = members[s.article_id]
        assert s.text in m.text and s.outlet == m.outlet and s.url == m.url
    assert {s.outlet for s in cand.sentences} == {o for o, _, _ in KERALA}
    # A story summarized before sources were kept (NULL), or with a malformed value, has none: no marks.
    old = add_story(sqlite_store, title="Old", summary="An old summary.", at=now, outlets=[])
    (c_old,) = [c for c in ChatStore(sqlite_store.engine).candidate_stories(now - timedelta(hours=1), now)
                if c.id == old]
    assert c_old.sentences == () and c_old.summary == "An old summary."
    assert sentences_from_json([{"text": 3}]) == () and sentences_from_json({"text": "x"}) == ()

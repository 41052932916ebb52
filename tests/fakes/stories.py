"""Insert feeds, stories and member articles directly, as the story stage would (for chat-layer tests)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, update

from bot.storage.store import Store
from bot.storage.tables import articles, feeds, stories


def add_outlet(store: Store, name: str, now: datetime) -> int:
    """A feed row standing for one outlet; returns its id."""
    with store.engine.begin() as conn:
        return conn.execute(insert(feeds).values(
            url=f"https://{name.lower().replace(' ', '')}.example/rss", name=name, tags=[], interval_s=900,
            enabled=True, all_world=False, date_fallback=False, state_media=False, origin="file", removed=False,
            error_count=0, created_at=now, updated_at=now)).inserted_primary_key[0]


def add_story(store: Store, *, title: str, summary: str, at: datetime, outlets: list[int], version: int = 1,
              topic_score: float = 0.9, topics: Any = None) -> int:
    """A story with one member article per outlet feed id; returns the story id."""
    with store.engine.begin() as conn:
        sid = conn.execute(insert(stories).values(
            title=title, summary=summary, created_at=at, updated_at=at, version=version, major_update_at=at,
            article_count=len(outlets), outlet_count=len(set(outlets)), topic_score=topic_score,
            topics=topics if topics is not None else {"geopolitics": 1.0, "world": 1.0},
        )).inserted_primary_key[0]
        for i, feed_id in enumerate(outlets):
            key = hashlib.sha1(f"{sid}-{i}-{feed_id}".encode()).hexdigest()
            conn.execute(insert(articles).values(
                feed_id=feed_id, key=key, url=f"https://news{feed_id}.example/{sid}/{i}?a=1&b=<2>",
                canonical_url=None, title=title, teaser="", text="", text_source="feed", content_hash=key,
                published_at=at + timedelta(minutes=i), fetched_at=at + timedelta(minutes=i), extract_attempts=0,
                story_id=sid, story_reason="new" if i == 0 else "same_story", story_score=None if i == 0 else 1.0))
    return sid


def bump_story(store: Store, story_id: int, at: datetime, summary: str) -> None:
    """A substantial update: version + 1, new summary, new major_update_at."""
    with store.engine.begin() as conn:
        conn.execute(update(stories).where(stories.c.id == story_id).values(
            version=stories.c.version + 1, summary=summary, major_update_at=at, updated_at=at))


def seed(store: Store, now: datetime, n: int = 5, summary_chars: int = 300) -> list[int]:
    """n stories over the last hours, with 1..4 outlets each; returns their ids."""
    outlets = [add_outlet(store, name, now) for name in ("Reuters", "BBC <World>", "Al Jazeera", "DW & Co")]
    ids = []
    for i in range(n):
        body = (f"Story {i} summary: talks & <tensions> continue. " * 40)[:summary_chars]
        ids.append(add_story(store, title=f"Story {i}: leaders meet <again> & talk", summary=body,
                             at=now - timedelta(hours=i + 1), outlets=outlets[: 1 + i % 4]))
    return ids


KERALA = (("Reuters", "Floods hit Kerala",
           "Rivers burst their banks across Kerala on Monday, flooding hundreds of villages. Rescue teams used "
           "boats to reach stranded families."),
          ("BBC <World>", "Kerala floods kill 40",
           "Officials said at least 40 people died in the floods. The state government announced compensation "
           "for the families of the victims. Rain is expected to continue for three more days."))


def add_summarized_story(store: Store, now: datetime, reports: tuple[tuple[str, str, str], ...] = KERALA) -> int:
    """A story whose members (one per outlet, arriving a few minutes apart) are summarized by the real
    summarizer, as the processing stage does; returns the story id."""
    from bot.models import FeedSpec, NewArticle
    from bot.summaries import summarize_stories
    from summarizer import Summarizer

    sid = store.create_story(title=reports[0][1], now=now, topic_score=0.9, topics={"world": 1.0}, state=b"")
    for k, (outlet, title, text) in enumerate(reports):
        feed, _ = store.add_feed(FeedSpec(url=f"https://feed{k}.example/rss", name=outlet), "cli")
        at = now - timedelta(minutes=30) + timedelta(minutes=10 * k)
        (aid,) = store.insert_articles(feed.id, [NewArticle(
            key=f"kerala{k}", url=f"https://outlet{k}.example/kerala?a={k}&b=<x>", canonical_url=None, title=title,
            teaser="", text=text, text_source="feed", content_hash=f"kerala{k}", published_at=at)], at)
        store.save_article_outcome(aid, topic_score=0.9, topics={"world": 1.0}, story_id=sid,
                                   reason="new" if k == 0 else "same_story", now=at,
                                   story_score=None if k == 0 else 0.9)
    store.refresh_story_counts([sid])
    assert summarize_stories(store, Summarizer(), [sid]) == 1
    return sid


def add_report(store: Store, story_id: int, k: int, report: tuple[str, str, str], at: datetime) -> None:
    """One more outlet's report joins a story, as the story stage places it after a major update (version + 1),
    and the story is summarized again; `k` numbers the outlet (its feed and link)."""
    from bot.models import FeedSpec, NewArticle
    from bot.summaries import summarize_stories
    from summarizer import Summarizer

    outlet, title, text = report
    feed, _ = store.add_feed(FeedSpec(url=f"https://feed{k}.example/rss", name=outlet), "cli")
    (aid,) = store.insert_articles(feed.id, [NewArticle(
        key=f"report{story_id}-{k}", url=f"https://outlet{k}.example/report?a={k}&b=<x>", canonical_url=None,
        title=title, teaser="", text=text, text_source="feed", content_hash=f"report{story_id}-{k}",
        published_at=at)], at)
    store.save_article_outcome(aid, topic_score=0.9, topics={"world": 1.0}, story_id=story_id, reason="same_story",
                               now=at, story_score=0.9)
    store.update_story(story_id, now=at, state=b"", topic_score=0.9, topics={"world": 1.0}, major=True)
    store.refresh_story_counts([story_id])
    assert summarize_stories(store, Summarizer(), [story_id]) == 1

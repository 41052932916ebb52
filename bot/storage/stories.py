"""Story storage: stories as the story stage merges them, their members and summaries, and the candidates a
digest picks from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from bot.pipeline.digest import OutletLink, SourcedSentence, StoryCandidate
from bot.storage.db import Database
from bot.storage.feeds import feed_label_columns, outlet_name, row_outlet
from bot.storage.tables import articles, feeds, stories

MAX_CANDIDATES = 1000
MAX_LINKS_PER_STORY = 12
MAX_SOURCED_SENTENCES = 20


@dataclass(frozen=True)
class StoryRow:
    """A story as stored."""

    id: int
    title: str
    created_at: datetime
    updated_at: datetime
    version: int
    major_update_at: datetime
    article_count: int
    outlet_count: int
    topic_score: float
    topics: dict[str, float] | None
    state: bytes | None
    summary: str | None
    summary_method: str | None
    summary_sources: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class StoryMember:
    """One article of a story, with its outlet and how surely it belongs there."""

    id: int
    title: str
    text: str
    url: str | None
    canonical_url: str | None
    published_at: datetime | None
    fetched_at: datetime
    feed_id: int | None
    story_reason: str | None
    story_score: float | None
    outlet: str


@dataclass(frozen=True)
class StoryMemberView:
    """One member of a story as `/story` shows it: outlet, link, headline, when it arrived."""

    outlet: str
    url: str | None
    title: str
    arrived_at: datetime
    published_at: datetime | None
    core: bool


@dataclass(frozen=True)
class StoryDetails:
    """A story for `/story`: headline, summary, version, and every member in order of arrival."""

    id: int
    title: str
    summary: str
    version: int
    created_at: datetime
    major_update_at: datetime
    outlet_count: int
    members: tuple[StoryMemberView, ...]


def sentences_to_json(sentences: Sequence[SourcedSentence]) -> list[dict[str, Any]]:
    """The stored form of a summary's sourced sentences."""
    return [{"text": s.text, "article_id": s.article_id, "outlet": s.outlet, "url": s.url}
            for s in sentences[:MAX_SOURCED_SENTENCES]]


def sentences_from_json(raw: Any) -> tuple[SourcedSentence, ...]:
    """Sourced sentences from the stored form; () for NULL or anything malformed (old rows show no marks)."""
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw[:MAX_SOURCED_SENTENCES]:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            return ()
        aid = item.get("article_id")
        out.append(SourcedSentence(text=item["text"], outlet=str(item.get("outlet") or ""),
                                   url=str(item.get("url") or ""), article_id=aid if isinstance(aid, int) else None))
    return tuple(out)


def _topic_names(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, dict):
        return tuple(k for k, v in raw.items() if v)
    if isinstance(raw, list | tuple):
        return tuple(str(t) for t in raw)
    return ()


def _topic_scores(raw: Any) -> dict[str, float]:
    if isinstance(raw, dict):
        return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}
    return {}


class StoryStorage(Database):
    """Stories: created and updated as articles join them, recounted, summarized."""

    def create_story(self, *, title: str, now: datetime, topic_score: float, topics: dict[str, float],
                     state: bytes) -> int:
        """A new story; returns its id."""
        with self.write() as conn:
            story_id: int = conn.execute(insert(stories).values(
                title=title, created_at=now, updated_at=now, major_update_at=now, version=1, article_count=0,
                outlet_count=0, topic_score=topic_score, topics=topics, state=state).returning(stories.c.id)
            ).scalar_one()
        return story_id

    def update_story(self, story_id: int, *, now: datetime, state: bytes, topic_score: float,
                     topics: dict[str, float], major: bool) -> None:
        """Store a story's new state after an article joined it; a major update bumps its version.

        Its summary is marked out of date (summary_method NULL) until set_story_summary writes the new one."""
        values: dict[str, Any] = dict(updated_at=now, state=state, topic_score=topic_score, topics=topics,
                                      summary_method=None)
        if major:
            values.update(version=stories.c.version + 1, major_update_at=now)
        with self.write() as conn:
            conn.execute(update(stories).where(stories.c.id == story_id).values(**values))

    def refresh_story_counts(self, story_ids: Iterable[int]) -> None:
        """Recount member articles and the distinct outlets among core members (those that surely belong, by
        `story.is_core_member`): a weak, possibly wrong join must not raise a story's rank."""
        # Imported here: story.py pulls numpy and scikit-learn, which the feed commands never need.
        from bot.pipeline.story import is_core_member

        with self.write() as conn:
            for sid in set(story_ids):
                rows = conn.execute(select(articles.c.feed_id, articles.c.story_reason, articles.c.story_score)
                                    .where(articles.c.story_id == sid)).all()
                core = {r.feed_id for r in rows if is_core_member(r.story_reason, r.story_score)}
                conn.execute(update(stories).where(stories.c.id == sid).values(
                    article_count=len(rows), outlet_count=max(len(core), 1)))

    def story_states(self, since: datetime) -> list[tuple[int, bytes]]:
        """(id, state) of stories updated since a time: the window the same-story index covers."""
        with self.read() as conn:
            return [(r.id, r.state) for r in conn.execute(
                select(stories.c.id, stories.c.state).where(stories.c.updated_at >= since,
                                                            stories.c.state.is_not(None)))]

    def story_members(self, story_id: int) -> list[StoryMember]:
        """A story's articles with outlet, link, times, text and how they joined, earliest published first
        (the order the digest's links use, so the first core member is the story's lead everywhere)."""
        q = (select(articles.c.id, articles.c.title, articles.c.text, articles.c.url, articles.c.canonical_url,
                    articles.c.published_at, articles.c.fetched_at, articles.c.feed_id, articles.c.story_reason,
                    articles.c.story_score, *feed_label_columns())
             .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
             .where(articles.c.story_id == story_id)
             .order_by(func.coalesce(articles.c.published_at, articles.c.fetched_at), articles.c.id))
        with self.read() as conn:
            return [StoryMember(id=r.id, title=r.title, text=r.text, url=r.url, canonical_url=r.canonical_url,
                                published_at=r.published_at, fetched_at=r.fetched_at, feed_id=r.feed_id,
                                story_reason=r.story_reason, story_score=r.story_score, outlet=row_outlet(r._mapping))
                    for r in conn.execute(q)]

    def set_story_summary(self, story_id: int, *, title: str, summary: str, method: str,
                          sentences: Sequence[SourcedSentence] | None = None,
                          members: Iterable[int] | None = None) -> bool:
        """Store a story's headline and summary, and its sentences with their sources when known.

        With `members` (the article ids the summary was made from), only while the story still has exactly
        those members: a summary made before an article joined is stale, and the summary of the newer version
        (queued when it joined) must not be overwritten by it. Returns whether it was written."""
        sources = sentences_to_json(sentences) if sentences else None
        with self.write() as conn:
            if members is not None:
                # The story row's lock orders this check-and-write against an article joining (its foreign key
                # check takes a share lock on the row); SQLite's write transaction is already exclusive.
                if conn.execute(select(stories.c.id).where(stories.c.id == story_id).with_for_update()).first() \
                        is None:
                    return False
                now_members = set(conn.execute(select(articles.c.id).where(articles.c.story_id == story_id))
                                  .scalars())
                if now_members != set(members):
                    return False
            return bool(conn.execute(update(stories).where(stories.c.id == story_id).values(
                title=title, summary=summary, summary_method=method, summary_sources=sources)).rowcount)

    def stories_without_summary(self, since: datetime) -> list[int]:
        """Stories updated since a time whose summary is missing or out of date (a crash or an error came
        between their last change and its summary)."""
        with self.read() as conn:
            return list(conn.execute(select(stories.c.id).where(
                stories.c.updated_at >= since, stories.c.summary_method.is_(None)).order_by(stories.c.id)).scalars())

    def get_story(self, story_id: int) -> StoryRow | None:
        """One story row."""
        with self.read() as conn:
            row = conn.execute(select(stories).where(stories.c.id == story_id)).first()
        return StoryRow(**row._mapping) if row else None


class StoryCandidateStorage(Database):
    """The stories a digest picks from (read only)."""

    def candidate_stories(self, since: datetime, until: datetime, limit: int = MAX_CANDIDATES
                          ) -> list[StoryCandidate]:
        """Stories with a major update in (since, until], with one link per member article (earliest first)."""
        q = (select(stories).where(stories.c.major_update_at > since, stories.c.major_update_at <= until)
             .order_by(stories.c.outlet_count.desc(), stories.c.major_update_at.desc()).limit(limit))
        with self.read() as conn:
            rows = conn.execute(q).all()
            ids = [r.id for r in rows]
            links: dict[int, list[OutletLink]] = {i: [] for i in ids}
            if ids:
                # Imported here: story.py pulls numpy and scikit-learn, which most chat-store users never need.
                from bot.pipeline.story import is_core_member

                lq = (select(articles.c.story_id, articles.c.url, articles.c.canonical_url, articles.c.title,
                             articles.c.story_reason, articles.c.story_score, feeds.c.id.label("feed_id"),
                             feeds.c.name, feeds.c.title.label("feed_title"), feeds.c.url.label("feed_url"))
                      .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
                      .where(articles.c.story_id.in_(ids))
                      # The order of StoryStorage.story_members: the first core member is the lead everywhere.
                      .order_by(articles.c.story_id, func.coalesce(articles.c.published_at, articles.c.fetched_at),
                                articles.c.id))
                for r in conn.execute(lq):
                    url = r.url or r.canonical_url
                    got = links[r.story_id]
                    core = is_core_member(r.story_reason, r.story_score)
                    # Weak members travel too (the digest stage drops them) but never crowd out core ones.
                    if url and sum(lk.core for lk in got) < MAX_LINKS_PER_STORY and len(got) < 4 * MAX_LINKS_PER_STORY:
                        outlet = outlet_name(r.name, r.feed_title, r.feed_url) if r.feed_id is not None else ""
                        got.append(OutletLink(outlet=outlet, url=url, title=r.title or "", core=core))
        return [StoryCandidate(id=r.id, version=r.version, title=r.title or "", summary=r.summary or "",
                               major_update_at=r.major_update_at, outlet_count=r.outlet_count,
                               article_count=r.article_count, topic_score=r.topic_score or 0.0,
                               topics=_topic_names(r.topics), links=tuple(links[r.id]),
                               topic_scores=_topic_scores(r.topics),
                               sentences=sentences_from_json(r.summary_sources)) for r in rows]

    def story_details(self, story_id: int, limit: int = 100) -> StoryDetails | None:
        """One story with its members in order of arrival (at most `limit`), for `/story`; None when unknown."""
        from bot.pipeline.story import is_core_member  # numpy and scikit-learn: only when asked

        mq = (select(articles.c.url, articles.c.canonical_url, articles.c.title, articles.c.fetched_at,
                     articles.c.published_at, articles.c.story_reason, articles.c.story_score,
                     feeds.c.id.label("feed_id"), feeds.c.name, feeds.c.title.label("feed_title"),
                     feeds.c.url.label("feed_url"))
              .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
              .where(articles.c.story_id == story_id).order_by(articles.c.fetched_at, articles.c.id).limit(limit))
        with self.read() as conn:
            row = conn.execute(select(stories.c.id, stories.c.title, stories.c.summary, stories.c.version,
                                      stories.c.created_at, stories.c.major_update_at, stories.c.outlet_count)
                               .where(stories.c.id == story_id)).first()
            if row is None:
                return None
            members = tuple(StoryMemberView(
                outlet=outlet_name(r.name, r.feed_title, r.feed_url) if r.feed_id is not None else "",
                url=r.url or r.canonical_url, title=r.title or "", arrived_at=r.fetched_at,
                published_at=r.published_at, core=is_core_member(r.story_reason, r.story_score))
                for r in conn.execute(mq))
        return StoryDetails(id=row.id, title=row.title or "", summary=row.summary or "", version=row.version,
                            created_at=row.created_at, major_update_at=row.major_update_at,
                            outlet_count=row.outlet_count, members=members)


__all__ = ["MAX_CANDIDATES", "MAX_LINKS_PER_STORY", "StoryCandidateStorage", "StoryDetails", "StoryMember",
           "StoryMemberView", "StoryRow", "StoryStorage", "sentences_from_json", "sentences_to_json"]

"""DigestBuilder: the one place a digest is assembled from stored stories, for every path that makes one.

The scheduler (bot.chat.runtime), `/summary` (bot.chat.commands) and `newsdigest digest` (bot.chat.digest_cli)
all come here: the window (digest_since), the candidate stories of that window, the chat's choices (or the
feeds file's defaults) and, for a scheduled digest only, the story versions the chat already got.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from bot.pipeline.digest import Digest, StoryCandidate, build_digest, digest_since
from bot.pipeline.followups import SentStory
from bot.ports import StoryCandidates
from bot.settings import DigestDefaults
from bot.storage.chats import Subscription


class DigestStore(StoryCandidates, Protocol):
    """What a digest reads: the window's candidate stories and what a subscription was already sent."""

    def sent_stories(self, sub_id: int, story_ids: Sequence[int]) -> dict[int, SentStory]: ...


class DigestBuilder:
    """Builds digests over a store with the feeds file's defaults (a chat's own choices win over them)."""

    def __init__(self, stories: DigestStore, defaults: DigestDefaults, *,
                 min_topic_score: float | None = None) -> None:
        self.stories = stories
        self.defaults = defaults
        # The runtime's config may override the feeds file's threshold (tests and the bench do).
        self.min_topic_score = defaults.min_topic_score if min_topic_score is None else min_topic_score

    def scheduled(self, sub: Subscription, now: datetime,
                  cache: dict[datetime, list[StoryCandidate]] | None = None) -> Digest:
        """A subscription's scheduled digest: since its last one (capped by its schedule), without the story
        versions it already got (an update of one comes again when it is news to the chat, as a reply to the
        message it got it in). `cache` shares one window's candidates between chats in one pass."""
        since = digest_since(now, sub.last_digest_at, sub.schedule)
        candidates = self._candidates(since, now, cache)
        sent = self.stories.sent_stories(sub.id, [c.id for c in candidates])
        return self._build(candidates, now, since, sub, sent)

    def on_request(self, now: datetime, sub: Subscription | None = None,
                   period: timedelta | None = None) -> Digest:
        """A digest asked for now (`/summary`, `newsdigest digest`): the last `period`, else since the chat's
        last digest (at most 24 h); stories already sent are shown again."""
        since = digest_since(now, sub.last_digest_at if sub else None, None, period)
        return self._build(self._candidates(since, now, None), now, since, sub, None)

    def _candidates(self, since: datetime, now: datetime,
                    cache: dict[datetime, list[StoryCandidate]] | None) -> list[StoryCandidate]:
        if cache is None:
            return self.stories.candidate_stories(since, now)
        if since not in cache:
            cache[since] = self.stories.candidate_stories(since, now)
        return cache[since]

    def _build(self, candidates: Sequence[StoryCandidate], now: datetime, since: datetime,
               sub: Subscription | None, sent: Mapping[int, SentStory] | None) -> Digest:
        return build_digest(candidates, now=now, since=since,
                            max_stories=sub.max_stories if sub else self.defaults.max_stories,
                            topics=sub.topics if sub else self.defaults.topics,
                            min_topic_score=self.min_topic_score, sent=sent,
                            filters=sub.filters if sub else None)

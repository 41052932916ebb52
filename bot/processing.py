"""After storage: score topics, merge the same story across outlets, summarize stories (one idempotent step).

    unprocessed articles ─▶ topic scores ─▶ same-story decision (index of recent stories) ─▶ story rows
        ─▶ summaries of the stories that changed

`process()` takes the oldest unprocessed articles in batches; every article is marked processed with its outcome
in the same write, so a crash or a rerun never processes an article twice. The same-story index is rebuilt from
the database at start, so a restart loses nothing. On PostgreSQL an advisory lock lets only one worker process
at a time (story assignment must see the previous article's story); with several workers placing in turns,
each turn starts by loading the stories the others created or joined since its last one (`others_place`).

The embeddings are the costly part and need no story: `prepare()` computes an article's topic scores and story
features (`Prepared`) on its own. Scale-out workers run it in parallel ahead of placement and store the result
in `articles.prepared` (bot/distributed/tasks.py, queue "embed"); placement then reads it instead of embedding
under the lock. An article with nothing stored (the single process, always) is prepared at placement, in the
same batch as before, so both paths decide on the same features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from bot import metrics
from bot.clock import utcnow
from bot.errors import ConfigError
from bot.pipeline import story as story_stage
from bot.pipeline import topic as topic_stage
from bot.ports import ProcessingStore
from bot.settings import FeedsFile, Settings
from bot.storage.articles import UnprocessedArticle
from bot.summaries import StoreSummaryCache, summarize_stories
from summarizer import Summarizer

log = logging.getLogger("newsdigest.processing")

STORY_WINDOW = story_stage.DEFAULT_WINDOW
BATCH = 128
PREPARED_VERSION = 1
# Scale-out: at each turn a placer reloads the stories changed since its last turn, looking this much further
# back for the clocks of other machines.
CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True)
class Prepared:
    """What placement needs of one article that no story changes: its topic scores (before the feed's all-world
    override) and, for an article relevant when prepared, its same-story features."""

    topics: dict[str, float]
    features: story_stage.StoryFeatures | None

    def to_bytes(self, fingerprint: str) -> bytes:
        """For `articles.prepared`; `fingerprint` names the inputs it was computed from (`Processor.fingerprint`)."""
        doc = {"v": PREPARED_VERSION, "fp": fingerprint, "topics": self.topics,
               "features": self.features.to_doc() if self.features is not None else None}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, fingerprint: str) -> Prepared | None:
        """The stored value, or None when it is unreadable or was computed from other inputs (then placement
        computes it again)."""
        try:
            doc = json.loads(data)
            if doc.get("v") != PREPARED_VERSION or doc.get("fp") != fingerprint:
                return None
            features = doc.get("features")
            return cls(topics={str(k): float(v) for k, v in doc["topics"].items()},
                       features=story_stage.StoryFeatures.from_doc(features) if features else None)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # JSON errors are ValueErrors
            log.warning("unreadable prepared features (%s); computed again", exc)
            return None


class Processor:
    """Runs topic, story and summary stages over stored articles."""

    def __init__(self, store: ProcessingStore, classifier: topic_stage.TopicClassifier,
                 encode: Callable[[list[str]], np.ndarray], summarizer: Summarizer, *,
                 min_topic_score: float = 0.5, window: timedelta = STORY_WINDOW) -> None:
        self.store = store
        self.classifier = classifier
        self.encode = encode
        self.summarizer = summarizer
        self.min_topic_score = min_topic_score
        self.window = window
        self._lock = threading.Lock()
        self.index: story_stage.StoryIndex | None = None
        # Stories may be owed a summary: at start (a killed process never wrote them) and after a batch whose
        # summaries failed. Article outcomes are committed before their stories are summarized.
        self._summaries_owed = True
        # What happens to the stories a batch touched: summarized here, or (scale-out) one task each on the
        # summaries queue (bot/distributed/tasks.py). Returns how many were summarized now.
        self.summarize_touched: Callable[[Sequence[int]], int] = \
            lambda ids: summarize_stories(self.store, self.summarizer, ids)
        # Scale-out: how long placement waits for an article's features from the embed queue before computing
        # them itself (a lost or failing embed task then costs this delay, never the article). None: never
        # waits (the single process, which prepares nothing ahead).
        self.await_prepared_s: float | None = None
        self._waiting_since: dict[int, float] = {}
        # Scale-out: other processes place too (in turns, under the lock), so each turn starts by loading the
        # stories they changed; `_held` is what this index holds of each recently changed story (a digest of
        # its stored state), so that a story is loaded again only when someone else changed it.
        self.others_place = False
        self._turn_ended: datetime | None = None
        self._held: dict[int, tuple[bytes, datetime]] = {}
        self._topic_fingerprint = hashlib.sha256(json.dumps(
            [classifier.names, [[t.name, t.description, list(t.examples), list(t.keywords)]
                                for t in getattr(classifier, "topics", [])]]).encode()).hexdigest()

    @classmethod
    def build(cls, store: ProcessingStore, settings: Settings, feeds_file: FeedsFile) -> Processor:
        """Load the shared encoder once and build every stage on it; rebuild the story index from the database."""
        from summarizer import Summarizer
        from summarizer.embedding import Embedder

        # fp32 whatever the summarizer precision: topic and same-story thresholds were chosen on fp32 vectors.
        embedder = Embedder()
        topics = [topic_stage.TopicSpec(name=t.name, description=t.description, examples=t.examples,
                                        keywords=t.keywords) for t in feeds_file.topics]
        summarizer = Summarizer(model=settings.summarizer_model, precision=settings.summarizer_precision,
                                cache=StoreSummaryCache(store), embedder=embedder)
        try:
            head = topic_stage.load_head(settings.topic_head_dir)
            geo_head = topic_stage.load_geo_head(settings.topic_head_dir, settings.geo_encoder)
        except (OSError, ValueError) as exc:
            raise ConfigError("NEWSDIGEST_TOPIC_HEAD_DIR", "NEWSDIGEST_TOPIC_HEAD_DIR",
                              f"cannot load a topic head from {settings.topic_head_dir}: {exc}") from None
        classifier = topic_stage.TopicClassifier(embedder, head=head, topics=topics, geo_head=geo_head)
        return cls(store, classifier, embedder.encode, summarizer, min_topic_score=feeds_file.digest.min_topic_score)

    def _load_index(self) -> story_stage.StoryIndex:
        self._turn_ended = utcnow()
        index = story_stage.StoryIndex(story_stage.StoryParams(window=self.window))
        index.add_stories((sid, story_stage.StoryState.from_bytes(state))
                          for sid, state in self.store.story_states(utcnow() - self.window))
        log.info("same-story index: %d recent stories", len(index))
        return index

    def _load_changes(self, index: story_stage.StoryIndex) -> None:
        """Stories another placer created or joined since this one's last turn, into the index (their writes
        came after this placer released the lock, so they are stamped after its last turn ended)."""
        now = utcnow()
        since = max((self._turn_ended or now) - CLOCK_SKEW, now - self.window)
        changed = []
        for sid, state in self.store.story_states(since):
            digest = hashlib.sha256(state).digest()
            held = self._held.get(sid)
            if held is None or held[0] != digest:
                changed.append((sid, story_stage.StoryState.from_bytes(state)))
                self._held[sid] = (digest, now)
        if changed:
            index.add_stories(changed)
            log.debug("same-story index: %d stories changed by other workers", len(changed))
        self._held = {k: v for k, v in self._held.items() if now - v[1] <= 2 * CLOCK_SKEW}

    def _hold(self, story_id: int, state: bytes, now: datetime) -> None:
        if self.others_place:
            self._held[story_id] = (hashlib.sha256(state).digest(), now)

    def process(self) -> int:
        """Process every unprocessed article; returns the count."""
        done = 0
        with self._lock, self.store.single_writer_lock("processing") as mine:
            if not mine:
                log.debug("another worker is processing; skipping")
                return 0
            if self.index is None:
                self.index = self._load_index()
            elif self.others_place:
                self._load_changes(self.index)
            index = self.index
            index.evict_before(utcnow() - self.window)
            if self._summaries_owed:
                self._summarize_owed()
            while True:
                batch, ready, waiting = self._ready(self.store.unprocessed_articles(BATCH))
                if batch:
                    self._summaries_owed = True
                    m = metrics.current()
                    with metrics.timed(m.processing_seconds):
                        touched = self._process_batch(index, batch, ready)
                        m.articles_processed.inc(len(batch))
                        m.summaries.inc(self.summarize_touched(sorted(touched)))
                    self._summaries_owed = False
                    done += len(batch)
                if waiting or not batch:
                    break  # the embed task that stores the next article's features queues processing again
            self._turn_ended = utcnow()
        if done:
            log.info("processed %d article%s", done, "" if done == 1 else "s")
        return done

    def _summarize_owed(self) -> None:
        """Recount and summarize the stories whose last change has no summary yet (their articles are already
        marked processed, so no batch would touch them again)."""
        owed = self.store.stories_without_summary(utcnow() - self.window)
        for i in range(0, len(owed), BATCH):
            chunk = owed[i:i + BATCH]
            self.store.refresh_story_counts(chunk)
            metrics.current().summaries.inc(self.summarize_touched(chunk))
        if owed:
            log.info("summarized %d stor%s left without a current summary", len(owed),
                     "y" if len(owed) == 1 else "ies")
        self._summaries_owed = False

    def fingerprint(self, a: UnprocessedArticle) -> str:
        """What an article's prepared features were computed from: its text and row fields and the topics
        (a feed renamed or topics edited in between make placement compute them again)."""
        fields = [a.key, a.title, a.text, a.url, a.canonical_url, a.content_hash, a.outlet,
                  (a.published_at or a.fetched_at).isoformat(), self._topic_fingerprint]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()

    def prepare(self, batch: Sequence[UnprocessedArticle]) -> list[Prepared]:
        """Topic scores of every article and story features of the relevant ones, in one embedding batch each;
        needs no story and no lock."""
        scores = self.classifier.score_many([topic_stage.article_text_for_topic(a.title, a.text)
                                             for a in batch])
        relevant = [i for i, (a, sc) in enumerate(zip(batch, scores, strict=True))
                    if self._relevant(topic_stage.with_feed_override(sc, a.all_world))]
        features = self._featurize([batch[i] for i in relevant])
        placed = dict(zip(relevant, features, strict=True))
        return [Prepared(topics=sc, features=placed.get(i)) for i, sc in enumerate(scores)]

    def prepare_bytes(self, batch: Sequence[UnprocessedArticle]) -> dict[int, bytes]:
        """`prepare` as stored in `articles.prepared`, by article id."""
        return {a.id: p.to_bytes(self.fingerprint(a)) for a, p in zip(batch, self.prepare(batch), strict=True)}

    def _relevant(self, topics: dict[str, float]) -> bool:
        return max(topics.values(), default=0.0) >= self.min_topic_score

    def _featurize(self, batch: Sequence[UnprocessedArticle]) -> list[story_stage.StoryFeatures]:
        return story_stage.featurize(
            [dict(key=a.key, title=a.title, text=a.text, published=a.published_at or a.fetched_at,
                  canonical_url=a.canonical_url, content_hash=a.content_hash, outlet=a.outlet, link=a.url)
             for a in batch], self.encode)

    def _ready(self, batch: list[UnprocessedArticle]
               ) -> tuple[list[UnprocessedArticle], list[Prepared | None], bool]:
        """The batch with its stored features; when waiting for them, nothing (and True) while an article's
        features are still being computed elsewhere: placement takes the batch whole, the same oldest articles
        the single process would take (the batch counts in the stream's rate, so a part would decide otherwise)."""
        if self.await_prepared_s is None:
            return batch, [self._stored(a) for a in batch], False
        mono = time.monotonic()
        for a in batch:
            if a.prepared is None:
                since = self._waiting_since.setdefault(a.id, mono)
                if mono - since < self.await_prepared_s:
                    return [], [], True
        for a in batch:
            since = self._waiting_since.pop(a.id, mono)
            if a.prepared is None:
                log.info("article %s: no features from the embed queue after %.0f s; computed here", a.id,
                         mono - since, extra={"article_id": a.id})
        if len(self._waiting_since) > 10 * BATCH:  # articles placed by another worker
            self._waiting_since = {k: t for k, t in self._waiting_since.items()
                                   if mono - t < 2 * self.await_prepared_s}
        return batch, [self._stored(a) for a in batch], False

    def _stored(self, a: UnprocessedArticle) -> Prepared | None:
        return Prepared.from_bytes(a.prepared, self.fingerprint(a)) if a.prepared is not None else None

    def _process_batch(self, index: story_stage.StoryIndex, batch: list[UnprocessedArticle],
                       ready: list[Prepared | None] | None = None) -> set[int]:
        now = utcnow()
        stored: list[Prepared | None] = list(ready) if ready is not None else [None] * len(batch)
        missing = [i for i, p in enumerate(stored) if p is None]
        # The single process has nothing stored: the whole batch is prepared here, as one embedding batch.
        fresh = dict(zip(missing, self.prepare([batch[i] for i in missing]), strict=True)) if missing else {}
        prepared = [p if p is not None else fresh[i] for i, p in enumerate(stored)]
        scores = [topic_stage.with_feed_override(p.topics, a.all_world) for a, p in zip(batch, prepared, strict=True)]
        relevant = [i for i, sc in enumerate(scores) if self._relevant(sc)]
        placed = {i: f for i in relevant if (f := prepared[i].features) is not None}
        unfeatured = [i for i in relevant if i not in placed]  # relevant now, not when prepared (feed changed)
        placed.update(zip(unfeatured, self._featurize([batch[i] for i in unfeatured]), strict=True))
        touched: set[int] = set()
        # Every article of the batch counts in the stream's rate, before it is placed and whether or not it is
        # placed: the first poll of a fresh install is a busy stream, not a sparse one in which closeness in
        # time would say "same story".
        pending = [(a.key, a.published_at or a.fetched_at) for a in batch]
        for i, a in enumerate(batch):
            topics = scores[i]
            best = max(topics.values(), default=0.0)
            story_id = reason = score = None
            if i in placed:
                story_id, decision = self._place(index, a, placed[i], topics, best, now, pending)
                reason, score = decision.reason, decision.score
                touched.add(story_id)
            self.store.save_article_outcome(a.id, topic_score=best, topics=topics, story_id=story_id,
                                            reason=reason, story_score=score, now=now)
        index.note_arrivals(pending)
        self.store.refresh_story_counts(touched)
        return touched

    def _place(self, index: story_stage.StoryIndex, a: UnprocessedArticle, features: story_stage.StoryFeatures,
               topics: dict[str, float], best: float, now: datetime,
               pending: Sequence[tuple[str, datetime | None]] = ()) -> tuple[int, story_stage.Decision]:
        """Put one article in its story (new or existing), store the story and keep the index in step."""
        decision, state = story_stage.place(index, features, now, pending)
        blob = state.to_bytes()
        if decision.story_id is None:
            sid = self.store.create_story(title=a.title, now=now, topic_score=best, topics=topics, state=blob)
            self._hold(sid, blob, now)
            index.add_story(sid, state)
            metrics.current().stories.labels("created").inc()
            log.debug("article %s starts story %s", a.id, sid, extra={"article_id": a.id, "story_id": sid})
            return sid, decision
        sid = decision.story_id
        update = story_stage.is_substantial_update(index.get(sid), features, decision)
        old = self.store.get_story(sid)
        effect = story_stage.join_effect(decision, topics=topics, topic_score=best,
                                         story_topics=(old.topics if old else None) or {},
                                         story_topic_score=(old.topic_score if old else 0) or 0,
                                         substantial=update.substantial, params=index.params)
        self.store.update_story(sid, now=now, state=blob, topic_score=effect.topic_score,
                                topics=effect.topics, major=effect.major)
        self._hold(sid, blob, now)
        index.update_story(sid, state)
        metrics.current().stories.labels("updated").inc()
        log.debug("article %s joins story %s (%s, score %.3f)", a.id, sid, decision.reason, decision.score,
                  extra={"article_id": a.id, "story_id": sid})
        return sid, decision

"""Same-story detection: exact copies, near-identical wire copies, and one event written up by many outlets.

Storage-agnostic and online (one article at a time, as a live bot sees them):

    featurize(...)  ─▶ StoryFeatures (title+lead embedding, salient terms, MinHash, pair-scoring signals)
    index.candidates(features) ─▶ stories worth comparing (exact keys, LSH near-copies, nearest centroids)
    decide(features, candidates, params, model) ─▶ Decision(story_id | None, score, reason)
    new_story / join_story ─▶ StoryState (serializable: the caller persists it, then add_story/update_story)
    is_substantial_update(state, features) ─▶ whether a joining article brings new information

A story's same-story score is the mean of the best pair probabilities of the article against the story's recent
members (bot/pipeline/story_pairs.py: a learned pair model over embeddings, rare names weighted by background
IDF, numbers, dates and time gap): an article must agree with most of a story, not with its centroid, so
stories do not chain into other events. When unsure, it starts a new story. Settings and how they were chosen:
docs/story.md.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from bot.pipeline import story_pairs
from bot.pipeline.story_pairs import ENGLISH_STOP_WORDS, PairScorer, Signals

if TYPE_CHECKING:
    import pysbd
    from usearch.index import Index

Reason = Literal["exact", "near_duplicate", "same_story", "new"]
STATE_VERSION = 2
READABLE_STATE_VERSIONS = (1, 2)  # version 1 members carry no pair signals
DIM = 384
# Pinned so that signatures stored in story states stay comparable across datasketch upgrades.
MINHASH_SCHEME = "affine32"
MINHASH_SEED = 1
MINHASH_DTYPE = np.uint32  # the affine32 scheme's hash values
# Stories take new articles for this long after their last one (the service's and the timed evaluation's).
DEFAULT_WINDOW = timedelta(days=3)
# HNSW settings, measured by bench/bench_story.py: int8 vectors (half the build time of float16 at about the
# same recall), a cheaper build than usearch's default expansion_add of 128 with a wider search to make up for
# it; hits are re-scored exactly against the float32 centroids. 0 threads = all cores for batch adds.
ANN_DTYPE = "i8"
ANN_CONNECTIVITY = 16
ANN_EXPANSION_ADD = 40
ANN_EXPANSION_SEARCH = 128
# Graph search loses recall as the graph grows (measured on 1M synthetic stories: the true nearest story is among
# the 20 hits for 70 / 82 / 89 / 93 % of queries at ef_search 128 / 256 / 512 / 1024): search wider when large.
ANN_LARGE = 300_000
ANN_EXPANSION_SEARCH_LARGE = 512
ANN_THREADS = 0


@dataclass(frozen=True)
class StoryParams:
    """Tunable settings of same-story detection (defaults chosen on ECB+ and AllSides dev, docs/story.md)."""

    join_threshold: float = 0.6
    near_duplicate_jaccard: float = 0.8
    num_perm: int = 128
    shingle_words: int = 3
    lead_sentences: int = 3
    k: int = 20
    window: timedelta | None = None
    ann_min_size: int = 3000
    max_terms: int = 256
    max_tracked_members: int = 64
    update_min_new_terms: int = 2
    # A member that joined with at least this score (or as an exact/near copy, or as the story's first
    # article) is core: digest ranking counts only core members' outlets, and summaries use only them.
    core_threshold: float = 0.7
    # A weaker best score still joins when no other candidate story comes close, for an article with a
    # publication time: with one clear candidate the doubt is whether to join at all, not which story. Without
    # times a lone candidate is too often another stage of the same storyline (docs/story.md, the clear-best rule).
    clear_threshold: float | None = 0.5
    clear_margin: float = 0.4


DEFAULT_PARAMS = StoryParams()


# ---- features ----------------------------------------------------------------------------------------------

# Capitalised words (names, places, organisations) and numbers: a cheap stand-in for named entities that needs
# no NER model; stop words and newsroom shouting ("BREAKING", "JUST IN") are dropped.
_SALIENT = re.compile(r"\b(?:[A-Z][\w'’\-]*\w|[A-Z]|\d[\d,.:]*\d|\d)\b")
_NOISE = frozenset({"breaking", "just", "update", "updated", "live", "watch", "exclusive", "video", "photos",
                    "read", "more", "advertisement", "reuters", "ap", "afp"})
_WORD = re.compile(r"\w+")


def salient_terms(text: str) -> Counter[str]:
    """Counts of capitalised words and numbers in a text, lower-cased, stop words dropped."""
    out: Counter[str] = Counter()
    for m in _SALIENT.finditer(text):
        w = m.group(0).lower().replace("’", "'").strip(".,:")
        if w and w not in ENGLISH_STOP_WORDS and w not in _NOISE:
            out[w] += 1
    return out


_local = threading.local()


def _segmenter() -> pysbd.Segmenter:
    # One per thread: pysbd's Segmenter keeps the text being split on the instance (summarizer/text.py).
    seg: pysbd.Segmenter | None = getattr(_local, "segmenter", None)
    if seg is None:
        import pysbd

        seg = _local.segmenter = pysbd.Segmenter(language="en", clean=False)
    return seg


def sentences(text: str, limit: int | None = None) -> list[str]:
    """Sentences of a text (paragraph breaks always end one), at most `limit` of them."""
    out: list[str] = []
    for para in text.split("\n"):
        para = para.strip()
        if not para:
            continue
        out.extend(s.strip() for s in _segmenter().segment(para) if s.strip())
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out


def lead_text(title: str, text: str, n_sentences: int = 3) -> str:
    """Title plus the first sentences of the text: what the story embedding is computed from."""
    title = " ".join(title.split())
    lead = " ".join(sentences(text, n_sentences))
    if title and not lead.startswith(title):
        return f"{title}. {lead}" if lead else title
    return lead or title


def minhash_of(text: str, num_perm: int = 128, shingle_words: int = 3) -> np.ndarray:
    """MinHash signature (uint32 array) of a text's word shingles, for near-identical copy detection; empty
    for a text without words (it is then nobody's near-duplicate)."""
    words = _WORD.findall(text.lower())
    if not words:
        return np.zeros(0, MINHASH_DTYPE)
    n = shingle_words if len(words) >= shingle_words else max(len(words), 1)
    shingles = {" ".join(words[i:i + n]).encode() for i in range(max(len(words) - n + 1, 1))}
    m = MinHash(num_perm=num_perm, seed=MINHASH_SEED, scheme=MINHASH_SCHEME)
    m.update_batch(list(shingles))
    hashes: np.ndarray = m.hashvalues.astype(MINHASH_DTYPE)  # datasketch is untyped
    return hashes


@dataclass(frozen=True)
class StoryFeatures:
    """What same-story detection needs of one article."""

    key: str
    embedding: np.ndarray
    terms: dict[str, int]
    lead_terms: dict[str, int]
    minhash: np.ndarray
    published: datetime | None = None
    canonical_url: str | None = None
    content_hash: str = ""
    outlet: str = ""
    link: str | None = None
    title: str = ""
    signals: Signals | None = None

    def to_doc(self) -> dict[str, Any]:
        """JSON-ready form that round-trips bit for bit (float32 vectors), so features computed on one machine
        and placed on another decide exactly as if computed where they are placed."""
        def b64(a: np.ndarray, dtype: type) -> str:
            return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode()

        return {"key": self.key, "e": b64(self.embedding, np.float32), "terms": self.terms,
                "lead_terms": self.lead_terms, "mh": b64(self.minhash, MINHASH_DTYPE),
                "pub": self.published.isoformat() if self.published else None, "canonical_url": self.canonical_url,
                "content_hash": self.content_hash, "outlet": self.outlet, "link": self.link, "title": self.title,
                "signals": self.signals.to_doc(exact=True) if self.signals is not None else None}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> StoryFeatures:
        """Inverse of `to_doc`; raises ValueError on a document it cannot read."""
        try:
            embedding = np.frombuffer(base64.b64decode(doc["e"]), dtype=np.float32).copy()
            if embedding.shape != (DIM,):
                raise ValueError("story features embedding has the wrong shape")
            return cls(key=str(doc["key"]), embedding=embedding,
                       terms={str(k): int(v) for k, v in doc["terms"].items()},
                       lead_terms={str(k): int(v) for k, v in doc["lead_terms"].items()},
                       minhash=np.frombuffer(base64.b64decode(doc["mh"]), dtype=MINHASH_DTYPE).copy(),
                       published=datetime.fromisoformat(doc["pub"]) if doc.get("pub") else None,
                       canonical_url=doc.get("canonical_url"), content_hash=doc.get("content_hash") or "",
                       outlet=doc.get("outlet") or "", link=doc.get("link"), title=doc.get("title") or "",
                       signals=Signals.from_doc(doc["signals"]) if doc.get("signals") else None)
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # JSON, base64, buffer errors too
            raise ValueError(f"unreadable story features: {e}") from e


def headline_of(title: str, text: str) -> str:
    """The article's title, or its first sentence when it has none."""
    title = " ".join(title.split())
    if title:
        return title
    first = sentences(text, 1)
    return first[0] if first else ""


def featurize(articles: Sequence[Mapping[str, Any]], encode: Callable[[list[str]], np.ndarray],
              params: StoryParams = DEFAULT_PARAMS, idf: story_pairs.Idf | None = None) -> list[StoryFeatures]:
    """Features of articles given as dicts with `key`, `title`, `text` and optionally `published`,
    `canonical_url`, `content_hash`, `outlet`, `link`; `encode` is e.g. `Embedder().encode` (unit vectors).
    Leads and headlines are embedded in one batch."""
    leads = [lead_text(a.get("title") or "", a.get("text") or "", params.lead_sentences) for a in articles]
    heads = [headline_of(a.get("title") or "", a.get("text") or "") for a in articles]
    vecs = encode(leads + heads) if leads else np.zeros((0, DIM), np.float32)
    out = []
    for a, lead, vec, tvec in zip(articles, leads, vecs[:len(leads)], vecs[len(leads):], strict=True):
        title, text = a.get("title") or "", a.get("text") or ""
        body = f"{title}\n{text}" if title and not text.startswith(title) else text or title
        terms, lead_terms = dict(salient_terms(body)), dict(salient_terms(lead))
        minhash = minhash_of(body, params.num_perm, params.shingle_words)
        key = str(a["key"])
        signals = story_pairs.text_signals(
            key=key, title=title, lead=lead, body=text or title, names=terms, lead_names=lead_terms,
            embedding=vec, title_embedding=tvec, minhash=minhash, published=a.get("published"), idf=idf)
        out.append(StoryFeatures(
            key=key, embedding=np.asarray(vec, dtype=np.float32), terms=terms, lead_terms=lead_terms,
            minhash=minhash, published=a.get("published"), canonical_url=a.get("canonical_url"),
            content_hash=a.get("content_hash") or "", outlet=a.get("outlet") or "", link=a.get("link"),
            title=title, signals=signals))
    return out


# ---- story state -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoryMember:
    """One article of a story."""

    key: str
    outlet: str = ""
    link: str | None = None
    canonical_url: str | None = None
    content_hash: str = ""
    first_seen: datetime | None = None
    minhash: np.ndarray | None = None
    signals: Signals | None = None


@dataclass
class StoryState:
    """Everything the index needs about one story; persist with `to_bytes`, rebuild with `from_bytes`."""

    centroid: np.ndarray
    n_members: int
    terms: dict[str, int]
    first_seen: datetime | None = None
    last_updated: datetime | None = None
    members: list[StoryMember] = field(default_factory=list)

    @property
    def unit_centroid(self) -> np.ndarray:
        """The centroid scaled to unit length (cosine against it is a dot product)."""
        n = float(np.linalg.norm(self.centroid))
        return (self.centroid / n).astype(np.float32) if n else self.centroid.astype(np.float32)

    def to_bytes(self) -> bytes:
        """Compact JSON (arrays base64) for a database column."""
        def b64(a: np.ndarray | None) -> str | None:
            return None if a is None else base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()

        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        members = [{"key": m.key, "outlet": m.outlet, "link": m.link, "canonical_url": m.canonical_url,
                    "content_hash": m.content_hash, "first_seen": iso(m.first_seen),
                    "minhash": b64(m.minhash),
                    **({"signals": m.signals.to_doc()} if m.signals is not None else {})} for m in self.members]
        doc = {"v": STATE_VERSION, "centroid": b64(self.centroid.astype(np.float32)), "n": self.n_members,
               "terms": self.terms, "first_seen": iso(self.first_seen),
               "last_updated": iso(self.last_updated), "members": members}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> StoryState:
        """Inverse of `to_bytes`; raises ValueError on a state this version cannot read."""
        try:
            doc = json.loads(data)
            if doc.get("v") not in READABLE_STATE_VERSIONS:
                raise ValueError(f"unsupported story state version {doc.get('v')!r}")

            def arr(s: str | None, dtype: type) -> np.ndarray | None:
                return None if s is None else np.frombuffer(base64.b64decode(s), dtype=dtype).copy()

            def dt(s: str | None) -> datetime | None:
                return datetime.fromisoformat(s) if s else None

            centroid = arr(doc["centroid"], np.float32)
            if centroid is None or centroid.shape != (DIM,):
                raise ValueError("story state centroid has the wrong shape")
            members = [StoryMember(key=m["key"], outlet=m.get("outlet", ""), link=m.get("link"),
                                   canonical_url=m.get("canonical_url"),
                                   content_hash=m.get("content_hash", ""), first_seen=dt(m.get("first_seen")),
                                   minhash=arr(m.get("minhash"), MINHASH_DTYPE),
                                   signals=Signals.from_doc(m["signals"]) if m.get("signals") else None)
                       for m in doc.get("members", [])]
            return cls(centroid=centroid, n_members=int(doc["n"]), terms={str(k): int(v) for k, v in
                                                                          doc["terms"].items()},
                       first_seen=dt(doc.get("first_seen")), last_updated=dt(doc.get("last_updated")),
                       members=members)
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # JSON, base64, buffer errors too
            raise ValueError(f"unreadable story state: {e}") from e


def _member(f: StoryFeatures, now: datetime | None) -> StoryMember:
    return StoryMember(key=f.key, outlet=f.outlet, link=f.link, canonical_url=f.canonical_url,
                       content_hash=f.content_hash, first_seen=now or f.published, minhash=f.minhash,
                       signals=f.signals)


def _bound_signals(members: list[StoryMember]) -> list[StoryMember]:
    """Only the most recent MAX_SCORED_MEMBERS members keep their pair signals (the state stays small)."""
    keep = story_pairs.MAX_SCORED_MEMBERS
    with_signals = [i for i, m in enumerate(members) if m.signals is not None]
    drop = set(with_signals[:-keep]) if len(with_signals) > keep else set()
    return [replace(m, signals=None) if i in drop else m for i, m in enumerate(members)]


def new_story(features: StoryFeatures, now: datetime | None = None) -> StoryState:
    """The state of a story that starts with this article."""
    seen = now or features.published
    return StoryState(centroid=features.embedding.astype(np.float32).copy(), n_members=1,
                      terms=dict(features.terms), first_seen=seen, last_updated=seen,
                      members=[_member(features, now)])


def join_story(state: StoryState, features: StoryFeatures, now: datetime | None = None,
               params: StoryParams = DEFAULT_PARAMS) -> StoryState:
    """A new state with the article added (the old one is unchanged); terms and tracked members are capped."""
    terms = Counter(state.terms)
    terms.update(features.terms)
    seen = now or features.published
    last = max((d for d in (state.last_updated, seen) if d is not None), default=None)
    members = _bound_signals([*state.members, _member(features, now)][-params.max_tracked_members:])
    return StoryState(centroid=(state.centroid + features.embedding).astype(np.float32),
                      n_members=state.n_members + 1, terms=dict(terms.most_common(params.max_terms)),
                      first_seen=state.first_seen or seen, last_updated=last, members=members)


# ---- decisions ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """A stored story worth comparing to a new article, with how it was found."""

    story_id: int
    state: StoryState
    cosine: float
    exact: bool = False
    jaccard: float = 0.0


@dataclass(frozen=True)
class Decision:
    """Which story an article belongs to (None: a new one), the score and why."""

    story_id: int | None
    score: float
    reason: Reason


def story_scores(features: StoryFeatures, candidates: Sequence[Candidate],
                 model: PairScorer | None = None, stream_rate: float | None = None) -> list[float]:
    """Same-story score of the article against each candidate story: its pair probabilities against the
    story's scored members from other outlets (one batch for all candidates), the best TOP_MEMBERS averaged.
    An outlet's own earlier items do not vouch for its new one: one feed's consecutive items are nearly always
    different events, and a feed's updates of a story join through the other outlets' members. A story with no
    such member (only this outlet's, or an old state) scores 0: only exact and near-identical copies join it."""
    if features.signals is None:
        raise ValueError("features without pair signals: build them with featurize()")
    model = model or story_pairs.default_model()
    rows, owner = [], []
    for i, c in enumerate(candidates):
        for m in c.state.members[-story_pairs.MAX_SCORED_MEMBERS:]:
            if m.signals is not None and not (features.outlet and m.outlet == features.outlet):
                rows.append(story_pairs.pair_features(features.signals, m.signals, stream_rate=stream_rate))
                owner.append(i)
    probs = model.proba(np.asarray(rows, dtype=np.float64).reshape(len(rows), len(story_pairs.FEATURE_NAMES)))
    per: list[list[float]] = [[] for _ in candidates]
    for i, p in zip(owner, probs, strict=True):
        per[i].append(float(p))
    return [story_pairs.story_score(np.asarray(ps)) for ps in per]


def decide(features: StoryFeatures, candidates: Iterable[Candidate],
           params: StoryParams = DEFAULT_PARAMS, model: PairScorer | None = None,
           stream_rate: float | None = None) -> Decision:
    """Exact match, else the closest near-identical copy, else the story with the best same-story score if
    it joins (joins_story; ties and doubt: a new story). `stream_rate`: StoryIndex.stream_rate."""
    cands = list(candidates)
    for c in cands:
        if c.exact:
            return Decision(c.story_id, 1.0, "exact")
    near = [c for c in cands if c.jaccard >= params.near_duplicate_jaccard]
    if near:
        best = max(near, key=lambda c: c.jaccard)
        return Decision(best.story_id, best.jaccard, "near_duplicate")
    if not cands:
        return Decision(None, 0.0, "new")
    scores = story_scores(features, cands, model, stream_rate)
    i = int(np.argmax(scores))
    if joins_story(scores, i, params, dated=features.published is not None):
        return Decision(cands[i].story_id, round(scores[i], 4), "same_story")
    return Decision(None, round(scores[i], 4), "new")


def joins_story(scores: Sequence[float], best: int, params: StoryParams = DEFAULT_PARAMS, *, dated: bool) -> bool:
    """Whether an article joins its best-scoring candidate story: the score reaches the join threshold or, for
    an article with a publication time (`dated`), it is the clear best (is_clear_best)."""
    return scores[best] >= params.join_threshold or (dated and is_clear_best(scores, best, params))


def is_clear_best(scores: Sequence[float], best: int, params: StoryParams = DEFAULT_PARAMS) -> bool:
    """Whether the best story score, below the join threshold, still joins an article with a publication time:
    at least `clear_threshold` and `clear_margin` above every other candidate's."""
    if params.clear_threshold is None or scores[best] < params.clear_threshold:
        return False
    runner_up = max((s for j, s in enumerate(scores) if j != best), default=0.0)
    return bool(scores[best] - runner_up >= params.clear_margin)


def is_core_member(reason: str | None, score: float | None, params: StoryParams = DEFAULT_PARAMS) -> bool:
    """Whether an article placed with this reason and score surely belongs to its story (a weak join may be
    a wrong one: it must not raise the story's rank nor feed its summary)."""
    if reason in ("new", "exact", "near_duplicate"):
        return True
    return reason == "same_story" and score is not None and score >= params.core_threshold


@dataclass(frozen=True)
class JoinEffect:
    """What an article that joined a story changes in the story's stored row."""

    topics: dict[str, float]
    topic_score: float
    major: bool


def join_effect(decision: Decision, *, topics: Mapping[str, float], topic_score: float,
                story_topics: Mapping[str, float], story_topic_score: float, substantial: bool,
                params: StoryParams = DEFAULT_PARAMS) -> JoinEffect:
    """A core member lifts the story's topic scores to the best of both and, when substantial, makes a major
    update (a new version: chats that got the story may get it again, and it ranks as fresh). A weak join may be
    another event: it changes neither, so it cannot make a story look more on-topic or newly updated."""
    if not is_core_member(decision.reason, decision.score, params):
        return JoinEffect(dict(story_topics), story_topic_score, False)
    merged = {k: max(v, story_topics.get(k, 0.0)) for k, v in topics.items()}
    return JoinEffect(merged, max(topic_score, story_topic_score), substantial)


@dataclass(frozen=True)
class UpdateCheck:
    """Whether an article that joined a story brings new information, and which."""

    substantial: bool
    new_terms: tuple[str, ...]
    reason: str


def is_substantial_update(state: StoryState, features: StoryFeatures, decision: Decision | None = None,
                          params: StoryParams = DEFAULT_PARAMS) -> UpdateCheck:
    """Substantial when the article's headline and lead name things (people, places, figures) the story so far
    never mentioned; copies and rewrites of what is known are not. `state` is the story before the article."""
    if decision is not None and decision.reason in ("exact", "near_duplicate"):
        what = decision.reason.replace("_", " ")
        return UpdateCheck(False, (), f"{what} of an article already in the story")
    new = tuple(sorted(t for t in features.lead_terms if t not in state.terms))
    if len(new) >= params.update_min_new_terms:
        return UpdateCheck(True, new, f"headline/lead adds {len(new)} new names or figures")
    return UpdateCheck(False, new, "nothing new in headline/lead")


def _seconds(when: datetime) -> float:
    """POSIX seconds of a time; a naive time is read as UTC (feeds and test data carry both)."""
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


# ---- index -------------------------------------------------------------------------------------------------

class StoryIndex:
    """In-memory index of active stories: exact keys, MinHash LSH over tracked members, and nearest centroids
    (numpy brute force below `ann_min_size` stories, a usearch HNSW graph from there on)."""

    def __init__(self, params: StoryParams = DEFAULT_PARAMS, model: PairScorer | None = None) -> None:
        self.params = params
        self.model = model
        self._states: dict[int, StoryState] = {}
        self._exact: dict[str, int] = {}
        self._exact_keys_of: dict[int, list[str]] = {}
        self._lsh = MinHashLSH(threshold=params.near_duplicate_jaccard, num_perm=params.num_perm)
        self._lsh_keys: dict[int, list[str]] = {}
        self._lsh_story: dict[str, int] = {}
        self._lsh_hash: dict[str, np.ndarray] = {}
        self._ids: list[int] = []
        self._row: dict[int, int] = {}
        self._mat = np.zeros((0, DIM), np.float32)
        self._ann: Index | None = None
        # Publication times of the articles placed so far (sorted seconds, and by key): the stream's rate.
        self._times: list[float] = []
        self._time_of: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, story_id: object) -> bool:
        return story_id in self._states

    def get(self, story_id: int) -> StoryState:
        """The state of a story in the index."""
        return self._states[story_id]

    @property
    def uses_ann(self) -> bool:
        """Whether nearest-centroid search goes through the HNSW graph."""
        return self._ann is not None

    # maintenance

    def add_story(self, story_id: int, state: StoryState) -> None:
        """Insert a story (or replace it if present)."""
        self.add_stories([(story_id, state)])

    def add_stories(self, items: Iterable[tuple[int, StoryState]]) -> None:
        """Insert many stories at once (rebuilding at start): vectors go into the search in one batch."""
        items = list(items)
        ids = np.empty(len(items), np.int64)
        vecs = np.empty((len(items), DIM), np.float32)  # filled in place: no per-story temporaries
        for i, (story_id, state) in enumerate(items):
            if story_id in self._states:
                self.remove_story(story_id)
            self._states[story_id] = state
            self._register_members(story_id, state)
            ids[i] = story_id
            vecs[i] = state.centroid
        if len(items):
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            self._put_vectors(ids, vecs)

    def note_arrivals(self, items: Iterable[tuple[str, datetime | None]]) -> None:
        """Count articles that were not placed (off every topic) in the stream's rate: how busy a stream is
        does not depend on which of its articles a digest wants."""
        for key, when in items:
            if when is not None and key not in self._time_of:
                self._time_of[key] = t = _seconds(when)
                bisect.insort(self._times, t)

    def _register_members(self, story_id: int, state: StoryState) -> None:
        self.note_arrivals((m.key, m.signals.published if m.signals is not None else None) for m in state.members)
        for m in state.members:
            for k in self._exact_keys(m.key, m.canonical_url, m.content_hash):
                self._exact[k] = story_id
                self._exact_keys_of.setdefault(story_id, []).append(k)
            if m.minhash is not None and len(m.minhash) == self.params.num_perm:
                lkey = f"{story_id}:{m.key}"
                if lkey not in self._lsh_story:
                    self._lsh.insert(lkey, LeanMinHash(seed=MINHASH_SEED, hashvalues=m.minhash,
                                                       scheme=MINHASH_SCHEME))
                    self._lsh_story[lkey] = story_id
                    self._lsh_hash[lkey] = m.minhash
                    self._lsh_keys.setdefault(story_id, []).append(lkey)

    def update_story(self, story_id: int, state: StoryState) -> None:
        """Replace a story's state after an article joined it."""
        self.add_story(story_id, state)

    def remove_story(self, story_id: int) -> None:
        """Drop a story (e.g. when it leaves the time window)."""
        if self._states.pop(story_id, None) is None:
            return
        for k in self._exact_keys_of.pop(story_id, []):
            if self._exact.get(k) == story_id:
                del self._exact[k]
        for lkey in self._lsh_keys.pop(story_id, []):
            self._lsh.remove(lkey)
            del self._lsh_story[lkey], self._lsh_hash[lkey]
        self._drop_vector(story_id)

    def evict_before(self, cutoff: datetime) -> list[int]:
        """Remove stories last updated before a time; returns their ids."""
        old = [sid for sid, s in self._states.items()
               if s.last_updated is not None and s.last_updated < cutoff]
        for sid in old:
            self.remove_story(sid)
        # An article before the cutoff is more than a window away from anything placed from now on.
        cut = bisect.bisect_left(self._times, _seconds(cutoff))
        if cut:
            stale = set(self._times[:cut])
            del self._times[:cut]
            self._time_of = {k: t for k, t in self._time_of.items() if t not in stale}
        return old

    def stream_rate(self, features: StoryFeatures,
                    pending: Sequence[tuple[str, datetime | None]] = ()) -> float | None:
        """How many other articles, placed or about to be (`pending`: the rest of the batch as key and time),
        were published within RATE_WINDOW_H either side of this one; None without a publication time."""
        if features.published is None:
            return None
        t = _seconds(features.published)
        span = story_pairs.RATE_WINDOW_H * 3600
        count = bisect.bisect_right(self._times, t + span) - bisect.bisect_left(self._times, t - span)
        if features.key in self._time_of and abs(self._time_of[features.key] - t) <= span:
            count -= 1
        count += sum(1 for key, when in pending if when is not None and key != features.key
                     and key not in self._time_of and abs(_seconds(when) - t) <= span)
        return float(count)

    @staticmethod
    def _exact_keys(key: str, canonical_url: str | None, content_hash: str) -> list[str]:
        return [k for k in (f"k:{key}", f"u:{canonical_url}" if canonical_url else "",
                            f"h:{content_hash}" if content_hash else "") if k]

    def _put_vectors(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        # Callers removed these ids first, so every id is new to the search structure.
        if self._ann is not None:
            self._ann.add(ids.astype(np.uint64), vecs, threads=ANN_THREADS)
            return
        start, end = len(self._ids), len(self._ids) + len(ids)
        if end > len(self._mat):
            grown = np.zeros((max(64, end, 2 * len(self._mat)), DIM), np.float32)
            grown[:start] = self._mat[:start]
            self._mat = grown
        self._mat[start:end] = vecs
        for row, sid in enumerate(ids.tolist(), start):
            self._ids.append(sid)
            self._row[sid] = row
        if end >= self.params.ann_min_size:
            self._switch_to_ann()

    def _drop_vector(self, story_id: int) -> None:
        if self._ann is not None:
            self._ann.remove(story_id)
            return
        row = self._row.pop(story_id)
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._mat[row] = self._mat[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._ids.pop()

    def _switch_to_ann(self) -> None:
        from usearch.index import Index

        n = len(self._ids)
        self._ann = Index(ndim=DIM, metric="cos", dtype=ANN_DTYPE, connectivity=ANN_CONNECTIVITY,
                          expansion_add=ANN_EXPANSION_ADD, expansion_search=ANN_EXPANSION_SEARCH)
        self._ann.add(np.asarray(self._ids, dtype=np.uint64), self._mat[:n], threads=ANN_THREADS)
        self._ids, self._row, self._mat = [], {}, np.zeros((0, DIM), np.float32)

    # lookups

    def nearest(self, vec: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(story id, cosine to its unit centroid) of up to k nearest stories."""
        if not self._states or k <= 0:
            return []
        if self._ann is not None:
            # usearch defines this property's setter away from its getter, which mypy reads as read-only.
            self._ann.expansion_search = (  # type: ignore[misc]
                ANN_EXPANSION_SEARCH_LARGE if len(self._ann) >= ANN_LARGE else ANN_EXPANSION_SEARCH)
            m = self._ann.search(vec.astype(np.float32), k)
            ids = [int(i) for i in m.keys]
            # Re-score exactly: the graph stores half-precision vectors.
            return sorted(((i, float(self._states[i].unit_centroid @ vec)) for i in ids), key=lambda t: -t[1])
        n = len(self._ids)
        sims = self._mat[:n] @ vec
        top = np.argpartition(-sims, k - 1)[:k] if n > k else np.arange(n)
        return [(self._ids[i], float(sims[i])) for i in sorted(top, key=lambda i: -sims[i])]

    def candidates(self, features: StoryFeatures, k: int | None = None) -> list[Candidate]:
        """Stories to compare the article with: exact key/URL/hash matches, LSH near-copies, k nearest
        centroids;
        stories outside the optional time window are left out."""
        p = self.params
        found: dict[int, Candidate] = {}
        for key in self._exact_keys(features.key, features.canonical_url, features.content_hash):
            sid = self._exact.get(key)
            if sid is not None and sid in self._states:
                found[sid] = Candidate(sid, self._states[sid], 1.0, exact=True)
        if not found and len(features.minhash) == p.num_perm:
            query = LeanMinHash(seed=MINHASH_SEED, hashvalues=features.minhash, scheme=MINHASH_SCHEME)
            for lkey in self._lsh.query(query):
                sid = self._lsh_story[lkey]
                j = float(np.mean(self._lsh_hash[lkey] == features.minhash))
                if sid not in found or j > found[sid].jaccard:
                    found[sid] = Candidate(sid, self._states[sid], self._cos(sid, features), jaccard=j)
        for sid, cos in self.nearest(features.embedding, k or p.k):
            if sid not in found:
                found[sid] = Candidate(sid, self._states[sid], cos)
        return [c for c in found.values() if c.exact or self._in_window(c.state, features.published)]

    def _cos(self, sid: int, features: StoryFeatures) -> float:
        return float(self._states[sid].unit_centroid @ features.embedding)

    def _in_window(self, state: StoryState, published: datetime | None) -> bool:
        w = self.params.window
        if w is None or published is None or state.last_updated is None:
            return True
        try:
            return abs(published - state.last_updated) <= w
        except TypeError:  # naive vs aware datetimes: do not drop a story over a timezone slip
            return True


def place(index: StoryIndex, features: StoryFeatures, now: datetime | None = None,
          pending: Sequence[tuple[str, datetime | None]] = ()) -> tuple[Decision, StoryState]:
    """Decide for one article and return the story's new state (story_id None: a new story to be stored and
    then added with `index.add_story(new_id, state)`). Does not modify the index; placing an article that is
    already a member returns the story's state unchanged, so reruns are idempotent. `pending`: the key and
    publication time of the batch's other articles, which count in the stream's rate (StoryIndex.stream_rate)."""
    decision = decide(features, index.candidates(features), index.params, index.model,
                      index.stream_rate(features, pending))
    if decision.story_id is None:
        return decision, new_story(features, now)
    state = index.get(decision.story_id)
    if decision.reason == "exact" and any(m.key == features.key for m in state.members):
        return decision, state  # the same article again (a rerun): nothing changes
    return decision, join_story(state, features, now, index.params)


__all__ = ["Candidate", "DEFAULT_PARAMS", "Decision", "StoryFeatures", "StoryIndex", "StoryMember",
           "StoryParams", "StoryState", "UpdateCheck", "decide", "featurize", "headline_of",
           "is_core_member", "is_substantial_update", "join_story", "lead_text", "minhash_of", "new_story", "place",
           "salient_terms", "sentences", "story_scores"]

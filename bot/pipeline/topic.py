"""Topic scores of articles: the built-in "world" topic from a head trained on labelled news, operator topics
(feeds.yaml) zero-shot from their description, example headlines and keywords.

The world head works on all-MiniLM-L6-v2 embeddings of title + lead: the average of a distance-weighted
cosine k-nearest-neighbour vote over the labelled examples and a multinomial logistic regression, both over
all classes of the training file (World, Sports, Business, Sci/Tech for AG News), scored as P(World) with its
log-odds shifted so the cross-validated decision threshold sits at 0.5. It is trained by
`python -m bot.train.topic_head` and shipped in bot/resources (PROVENANCE.md there); numbers in docs/story.md.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.special import expit, logit, softmax

WORLD = "world"
HEAD_NPZ = "topic_head.npz"
HEAD_JSON = "topic_head.json"


class Encoder(Protocol):
    """Anything with `encode(texts) -> (n, d) unit float32 array` (summarizer.embedding.Embedder)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class TopicSpec:
    """A topic: name, a description in plain words, example headlines and keywords."""

    name: str
    description: str = ""
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()



# ---- text --------------------------------------------------------------------------------------------------

_NUMERIC_REF = re.compile(r"&?#(\d{2,5});")
_SPACED_APOSTROPHE = re.compile(r"\s+(?=&?#39;[a-z])")  # "Dubai #39;s" is "Dubai's"


def clean_text(s: str) -> str:
    """Undo feed/corpus artefacts (`#36;` for `$`, HTML entities, backslash escapes), squeeze spaces."""
    s = _SPACED_APOSTROPHE.sub("", s)
    s = _NUMERIC_REF.sub(lambda m: chr(int(m.group(1))) if int(m.group(1)) < 0x110000 else "", s)
    s = html.unescape(s)
    s = s.replace("\\", " ")  # AG News joins fields with "\\" and escapes "$" as "\\$"
    return " ".join(s.split())


def article_text_for_topic(title: str, text: str, max_chars: int = 400) -> str:
    """Title plus the start of the text, cleaned: the shape of the labelled examples (headline + one or two
    sentences), so long articles do not dilute the embedding."""
    title, body = clean_text(title or ""), clean_text(text or "")
    if title and body.startswith(title):
        body = body[len(title):].lstrip(" .:-–—")
    if len(body) > max_chars:
        cut = body[:max_chars]
        end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
        body = cut[:end + 1] if end > max_chars // 3 else cut.rsplit(" ", 1)[0]
    if title and body:
        return f"{title}. {body}" if title[-1] not in ".?!" else f"{title} {body}"
    return title or body


def with_feed_override(scores: dict[str, float], all_world: bool) -> dict[str, float]:
    """Scores of an article from a feed marked all-world: the world score is 1.0."""
    return {**scores, WORLD: 1.0} if all_world else dict(scores)


# ---- the trained head --------------------------------------------------------------------------------------

@dataclass
class TopicHead:
    """kNN + logistic regression over sentence embeddings; `proba(X)` gives P(positive class)."""

    embeddings: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    positive: str
    coef: np.ndarray
    intercept: np.ndarray
    k: int = 10
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    _knn: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be strictly between 0 and 1, not {self.threshold}")
        if self.positive not in self.classes:
            raise ValueError(f"positive class {self.positive!r} is not among {self.classes}")
        if self.embeddings.shape[0] != self.labels.shape[0] or self.coef.shape != (len(self.classes),
                                                                                 self.embeddings.shape[1]):
            raise ValueError("topic head arrays do not fit together")

    def _neighbours(self):  # noqa: ANN202
        if self._knn is None:
            from sklearn.neighbors import KNeighborsClassifier

            knn = KNeighborsClassifier(n_neighbors=min(self.k, len(self.labels)), metric="cosine",
                                       weights="distance", algorithm="brute")
            self._knn = knn.fit(self.embeddings.astype(np.float32), self.labels)
        return self._knn

    def proba_all(self, X: np.ndarray) -> np.ndarray:
        """(n, classes) probabilities: mean of the kNN vote and the logistic regression."""
        X = np.asarray(X, dtype=np.float32)
        if len(X) == 0:
            return np.zeros((0, len(self.classes)))
        knn = self._neighbours()
        p_knn = np.zeros((len(X), len(self.classes)))
        p_knn[:, knn.classes_] = knn.predict_proba(X)
        p_lr = softmax(X @ self.coef.T + self.intercept, axis=1)
        return (p_knn + p_lr) / 2

    def proba(self, X: np.ndarray) -> np.ndarray:
        """P(positive class) per row of X."""
        return self.proba_all(X)[:, self.classes.index(self.positive)]

    def score(self, X: np.ndarray) -> np.ndarray:
        """P(positive) with its log-odds shifted so that the head's decision threshold lands on 0.5."""
        p = np.clip(self.proba(X), 1e-6, 1 - 1e-6)
        return expit(logit(p) - logit(self.threshold))

    def save(self, npz_path: str | Path, json_path: str | Path) -> None:
        """Arrays to a compressed .npz (embeddings as float16), settings and provenance to JSON."""
        np.savez_compressed(npz_path, embeddings=self.embeddings.astype(np.float16),
                            labels=self.labels.astype(np.int16), coef=self.coef.astype(np.float32),
                            intercept=self.intercept.astype(np.float32))
        doc = {"classes": list(self.classes), "positive": self.positive, "k": self.k,
               "threshold": self.threshold, **self.meta}
        Path(json_path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, npz_path: str | Path, json_path: str | Path) -> TopicHead:
        """Read a head written by `save`."""
        doc = json.loads(Path(json_path).read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("embeddings", "labels", "coef", "intercept")}
        meta = {k: v for k, v in doc.items() if k not in ("classes", "positive", "k", "threshold")}
        return cls(embeddings=arrays["embeddings"].astype(np.float32),
                   labels=arrays["labels"].astype(np.int64),
                   classes=tuple(doc["classes"]), positive=doc["positive"], coef=arrays["coef"],
                   intercept=arrays["intercept"], k=int(doc["k"]), threshold=float(doc.get("threshold", 0.5)),
                   meta=meta)


def load_default_head() -> TopicHead:
    """The head shipped in bot/resources (trained on AG News; see PROVENANCE.md there)."""
    base = resources.files("bot") / "resources"
    with resources.as_file(base / HEAD_NPZ) as npz, resources.as_file(base / HEAD_JSON) as js:
        return TopicHead.load(npz, js)


def load_head(directory: str | Path | None = None) -> TopicHead:
    """A head the training command wrote into `directory` (topic_head.npz + .json); None: the shipped one."""
    if directory is None:
        return load_default_head()
    d = Path(directory)
    return TopicHead.load(d / HEAD_NPZ, d / HEAD_JSON)


# ---- operator topics (zero-shot) ---------------------------------------------------------------------------

# Cosine of MiniLM embeddings between a news text and a topic description rarely exceeds ~0.6; these bounds
# map the useful range onto [0, 1] so that 0.5 is "clearly about it" (uncalibrated, unlike the world head).
ZS_LOW, ZS_HIGH = 0.15, 0.55
KEYWORD_BONUS = 0.25


def zero_shot_score(max_cosine: float, keyword_hits: int) -> float:
    """Score in [0, 1] from the best cosine to a topic's description/examples and its keyword hits."""
    base = (max_cosine - ZS_LOW) / (ZS_HIGH - ZS_LOW)
    return float(min(1.0, max(0.0, base) + KEYWORD_BONUS * keyword_hits))


def _keyword_pattern(keywords: Sequence[str]) -> re.Pattern[str] | None:
    words = [re.escape(k.strip()) for k in keywords if k.strip()]
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE) if words else None


class TopicClassifier:
    """Scores texts for the world topic (trained head) and operator topics (zero-shot); nothing loads until
    the first call."""

    def __init__(self, embedder: Encoder, head: TopicHead | None = None,
                 topics: Sequence[TopicSpec] = ()) -> None:
        self.embedder = embedder
        self._head = head
        self.topics = [t for t in topics if t.name != WORLD]
        self._protos: list[np.ndarray] | None = None
        self._patterns = [_keyword_pattern(t.keywords) for t in self.topics]

    @property
    def head(self) -> TopicHead:
        """The world head (the shipped one unless another was given)."""
        if self._head is None:
            self._head = load_default_head()
        return self._head

    @property
    def names(self) -> list[str]:
        """Topic names this classifier scores."""
        return [WORLD, *(t.name for t in self.topics)]

    def _prototypes(self) -> list[np.ndarray]:
        if self._protos is None:
            texts, owner = [], []
            for i, t in enumerate(self.topics):
                for s in (t.description, *t.examples):
                    if s.strip():
                        texts.append(s)
                        owner.append(i)
            vecs = self.embedder.encode(texts) if texts else np.zeros((0, 1), np.float32)
            self._protos = [vecs[[j for j, o in enumerate(owner) if o == i]] for i in range(len(self.topics))]
        return self._protos

    def score_many(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """One {topic: score in [0, 1]} per text (pass `article_text_for_topic(title, text)`)."""
        if not texts:
            return []
        X = self.embedder.encode([clean_text(t) for t in texts])
        world = self.head.score(X)
        out = [{WORLD: round(float(w), 4)} for w in world]
        for i, (t, protos) in enumerate(zip(self.topics, self._prototypes(), strict=True)):
            sims = (X @ protos.T).max(axis=1) if len(protos) else np.zeros(len(X))
            pattern = self._patterns[i]
            for row, text, sim in zip(out, texts, sims, strict=True):
                hits = len(set(m.group(0).lower() for m in pattern.finditer(text))) if pattern else 0
                row[t.name] = round(zero_shot_score(float(sim), hits), 4)
        return out

    def score(self, title: str, text: str) -> dict[str, float]:
        """Scores of one article."""
        return self.score_many([article_text_for_topic(title, text)])[0]

"""Topic scores of articles: the built-in "geopolitics" and "world" topics from heads trained on labelled
news, operator topics (feeds.yaml) zero-shot from their description, example headlines and keywords.

The geopolitics head implements geo/RUBRIC.md (international affairs and the power politics of states) on
real feed items: the average log-odds of an RBF support-vector machine and a logistic regression over the
all-mpnet-base-v2 embedding of title + lead (its own encoder, `encoder_for`; a MiniLM variant ships for small
machines) joined with rubric cue-word counts
(bot/resources/geo_lexicon.json), and of a distance-weighted cosine kNN vote over the labelled items, shifted so the cross-validated threshold
sits at 0.5. It is trained by `python -m bot.train.geo_head` and shipped as geo_head.{npz,json}.

The world head works on all-MiniLM-L6-v2 embeddings of title + lead, over all classes of the training file
(World, Sports, Business, Sci/Tech for AG News): the mean log-odds of P(World) from a distance-weighted cosine
k-nearest-neighbour vote over the labelled examples, a multinomial logistic regression and a multi-class RBF
support-vector machine (its weakest World-vs-other pairwise decision), the last two over the embedding joined
with the rubric cue-word counts; shifted so the cross-validated decision threshold sits at 0.5. (Heads saved
before the SVM and cue words were added hold no `svm_support` and are read as the plain mean of the kNN and
logistic regression probabilities.) It is trained by
`python -m bot.train.topic_head` and shipped in bot/resources (PROVENANCE.md there); numbers in docs/story.md.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np


# Plain numpy (scipy.special's names): scipy would add ~50 MB to the service for three one-line functions.
def expit(x: np.ndarray | float) -> np.ndarray:
    """The logistic function, without overflow for large |x|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def logit(p: np.ndarray | float) -> np.ndarray:
    """The inverse of `expit`."""
    p = np.asarray(p, dtype=np.float64)
    out: np.ndarray = np.log(p) - np.log1p(-p)
    return out


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along `axis` (shifted by the maximum)."""
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    out: np.ndarray = e / np.sum(e, axis=axis, keepdims=True)
    return out


def knn_vote(X: np.ndarray, embeddings: np.ndarray, labels: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """(n, n_classes) distance-weighted cosine k-nearest-neighbour vote over unit vectors, as scikit-learn's
    KNeighborsClassifier(weights="distance", metric="cosine") computes it (neighbours at distance 0 take the
    whole vote)."""
    sims = X @ embeddings.T
    k = min(k, len(labels))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    dist = np.clip(1.0 - np.take_along_axis(sims, idx, axis=1).astype(np.float64), 0.0, 2.0)
    exact = dist == 0
    w = np.where(exact.any(axis=1, keepdims=True), exact.astype(np.float64), 1.0 / np.where(exact, 1.0, dist))
    out = np.zeros((len(X), n_classes))
    np.add.at(out, (np.repeat(np.arange(len(X)), k), labels[idx].ravel()), w.ravel())
    vote: np.ndarray = out / out.sum(axis=1, keepdims=True)
    return vote


def rbf_decision(F: np.ndarray, support: np.ndarray, coef: np.ndarray, intercept: np.ndarray | float,
                 gamma: float) -> np.ndarray:
    """Decision values of an RBF support-vector machine from its support vectors: exp(-gamma |F - s|^2) @ coef
    + intercept (coef (n_support,) or (n_support, m) for m decisions at once)."""
    F = np.asarray(F, dtype=np.float64)
    sq = (F * F).sum(1)[:, None] + (support * support).sum(1)[None, :] - 2 * F @ support.T
    out: np.ndarray = np.exp(-gamma * np.maximum(sq, 0.0)) @ coef + intercept
    return out


# Each part of a log-odds mean is bounded at P = 0.001 / 0.999, so one confident part cannot outvote the rest.
PART_LOGODDS_BOUND = float(np.log(999.0))


def part_logodds(p: np.ndarray) -> np.ndarray:
    """Log-odds of a probability, bounded to +-PART_LOGODDS_BOUND."""
    out: np.ndarray = np.clip(logit(np.clip(p, 1e-3, 1 - 1e-3)), -PART_LOGODDS_BOUND, PART_LOGODDS_BOUND)
    return out


def svm_logodds(pair_decisions: np.ndarray) -> np.ndarray:
    """The SVM part of the world head: twice the weakest positive-vs-other pairwise decision, bounded."""
    out: np.ndarray = np.clip(2.0 * pair_decisions.min(axis=1), -PART_LOGODDS_BOUND, PART_LOGODDS_BOUND)
    return out

WORLD = "world"
GEOPOLITICS = "geopolitics"
BUILTIN_TOPICS = (GEOPOLITICS, WORLD)
HEAD_NPZ = "topic_head.npz"
HEAD_JSON = "topic_head.json"
GEO_NPZ = "geo_head.npz"
GEO_JSON = "geo_head.json"
# The shipped geopolitics heads by encoder; the MiniLM one is for machines that cannot spare all-mpnet-base-v2's
# memory (NEWSDIGEST_GEO_ENCODER=minilm).
GEO_HEAD_FILES = {"mpnet": (GEO_NPZ, GEO_JSON), "minilm": ("geo_head_minilm.npz", "geo_head_minilm.json")}
LEXICON_JSON = "geo_lexicon.json"
# Log-odds added to the built-in topics of an item from a feed marked all_world: a world feed's item is more
# likely on topic, but the bonus is bounded so sport or celebrity items from such a feed stay below 0.5.
FEED_PRIOR_LOGODDS = 1.0


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


def undo_feed_escapes(s: str) -> str:
    """Undo feed/corpus artefacts (`#36;` for `$`, HTML entities, backslash escapes), squeeze spaces."""
    s = _SPACED_APOSTROPHE.sub("", s)
    s = _NUMERIC_REF.sub(lambda m: chr(int(m.group(1))) if int(m.group(1)) < 0x110000 else "", s)
    s = html.unescape(s)
    s = s.replace("\\", " ")  # AG News joins fields with "\\" and escapes "$" as "\\$"
    return " ".join(s.split())


def article_text_for_topic(title: str, text: str, max_chars: int = 400) -> str:
    """Title plus the start of the text, cleaned: the shape of the labelled examples (headline + one or two
    sentences), so long articles do not dilute the embedding."""
    title, body = undo_feed_escapes(title or ""), undo_feed_escapes(text or "")
    if title and body.startswith(title):
        body = body[len(title):].lstrip(" .:-–—")
    if len(body) > max_chars:
        cut = body[:max_chars]
        end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
        body = cut[:end + 1] if end > max_chars // 3 else cut.rsplit(" ", 1)[0]
    if title and body:
        return f"{title}. {body}" if title[-1] not in ".?!" else f"{title} {body}"
    return title or body


def with_feed_override(scores: dict[str, float], all_world: bool,
                       bonus: float = FEED_PRIOR_LOGODDS) -> dict[str, float]:
    """Scores of an article from a feed marked all-world: the built-in topics' log-odds raised by `bonus`
    (a prior, never a verdict: a confident "no" stays below 0.5)."""
    if not all_world:
        return dict(scores)
    out = dict(scores)
    for name in BUILTIN_TOPICS:
        if name in out:
            p = min(max(out[name], 1e-6), 1 - 1e-6)
            out[name] = round(float(expit(logit(p) + bonus)), 4)
    return out


# ---- the trained head --------------------------------------------------------------------------------------

@dataclass
class TopicHead:
    """kNN + logistic regression (+ RBF SVM and cue words) over sentence embeddings; `proba(X, texts)` gives
    P(positive class).

    With `svm_support` (heads trained since the SVM was added): the mean of the bounded log-odds of the kNN
    vote, the logistic regression and the SVM, the last two over [embedding, lex_weight * cue features of the
    texts]; `svm_coef[:, j]` holds the dual coefficients of the pairwise decision "positive vs the j-th other
    class" (> 0 favours the positive class) over all support vectors, `svm_intercept[j]` its intercept. Without
    it (older heads): the mean of the kNN and logistic regression probabilities over the embedding alone.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    positive: str
    coef: np.ndarray
    intercept: np.ndarray
    k: int = 10
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    lexicon: CueLexicon | None = None
    lex_weight: float = 0.0
    svm_support: np.ndarray | None = None
    svm_coef: np.ndarray | None = None
    svm_intercept: np.ndarray | None = None
    svm_gamma: float = 0.0
    _unit: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be strictly between 0 and 1, not {self.threshold}")
        if self.positive not in self.classes:
            raise ValueError(f"positive class {self.positive!r} is not among {self.classes}")
        d = self.embeddings.shape[1] + self.n_cues
        if self.embeddings.shape[0] != self.labels.shape[0] or self.coef.shape != (len(self.classes), d):
            raise ValueError("topic head arrays do not fit together")
        if self.svm_support is not None:
            if (self.lexicon is None or self.svm_coef is None or self.svm_intercept is None
                    or self.svm_support.shape[1] != d
                    or self.svm_coef.shape != (len(self.svm_support), len(self.classes) - 1)
                    or self.svm_intercept.shape != (len(self.classes) - 1,) or self.svm_gamma <= 0):
                raise ValueError("topic head SVM arrays do not fit together (or the lexicon changed)")
        elif self.lexicon is not None:
            raise ValueError("a topic head with cue words must have its SVM")

    @property
    def n_cues(self) -> int:
        """Number of cue-word features in the model input (0 for heads without them)."""
        return len(self.lexicon.categories) if self.lexicon is not None else 0

    def _unit_embeddings(self) -> np.ndarray:
        if self._unit is None:  # float16 on disk: renormalised once, as the cosine metric does
            e = self.embeddings.astype(np.float32)
            self._unit = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        unit: np.ndarray = self._unit
        return unit

    def features(self, X: np.ndarray, texts: Sequence[str] | None = None, *,
                 cues: np.ndarray | None = None) -> np.ndarray:
        """Input of the logistic regression and the SVM: the embeddings, joined with lex_weight * the cue
        features of `texts` for heads that use cue words (`cues`: those features, already counted with this
        head's lexicon; all-zero cue counts when neither is given)."""
        X = np.asarray(X, dtype=np.float32)
        if self.lexicon is None:
            return X
        if cues is None:
            if texts is None:
                cues = np.zeros((len(X), self.n_cues), dtype=np.float32)
            elif len(texts) != len(X):
                raise ValueError(f"{len(texts)} texts for {len(X)} embeddings")
            else:
                cues = self.lexicon.features(texts)
        return np.hstack([X, self.lex_weight * cues])

    def pair_decisions(self, F: np.ndarray) -> np.ndarray:
        """(n, classes - 1) SVM decisions "positive vs each other class" on model inputs F (`features`)."""
        assert self.svm_support is not None and self.svm_coef is not None and self.svm_intercept is not None
        return rbf_decision(F, self.svm_support, self.svm_coef, self.svm_intercept, self.svm_gamma)

    def proba(self, X: np.ndarray, texts: Sequence[str] | None = None, *,
              cues: np.ndarray | None = None) -> np.ndarray:
        """P(positive class) per row of X (`texts`: the cleaned texts X was encoded from; heads with cue
        words need them, or their `cues`, for full accuracy)."""
        X = np.asarray(X, dtype=np.float32)
        if len(X) == 0:
            return np.zeros(0)
        pos = self.classes.index(self.positive)
        p_knn = knn_vote(X, self._unit_embeddings(), self.labels, self.k, len(self.classes))[:, pos]
        F = self.features(X, texts, cues=cues)
        p_lr = softmax(F @ self.coef.T + self.intercept, axis=1)[:, pos]
        if self.svm_support is None:
            mean: np.ndarray = (p_knn + p_lr) / 2
            return mean
        parts = [part_logodds(p_knn), part_logodds(p_lr), svm_logodds(self.pair_decisions(F))]
        return expit(np.mean(parts, axis=0))

    def score(self, X: np.ndarray, texts: Sequence[str] | None = None, *,
              cues: np.ndarray | None = None) -> np.ndarray:
        """P(positive) with its log-odds shifted so that the head's decision threshold lands on 0.5."""
        p = np.clip(self.proba(X, texts, cues=cues), 1e-6, 1 - 1e-6)
        shifted: np.ndarray = expit(logit(p) - logit(self.threshold))
        return shifted

    def save(self, npz_path: str | Path, json_path: str | Path) -> None:
        """Arrays to a compressed .npz (embeddings as float16), settings and provenance to JSON."""
        arrays: dict[str, np.ndarray] = {"embeddings": self.embeddings.astype(np.float16),
                                         "labels": self.labels.astype(np.int16), "coef": self.coef.astype(np.float32),
                                         "intercept": self.intercept.astype(np.float32)}
        doc = {"classes": list(self.classes), "positive": self.positive, "k": self.k,
               "threshold": self.threshold, **self.meta}
        if self.svm_support is not None:
            assert self.lexicon is not None and self.svm_coef is not None and self.svm_intercept is not None
            arrays.update(svm_support=self.svm_support.astype(np.float32),
                          svm_coef=self.svm_coef.astype(np.float64),
                          svm_intercept=self.svm_intercept.astype(np.float64))
            doc.update(lex_weight=self.lex_weight, lexicon_categories=list(self.lexicon.categories),
                       svm_gamma=self.svm_gamma)
        np.savez_compressed(npz_path, **arrays)  # type: ignore[arg-type]  # numpy's stub types allow_pickle
        Path(json_path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, npz_path: str | Path, json_path: str | Path, lexicon: CueLexicon | None = None) -> TopicHead:
        """Read a head written by `save` (heads with cue words: with the shipped lexicon unless another is
        given; ValueError if its categories are not the ones the head was trained with)."""
        doc = json.loads(Path(json_path).read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        svm: dict[str, Any] = {}
        if "svm_support" in arrays:
            lexicon = lexicon or load_lexicon()
            if list(lexicon.categories) != doc.get("lexicon_categories"):
                raise ValueError(f"{json_path}: trained with lexicon categories {doc.get('lexicon_categories')}, "
                                 f"not {list(lexicon.categories)}")
            svm = {"lexicon": lexicon, "lex_weight": float(doc["lex_weight"]),
                   "svm_support": arrays["svm_support"].astype(np.float64), "svm_coef": arrays["svm_coef"],
                   "svm_intercept": arrays["svm_intercept"], "svm_gamma": float(doc["svm_gamma"])}
        own = ("classes", "positive", "k", "threshold", "lex_weight", "lexicon_categories", "svm_gamma")
        return cls(embeddings=arrays["embeddings"].astype(np.float32),
                   labels=arrays["labels"].astype(np.int64),
                   classes=tuple(doc["classes"]), positive=doc["positive"], coef=arrays["coef"],
                   intercept=arrays["intercept"], k=int(doc["k"]), threshold=float(doc.get("threshold", 0.5)),
                   meta={k: v for k, v in doc.items() if k not in own}, **svm)


def load_default_head() -> TopicHead:
    """The head shipped in bot/resources (trained on AG News; see PROVENANCE.md there)."""
    base = resources.files("bot") / "resources"
    with resources.as_file(base / HEAD_NPZ) as npz, resources.as_file(base / HEAD_JSON) as js:
        return TopicHead.load(npz, js)


def load_head(directory: str | Path | None = None) -> TopicHead:
    """The world head the training command wrote into `directory` (topic_head.npz + .json); None (or a
    directory holding only a geopolitics head): the shipped one."""
    if directory is None:
        return load_default_head()
    d = Path(directory)
    if not (d / HEAD_JSON).exists() and (d / GEO_JSON).exists():
        return load_default_head()  # a directory with only a retrained geopolitics head
    return TopicHead.load(d / HEAD_NPZ, d / HEAD_JSON)


# ---- the geopolitics head ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CueLexicon:
    """Rubric cue words by category; `features(texts)` gives log(1 + whole-word matches) per category."""

    categories: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CueLexicon:
        """Build from the JSON document of geo_lexicon.json (`categories`, `case_sensitive`)."""
        cs = set(doc.get("case_sensitive", ()))
        names, pats = [], []
        for name, words in doc["categories"].items():
            words = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
            if not words:
                continue
            # Lookarounds instead of \b so that "U.S." and "al-Qaeda" match as whole terms.
            body = "|".join(re.escape(w) for w in words)
            names.append(name)
            pats.append(re.compile(rf"(?<![\w.])(?:{body})(?!\w)", 0 if name in cs else re.IGNORECASE))
        return cls(tuple(names), tuple(pats))

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """(n, categories) float32 array of log(1 + match count)."""
        out = np.zeros((len(texts), len(self.patterns)), dtype=np.float32)
        for i, t in enumerate(texts):
            for j, p in enumerate(self.patterns):
                out[i, j] = np.log1p(len(p.findall(t)))
        return out


def load_lexicon(path: str | Path | None = None) -> CueLexicon:
    """The cue lexicon at `path`, or the one shipped in bot/resources (one shared, immutable object)."""
    if path is None:
        return _shipped_lexicon()
    return CueLexicon.from_doc(json.loads(Path(path).read_text(encoding="utf-8")))


@cache
def _shipped_lexicon() -> CueLexicon:
    with resources.as_file(resources.files("bot") / "resources" / LEXICON_JSON) as p:
        return CueLexicon.from_doc(json.loads(Path(p).read_text(encoding="utf-8")))


@dataclass
class GeoHead:
    """RBF SVM + logistic regression over [embedding, lex_weight * cue features] and a kNN vote over
    embeddings, averaged in log-odds; `score(X, texts)` is calibrated so 0.5 is the decision threshold."""

    support: np.ndarray
    dual_coef: np.ndarray
    svm_intercept: float
    gamma: float
    lr_coef: np.ndarray
    lr_intercept: float
    embeddings: np.ndarray
    labels: np.ndarray
    lexicon: CueLexicon
    lex_weight: float = 0.2
    k: int = 10
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be strictly between 0 and 1, not {self.threshold}")
        d = self.embeddings.shape[1] + len(self.lexicon.categories)
        if (self.support.shape[1] != d or self.lr_coef.shape != (d,)
                or self.dual_coef.shape != (len(self.support),) or len(self.labels) != len(self.embeddings)):
            raise ValueError("geopolitics head arrays do not fit together (or the lexicon changed)")

    def features(self, X: np.ndarray, texts: Sequence[str], *, cues: np.ndarray | None = None) -> np.ndarray:
        """Model input: embeddings joined with the weighted cue features of the same texts (`cues`: those
        features, already counted with this head's lexicon)."""
        cues = self.lexicon.features(texts) if cues is None else cues
        return np.hstack([np.asarray(X, dtype=np.float32), self.lex_weight * cues])

    def logodds(self, X: np.ndarray, texts: Sequence[str], *, cues: np.ndarray | None = None) -> np.ndarray:
        """Mean log-odds of the three parts (uncalibrated; the threshold is applied in `score`)."""
        X = np.asarray(X, dtype=np.float32)
        F = self.features(X, texts, cues=cues).astype(np.float64)
        svm = rbf_decision(F, self.support, self.dual_coef, self.svm_intercept, self.gamma)
        lr = F @ self.lr_coef + self.lr_intercept
        # Distance-weighted cosine kNN vote, as KNeighborsClassifier(weights="distance", metric="cosine").
        sims = X @ self.embeddings.T
        k = min(self.k, len(self.labels))
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        dist = 1.0 - np.take_along_axis(sims, idx, axis=1)
        w = 1.0 / np.maximum(dist, 1e-9)
        knn = (w * self.labels[idx]).sum(1) / w.sum(1)
        parts = [np.clip(2.0 * svm, -12, 12), np.clip(lr, -12, 12), logit(np.clip(knn, 1e-3, 1 - 1e-3))]
        mean: np.ndarray = np.mean(parts, axis=0)
        return mean

    def score(self, X: np.ndarray, texts: Sequence[str], *, cues: np.ndarray | None = None) -> np.ndarray:
        """P(geopolitical)-like score with the decision threshold moved to 0.5."""
        if len(texts) == 0:
            return np.zeros(0)
        return expit(self.logodds(X, texts, cues=cues) - logit(self.threshold))

    def save(self, npz_path: str | Path, json_path: str | Path) -> None:
        """Arrays to a compressed .npz (float16 where precision does not matter), settings to JSON."""
        np.savez_compressed(npz_path, support=self.support.astype(np.float32),
                            dual_coef=self.dual_coef.astype(np.float64),
                            lr_coef=self.lr_coef.astype(np.float64), embeddings=self.embeddings.astype(np.float16), labels=self.labels.astype(np.int8))
        doc = {"svm_intercept": self.svm_intercept, "gamma": self.gamma, "lr_intercept": self.lr_intercept,
               "lex_weight": self.lex_weight, "k": self.k, "threshold": self.threshold,
               "lexicon_categories": list(self.lexicon.categories), **self.meta}
        Path(json_path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, npz_path: str | Path, json_path: str | Path, lexicon: CueLexicon | None = None) -> GeoHead:
        """Read a head written by `save` (with the shipped lexicon unless another is given)."""
        doc = json.loads(Path(json_path).read_text(encoding="utf-8"))
        lexicon = lexicon or load_lexicon()
        if list(lexicon.categories) != doc.get("lexicon_categories"):
            raise ValueError(f"{json_path}: trained with lexicon categories {doc.get('lexicon_categories')}, "
                             f"not {list(lexicon.categories)}")
        with np.load(npz_path, allow_pickle=False) as z:
            a = {k: z[k] for k in ("support", "dual_coef", "lr_coef", "embeddings", "labels")}
        own = ("svm_intercept", "gamma", "lr_intercept", "lex_weight", "k", "threshold", "lexicon_categories")
        return cls(support=a["support"].astype(np.float64), dual_coef=a["dual_coef"],
                   svm_intercept=float(doc["svm_intercept"]), gamma=float(doc["gamma"]), lr_coef=a["lr_coef"], lr_intercept=float(doc["lr_intercept"]),
                   embeddings=a["embeddings"].astype(np.float32), labels=a["labels"].astype(np.float64),
                   lexicon=lexicon, lex_weight=float(doc["lex_weight"]), k=int(doc["k"]),
                   threshold=float(doc["threshold"]), meta={k: v for k, v in doc.items() if k not in own})


def load_geo_head(directory: str | Path | None = None, encoder: str = "mpnet") -> GeoHead:
    """The geopolitics head in `directory` (geo_head.npz + .json) if it has one, else the shipped one for
    `encoder` ("mpnet": all-mpnet-base-v2, the default; "minilm": all-MiniLM-L6-v2)."""
    if directory is not None and (Path(directory) / GEO_JSON).exists():
        d = Path(directory)
        return GeoHead.load(d / GEO_NPZ, d / GEO_JSON)
    if encoder not in GEO_HEAD_FILES:
        raise ValueError(f"no shipped geopolitics head for encoder {encoder!r} (choose from {', '.join(GEO_HEAD_FILES)})")
    npz_name, json_name = GEO_HEAD_FILES[encoder]
    base = resources.files("bot") / "resources"
    with resources.as_file(base / npz_name) as npz, resources.as_file(base / json_name) as js:
        return GeoHead.load(npz, js)


_ENCODERS: dict[str, Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


def encoder_for(head_encoder: str, default: Encoder) -> Encoder:
    """The encoder whose vectors a head was trained on (its meta `encoder`, e.g. "all-mpnet-base-v2:w8"):
    `default` when that is MiniLM, else one process-wide instance of the named model; ValueError for a
    model this install cannot load."""
    model = head_encoder.partition(":")[0]
    if model in ("", "all-MiniLM-L6-v2"):
        return default
    if model != "all-mpnet-base-v2":
        raise ValueError(f"the geopolitics head was trained on {head_encoder} vectors, which newsdigest cannot make")
    with _ENCODERS_LOCK:
        if head_encoder not in _ENCODERS:
            from summarizer import mpnet
            from summarizer.embedding import Embedder

            try:
                _ENCODERS[head_encoder] = Embedder(mpnet.model_path(), precision=head_encoder.partition(":")[2] or None)
            except mpnet.ModelUnavailable as exc:
                raise ValueError(f"the geopolitics head needs {model}: {exc}") from None
        return _ENCODERS[head_encoder]


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
    """Scores texts for the built-in topics (geopolitics and world, trained heads) and operator topics
    (zero-shot); nothing loads until the first call."""

    def __init__(self, embedder: Encoder, head: TopicHead | None = None,
                 topics: Sequence[TopicSpec] = (), geo_head: GeoHead | None = None,
                 geo_embedder: Encoder | None = None) -> None:
        self.embedder = embedder
        self._head = head
        self._geo_head = geo_head
        self._geo_embedder = geo_embedder
        # An operator topic cannot shadow a built-in one: the trained head is the definition of that name.
        self.topics = [t for t in topics if t.name not in BUILTIN_TOPICS]
        self._protos: list[np.ndarray] | None = None
        self._patterns = [_keyword_pattern(t.keywords) for t in self.topics]

    @property
    def head(self) -> TopicHead:
        """The world head (the shipped one unless another was given)."""
        if self._head is None:
            self._head = load_default_head()
        return self._head

    @property
    def geo_head(self) -> GeoHead:
        """The geopolitics head (the shipped one unless another was given)."""
        if self._geo_head is None:
            self._geo_head = load_geo_head()
        return self._geo_head

    @property
    def geo_embedder(self) -> Encoder:
        """The encoder the geopolitics head reads (all-mpnet-base-v2 for the shipped head; see encoder_for)."""
        if self._geo_embedder is None:
            self._geo_embedder = encoder_for(str(self.geo_head.meta.get("encoder", "")), self.embedder)
        return self._geo_embedder

    @property
    def names(self) -> list[str]:
        """Topic names this classifier scores."""
        return [*BUILTIN_TOPICS, *(t.name for t in self.topics)]

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
        cleaned = [undo_feed_escapes(t) for t in texts]
        X = self.embedder.encode(cleaned)
        # Both heads read the rubric's cue words (~0.65 ms a text): counted once when they share the lexicon.
        cues = self.geo_head.lexicon.features(cleaned)
        geo_encoder = self.geo_embedder
        geo = self.geo_head.score(X if geo_encoder is self.embedder else geo_encoder.encode(cleaned), cleaned, cues=cues)
        world = self.head.score(X, cleaned, cues=cues if self.head.lexicon is self.geo_head.lexicon else None)
        out = [{GEOPOLITICS: round(float(g), 4), WORLD: round(float(w), 4)}
               for g, w in zip(geo, world, strict=True)]
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

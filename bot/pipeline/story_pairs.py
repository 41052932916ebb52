"""Same-story pair scoring: the signals of one article, the features of a pair, and the learned scorer.

    article ─▶ signals(...)  (embeddings, IDF-weighted words, rare names, numbers, dates, MinHash)
    (article, member) ─▶ pair_features(a, b) ─▶ PairModel.proba ─▶ P(same event)

A story's score for a new article is the mean of the top `TOP_MEMBERS` pair probabilities against its members
(agreement with most members, not with a centroid: one stray member cannot pull in another event).

Words are weighted by rarity with document frequencies from a background news corpus shipped in
bot/resources/story_idf.json.gz ("covid", "biden" and "taliban" weigh little, "coalinga" and "zahawi" a lot:
a word the background never saw gets the highest weight). The model is a LightGBM classifier trained by
`newsdigest train dedup` on ECB+ and AllSides dev pairs (bot/resources/story_pairs.txt + .json; numbers in
docs/story.md).
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

IDF_FILE = "story_idf.json.gz"
STOP_WORDS_FILE = "stop_words_en.txt"
MODEL_FILE = "story_pairs.txt"
MODEL_META = "story_pairs.json"
ONNX_OPSET = 15  # the highest onnxmltools converts LightGBM to
# How many of a story's members an article is compared with (the most recent ones), and how many of the best
# pair probabilities make the story's score.
MAX_SCORED_MEMBERS = 8
TOP_MEMBERS = 5
BODY_TERMS = 100  # a long article keeps its heaviest words only: the vector stays small in the story state
RARE_IDF = 6.0  # a shared name this rare in the background (about 1 in 150 documents or fewer) is telling
TIME_SCALE_H = 24.0
# How many articles arrive around an article's time: counted over this span, each side of it (what is known).
RATE_WINDOW_H = 24.0
UNKNOWN_RATE = -1.0  # no publication time (or none counted): the model cannot weigh closeness in time

FEATURE_NAMES = ("lead_cos", "title_cos", "names_cos", "lead_words", "names_rarity", "rare_names",
                 "title_words", "lead_numbers_conflict", "has_time", "time_near", "body_words",
                 "shingles_jaccard", "numbers_overlap", "weekdays_overlap", "months_overlap", "rare_names_jaccard",
                 "rare_names_apart", "stream_rate")

_WORD = re.compile(r"[^\W\d_][\w'’\-]*\w|[^\W\d_]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WEEKDAY = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", re.IGNORECASE)
_MONTH = re.compile(r"\b(january|february|march|april|may|june|july|august|september|october|november|"
                    r"december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\b", re.IGNORECASE)


# ---- background word rarity --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Idf:
    """Document frequencies of lower-cased words in a background corpus of `n` news texts."""

    n: int
    df: Mapping[str, int]

    def __call__(self, word: str) -> float:
        return math.log((self.n + 1) / (self.df.get(word, 0) + 1)) + 1.0

    def save(self, path: str | Path) -> None:
        """Gzipped JSON, words sorted (reproducible bytes)."""
        doc = {"n": self.n, "df": dict(sorted(self.df.items()))}
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fh:
            fh.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())

    @classmethod
    def load(cls, path: str | Path) -> Idf:
        """Read a table written by `save`."""
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            doc = json.load(fh)
        return cls(n=int(doc["n"]), df={str(k): int(v) for k, v in doc["df"].items()})

    @classmethod
    def from_texts(cls, texts: Sequence[str], min_df: int = 2) -> Idf:
        """Count in how many texts each word occurs; words seen in fewer than `min_df` are left out (they
        then weigh as much as unseen words)."""
        df: Counter[str] = Counter()
        for t in texts:
            df.update(set(words(t)))
        return cls(n=len(texts), df={w: c for w, c in df.items() if c >= min_df})


def _stop_words() -> frozenset[str]:
    # scikit-learn's ENGLISH_STOP_WORDS, copied (bot/resources/PROVENANCE.md): importing scikit-learn for one
    # constant would add ~110 MB to the service.
    text = (resources.files("bot") / "resources" / STOP_WORDS_FILE).read_text(encoding="utf-8")
    return frozenset(w for w in text.split("\n") if w and not w.startswith("#"))


ENGLISH_STOP_WORDS = _stop_words()


@lru_cache(maxsize=1)
def default_idf() -> Idf:
    """The shipped background table (bot/resources/story_idf.json.gz)."""
    with resources.as_file(resources.files("bot") / "resources" / IDF_FILE) as p:
        return Idf.load(p)


def words(text: str) -> list[str]:
    """Lower-cased words (letters first; numbers are handled apart)."""
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def weighted(counts: Mapping[str, float], idf: Idf, limit: int | None = None) -> dict[str, float]:
    """Unit-length (1 + log tf) * idf vector of word counts, keeping the `limit` heaviest words."""
    v = {w: (1.0 + math.log(c)) * idf(w) for w, c in counts.items() if c > 0}
    if limit is not None and len(v) > limit:
        v = dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])
    norm = math.sqrt(sum(x * x for x in v.values()))
    return {w: round(x / norm, 5) for w, x in v.items()} if norm else {}


def word_vector(text: str, idf: Idf, limit: int | None = None) -> dict[str, float]:
    """IDF-weighted unit vector of a text's words, stop words left out."""
    return weighted(Counter(w for w in words(text) if w not in ENGLISH_STOP_WORDS), idf, limit)


def dot(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Dot product of two sparse vectors."""
    if len(a) > len(b):
        a, b = b, a
    return sum(x * b[w] for w, x in a.items() if w in b)


# ---- signals of one article --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signals:
    """What pair scoring needs of one article; stored with each scored member of a story."""

    key: str
    embedding: np.ndarray
    title_embedding: np.ndarray
    names: Mapping[str, int]
    lead_vec: Mapping[str, float]
    title_vec: Mapping[str, float]
    body_vec: Mapping[str, float]
    lead_numbers: frozenset[str]
    numbers: frozenset[str]
    weekdays: frozenset[str]
    months: frozenset[str]
    minhash: np.ndarray
    published: datetime | None = None

    def to_doc(self, *, exact: bool = False) -> dict[str, Any]:
        """JSON-ready form (vectors as base64 float16; float32 with `exact`, which round-trips bit for bit)."""
        def b64(a: np.ndarray, dtype: type) -> str:
            return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode()

        vec = np.float32 if exact else np.float16
        return {"key": self.key, **({"vd": "f4"} if exact else {}),
                "e": b64(self.embedding, vec), "te": b64(self.title_embedding, vec),
                "names": dict(self.names), "lv": dict(self.lead_vec), "tv": dict(self.title_vec),
                "bv": dict(self.body_vec), "ln": sorted(self.lead_numbers), "nu": sorted(self.numbers),
                "wd": sorted(self.weekdays), "mo": sorted(self.months), "mh": b64(self.minhash, np.uint32),
                "pub": self.published.isoformat() if self.published else None}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Signals:
        """Inverse of `to_doc`."""
        def arr(s: str, dtype: type) -> np.ndarray:
            return np.frombuffer(base64.b64decode(s), dtype=dtype).astype(
                np.float32 if dtype is np.float16 else dtype)

        vec = np.float32 if doc.get("vd") == "f4" else np.float16
        return cls(key=str(doc["key"]), embedding=arr(doc["e"], vec),
                   title_embedding=arr(doc["te"], vec), names={str(k): int(v) for k, v in doc["names"].items()},
                   lead_vec=dict(doc["lv"]), title_vec=dict(doc["tv"]), body_vec=dict(doc["bv"]),
                   lead_numbers=frozenset(doc["ln"]), numbers=frozenset(doc["nu"]),
                   weekdays=frozenset(doc["wd"]), months=frozenset(doc["mo"]), minhash=arr(doc["mh"], np.uint32),
                   published=datetime.fromisoformat(doc["pub"]) if doc.get("pub") else None)


def text_signals(*, key: str, title: str, lead: str, body: str, names: Mapping[str, int],
                 lead_names: Mapping[str, int], embedding: np.ndarray, title_embedding: np.ndarray,
                 minhash: np.ndarray, published: datetime | None, idf: Idf | None = None) -> Signals:
    """Signals of one article from its title, lead, body and precomputed embeddings/names/MinHash."""
    idf = idf or default_idf()
    full = f"{title}\n{body}" if title and not body.startswith(title) else body
    return Signals(
        key=key, embedding=np.asarray(embedding, np.float32), title_embedding=np.asarray(title_embedding, np.float32),
        names=dict(names), lead_vec=word_vector(lead, idf), title_vec=word_vector(title, idf) if title else {},
        body_vec=word_vector(body or title, idf, BODY_TERMS),
        lead_numbers=frozenset(w for w in lead_names if w[:1].isdigit()),
        numbers=frozenset(n.replace(",", "") for n in _NUMBER.findall(full)),
        weekdays=frozenset(w.lower() for w in _WEEKDAY.findall(full)),
        months=frozenset(w.lower()[:3] for w in _MONTH.findall(full)), minhash=minhash, published=published)


# ---- pair features -----------------------------------------------------------------------------------------

def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / min(len(a), len(b)) if a and b else -1.0


def _names_cos(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    if not a or not b:
        return 0.0
    wa = {t: 1.0 + math.log(c) for t, c in a.items() if c > 0}
    wb = {t: 1.0 + math.log(c) for t, c in b.items() if c > 0}
    na, nb = math.sqrt(sum(w * w for w in wa.values())), math.sqrt(sum(w * w for w in wb.values()))
    return dot(wa, wb) / (na * nb) if na and nb else 0.0


def pair_features(a: Signals, b: Signals, idf: Idf | None = None, *, timed: bool = True,
                  stream_rate: float | None = None) -> list[float]:
    """The model's input for one pair, in FEATURE_NAMES order (`timed=False` ignores publication times).

    `stream_rate` is how many other articles the service knows within RATE_WINDOW_H of the newer one: closeness
    in time says "same story" in a sparse stream (a dozen articles a day) and little in a busy one (hundreds).
    """
    idf = idf or default_idf()
    na = weighted({w: c for w, c in a.names.items() if not w[:1].isdigit()}, idf)
    nb = weighted({w: c for w, c in b.names.items() if not w[:1].isdigit()}, idf)
    rare_a = {w for w in na if idf(w) > RARE_IDF}
    rare_b = {w for w in nb if idf(w) > RARE_IDF}
    rare = len(rare_a & rare_b)
    # Rare names only one side has: two quakes share "Geological Survey" but not "Coalinga" and "Ventura".
    apart = min(len(rare_a - rare_b), len(rare_b - rare_a))
    title_words = dot(a.title_vec, b.title_vec) if a.title_vec and b.title_vec else dot(a.lead_vec, b.lead_vec)
    conflict = 1.0 if a.lead_numbers and b.lead_numbers and not a.lead_numbers & b.lead_numbers else 0.0
    has_time = near = 0.0
    if timed and a.published is not None and b.published is not None:
        try:
            gap_h = abs((a.published - b.published).total_seconds()) / 3600
            has_time, near = 1.0, math.exp(-gap_h / TIME_SCALE_H)
        except TypeError:  # naive vs aware: treat as unknown
            pass
    jac = float(np.mean(a.minhash == b.minhash)) if len(a.minhash) and len(a.minhash) == len(b.minhash) else 0.0
    return [float(a.embedding @ b.embedding), float(a.title_embedding @ b.title_embedding),
            _names_cos(a.names, b.names), dot(a.lead_vec, b.lead_vec), dot(na, nb), min(rare, 3) / 3,
            title_words, conflict, has_time, near, dot(a.body_vec, b.body_vec), jac,
            _overlap(a.numbers, b.numbers), _overlap(a.weekdays, b.weekdays), _overlap(a.months, b.months),
            rare / len(rare_a | rare_b) if rare_a | rare_b else -1.0, min(apart, 5) / 5,
            float(stream_rate) if has_time and stream_rate is not None else UNKNOWN_RATE]


# ---- the scorer --------------------------------------------------------------------------------------------

class PairScorer(Protocol):
    """Anything that turns pair features into P(same event)."""

    def proba(self, X: np.ndarray) -> np.ndarray: ...


class OnnxTrees:
    """A LightGBM model converted to ONNX, run by onnxruntime: the same trees and probabilities without
    importing lightgbm (and, through it, scikit-learn and scipy: ~120 MB) into the service."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.enable_cpu_mem_arena = False
        opts.log_severity_level = 3  # the converted graph declares its label output 1-long: a warning per call
        self.session = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """P(class 1) per row, as lightgbm.Booster.predict."""
        probabilities = self.session.run(None, {self.input: np.asarray(X, dtype=np.float32)})[1]
        return np.asarray(probabilities, dtype=np.float64)[:, 1]


def to_onnx(booster: Any, path: str | Path) -> None:
    """Convert a LightGBM booster to ONNX (onnxmltools) at `path`."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = onnxmltools.convert_lightgbm(booster, initial_types=[("X", FloatTensorType([None, len(FEATURE_NAMES)]))],
                                         target_opset=ONNX_OPSET, zipmap=False)
    # Retraining must be byte-stable: onnxmltools names the graph with a random uuid, and lists the opset
    # domains in set order (which differs between processes).
    model.graph.name = "story_pairs"
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in opsets:
        model.opset_import.add(domain=domain, version=version)
    Path(path).write_bytes(model.SerializeToString())


class PairModel:
    """A LightGBM model over FEATURE_NAMES (the booster, or its ONNX form), with the join threshold chosen when
    it was trained."""

    def __init__(self, booster: Any, meta: Mapping[str, Any]) -> None:
        names = tuple(meta.get("features", ()))
        if names != FEATURE_NAMES:
            raise ValueError(f"pair model features {names} do not match this version's {FEATURE_NAMES}")
        self.booster = booster
        self.meta = dict(meta)

    @property
    def threshold(self) -> float:
        """Story score at or above which an article joins a story."""
        return float(self.meta["threshold"])

    def proba(self, X: np.ndarray) -> np.ndarray:
        """P(same event) per row."""
        X = np.asarray(X, dtype=np.float64)
        if len(X) == 0:
            return np.zeros(0)
        return np.asarray(self.booster.predict(X, num_threads=1), dtype=np.float64)

    def save(self, model_path: str | Path, meta_path: str | Path) -> None:
        """LightGBM's text model format, its ONNX form beside it (`.onnx`), and a JSON of settings and
        provenance."""
        self.booster.save_model(str(model_path))
        to_onnx(self.booster, Path(model_path).with_suffix(".onnx"))
        Path(meta_path).write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, model_path: str | Path, meta_path: str | Path, *, backend: str = "onnx",
             onnx_path: str | Path | None = None) -> PairModel:
        """Read a model written by `save`: its ONNX form (the default: no lightgbm import; beside the model
        unless `onnx_path` says where), or `backend="lightgbm"` for the booster itself."""
        meta = json.loads(Path(meta_path).read_text(encoding="utf-8"))
        onnx_path = Path(onnx_path) if onnx_path is not None else Path(model_path).with_suffix(".onnx")
        if backend == "onnx" and onnx_path.exists():
            return cls(OnnxTrees(onnx_path), meta)
        import lightgbm

        return cls(lightgbm.Booster(model_file=str(model_path)), meta)


@lru_cache(maxsize=1)
def default_model() -> PairModel:
    """The shipped pair model (bot/resources/story_pairs.txt)."""
    base = resources.files("bot") / "resources"
    with resources.as_file(base / MODEL_FILE) as m, resources.as_file(base / MODEL_META) as j, \
            resources.as_file(base / MODEL_FILE.replace(".txt", ".onnx")) as o:
        return PairModel.load(m, j, onnx_path=o)


def story_score(probs: np.ndarray) -> float:
    """A story's score from its members' pair probabilities: the mean of the best TOP_MEMBERS."""
    if len(probs) == 0:
        return 0.0
    return float(np.mean(np.sort(probs)[-TOP_MEMBERS:]))


__all__ = ["ENGLISH_STOP_WORDS", "FEATURE_NAMES", "Idf", "PairModel", "PairScorer", "Signals", "default_idf", "default_model",
           "pair_features", "story_score", "text_signals", "word_vector", "words"]

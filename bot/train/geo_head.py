"""Train the geopolitics head on labelled feed items (JSON lines with `title`, `description`, `geopolitical`).

    python -m bot.train.geo_head --data geo_dev.jsonl.gz [--out-dir bot/resources]

Embeds "title. description" with all-mpnet-base-v2 (`--encoder minilm`: all-MiniLM-L6-v2), adds rubric cue-word counts
(bot/resources/geo_lexicon.json), picks the SVM's C and the decision threshold by grouped, stratified 5-fold
cross-validation (near-duplicate items, cosine >= 0.8, stay in one fold), fits on all of it and writes
geo_head.npz + geo_head.json with the file's sha256, row count and nested cross-validated scores. The result depends only on this script, the lexicon and the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.svm import SVC

from bot.datafiles import read_json_lines
from bot.pipeline.topic import (
    GEO_HEAD_FILES,
    GEO_JSON,
    GEO_NPZ,
    CueLexicon,
    GeoHead,
    article_text_for_topic,
    load_lexicon,
    undo_feed_escapes,
)
from bot.train.topic_head import metrics, sha256_of

GRID_SVM_C = (1.0, 3.0, 10.0)
LR_C = 10.0
K = 10
LEX_WEIGHT = 0.2
GRID_THRESHOLD = tuple(round(t, 3) for t in np.arange(0.15, 0.701, 0.025))
FOLDS = 5
SEED = 0
NEAR_DUPLICATE = 0.8
ENCODERS = tuple(GEO_HEAD_FILES)  # ("mpnet", "minilm"): the default first


@dataclass(frozen=True)
class GeoData:
    """Labelled feed items: model input texts (cleaned) and 0/1 labels."""

    texts: list[str]
    labels: np.ndarray


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a (gzipped) JSON-lines file; raises ValueError naming the bad line."""
    return [rec for _, rec in read_json_lines(path)]


def load_geo_jsonl(path: str | Path) -> GeoData:
    """Read items with `title`, optional `description` and `geopolitical` (0/1); ValueError if malformed."""
    texts, labels = [], []
    for n, rec in enumerate(read_jsonl(path), 1):
        label = rec.get("geopolitical")
        if label not in (0, 1) or isinstance(label, float):
            raise ValueError(f"{path}: record {n}: 'geopolitical' must be 0 or 1")
        if not isinstance(rec.get("title"), str) or not isinstance(rec.get("description") or "", str):
            raise ValueError(f"{path}: record {n}: 'title' (and 'description') must be strings")
        texts.append(undo_feed_escapes(article_text_for_topic(rec["title"], rec.get("description") or "")))
        labels.append(int(label))
    if not texts:
        raise ValueError(f"{path}: no records")
    return GeoData(texts, np.asarray(labels, dtype=np.int64))


def near_duplicate_groups(X: np.ndarray, threshold: float = NEAR_DUPLICATE) -> np.ndarray:
    """Group ids: connected components of items whose embeddings have cosine >= threshold (same story)."""
    _, groups = connected_components(csr_matrix(X @ X.T >= threshold), directed=False)
    return groups


def folds_of(X: np.ndarray, y: np.ndarray, folds: int = FOLDS,
             seed: int = SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds that keep near-duplicates together (fewer folds when positives are scarce)."""
    n_splits = max(2, min(folds, int(y.sum()), int((1 - y).sum())))
    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(X, y, near_duplicate_groups(X)))


def fit_geo_head(X: np.ndarray, texts: list[str], y: np.ndarray, lexicon: CueLexicon, *, C: float,
                 threshold: float = 0.5, meta: dict[str, Any] | None = None) -> GeoHead:
    """Fit the SVM and the logistic regression on [X, cues]; keep the embeddings for the kNN vote."""
    if len(set(y.tolist())) < 2:
        raise ValueError("need both geopolitical (1) and other (0) items")
    F = np.hstack([X, LEX_WEIGHT * lexicon.features(texts)]).astype(np.float64)
    svm = SVC(C=C, kernel="rbf", gamma="scale").fit(F, y)
    lr = LogisticRegression(C=LR_C, max_iter=5000).fit(F, y)
    return GeoHead(support=svm.support_vectors_, dual_coef=svm.dual_coef_[0].astype(np.float64),
                   svm_intercept=float(svm.intercept_[0]), gamma=float(svm._gamma),
                   lr_coef=lr.coef_[0].astype(np.float64), lr_intercept=float(lr.intercept_[0]),
                   embeddings=X.astype(np.float32), labels=y.astype(np.float64), lexicon=lexicon,
                   lex_weight=LEX_WEIGHT, k=K, threshold=threshold, meta=meta or {})


def select_params(X: np.ndarray, texts: list[str], y: np.ndarray, lexicon: CueLexicon, folds: int = FOLDS,
                  seed: int = SEED) -> tuple[float, float, float]:
    """(C, threshold, F1) with the best pooled out-of-fold F1 over the grid."""
    oof = {C: np.zeros(len(y)) for C in GRID_SVM_C}
    for tr, te in folds_of(X, y, folds, seed):
        sub = [texts[i] for i in te]
        for C in GRID_SVM_C:
            oof[C][te] = fit_geo_head(X[tr], [texts[i] for i in tr], y[tr], lexicon, C=C).logodds(X[te], sub)
    best: tuple[float, float, float] | None = None
    for C in GRID_SVM_C:
        p = expit(oof[C])
        for t in GRID_THRESHOLD:
            f1 = metrics(y == 1, p >= t)["f1"]
            if best is None or f1 > best[2] + 1e-9:
                best = (C, t, f1)
    assert best is not None
    return best


def cross_validate(X: np.ndarray, texts: list[str], y: np.ndarray, lexicon: CueLexicon | None = None,
                   folds: int = FOLDS, seed: int = SEED) -> dict[str, float]:
    """Nested cross-validation: C and threshold chosen inside each (grouped, stratified) training fold."""
    lexicon = lexicon or load_lexicon()
    pred = np.zeros(len(y), dtype=bool)
    for tr, te in folds_of(X, y, folds, seed):
        tr_texts = [texts[i] for i in tr]
        C, t, _ = select_params(X[tr], tr_texts, y[tr], lexicon, folds, seed)
        head = fit_geo_head(X[tr], tr_texts, y[tr], lexicon, C=C, threshold=t)
        pred[te] = head.score(X[te], [texts[i] for i in te]) >= 0.5
    return {"n": len(y), **metrics(y == 1, pred)}


def train(data_path: str | Path, embedder: Any, *, evaluate: bool = True,
          lexicon: CueLexicon | None = None) -> GeoHead:
    """Train a head on labelled JSON lines; with `evaluate`, nested-CV scores go into its provenance."""
    data = load_geo_jsonl(data_path)
    lexicon = lexicon or load_lexicon()
    X = embedder.encode(data.texts)
    C, t, inner_f1 = select_params(X, data.texts, data.labels, lexicon)
    meta = {"data_file": Path(data_path).name, "data_sha256": sha256_of(data_path), "n": len(data.texts),
            "positives": int(data.labels.sum()), "C": C, "lr_C": LR_C, "selection_cv_f1": round(inner_f1, 4),
            "encoder": getattr(embedder, "name", "all-MiniLM-L6-v2"), "rubric": "geo/RUBRIC.md",
            "trained_by": "python -m bot.train.geo_head"}
    if evaluate:
        meta["nested_cv"] = cross_validate(X, data.texts, data.labels, lexicon)
    return fit_geo_head(X, data.texts, data.labels, lexicon, C=C, threshold=t, meta=meta)


def main(argv: list[str] | None = None) -> int:
    """CLI: train and write geo_head.npz/geo_head.json."""
    parser = argparse.ArgumentParser(prog="newsdigest train classify --topic geopolitics",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="JSON lines (optionally gzipped): title, description, "
                                                      "geopolitical (0/1)")
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parent.parent / "resources"),
                        help="where to write geo_head.npz and geo_head.json (default: the package's)")
    parser.add_argument("--no-eval", action="store_true", help="skip the nested cross-validation report")
    parser.add_argument("--encoder", choices=ENCODERS, default=ENCODERS[0],
                        help="sentence encoder of the head (default: mpnet, all-mpnet-base-v2; minilm: the "
                             "all-MiniLM-L6-v2 the rest of the pipeline uses, lighter and ~0.01 F1 lower)")
    args = parser.parse_args(argv)
    from summarizer import mpnet
    from summarizer.embedding import Embedder

    try:
        embedder = Embedder(mpnet.model_path()) if args.encoder == "mpnet" else Embedder()
        head = train(args.data, embedder, evaluate=not args.no_eval)
    except (mpnet.ModelUnavailable, OSError, ValueError, UnicodeDecodeError) as e:
        print(f"newsdigest train classify: {e}", file=sys.stderr)
        return 2
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head.save(out / GEO_NPZ, out / GEO_JSON)
    print(json.dumps({"out": str(out), "threshold": head.threshold, **head.meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train the world-topic head on labelled news (AG News CSV format: header `class,title,description`).

    python -m bot.train.topic_head --data ag_news_dev.csv.gz [--positive 1] [--out-dir bot/resources]

Embeds title + description with all-MiniLM-L6-v2, picks k (nearest neighbours), C (logistic regression) and
the decision threshold by 5-fold cross-validation on the file, fits on all of it and writes topic_head.npz +
topic_head.json (with the file's sha256, row count and nested cross-validated scores). The result depends only
on this script and the file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold

from bot.pipeline.topic import HEAD_JSON, HEAD_NPZ, TopicHead, article_text_for_topic

GRID_C = (1.0, 3.0, 10.0)
GRID_K = (5, 10, 20)
GRID_THRESHOLD = (0.35, 0.4, 0.45, 0.5)
FOLDS = 5
SEED = 0


@dataclass(frozen=True)
class Labelled:
    """Rows of a labelled CSV: model input texts and string class labels."""

    texts: list[str]
    labels: np.ndarray


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_labelled_csv(path: str | Path) -> Labelled:
    """Read `class,title,description` rows ((gzipped) CSV); raises ValueError naming the bad row."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
    missing = {"class", "title", "description"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{path}: header must have class,title,description "
                         f"(missing {', '.join(sorted(missing))})")
    texts, labels = [], []
    for n, row in enumerate(reader, 2):
        label = (row.get("class") or "").strip()
        if not label:
            raise ValueError(f"{path}:{n}: empty class")
        texts.append(article_text_for_topic(row.get("title") or "", row.get("description") or ""))
        labels.append(label)
    if not texts:
        raise ValueError(f"{path}: no rows")
    return Labelled(texts, np.asarray(labels))


def fit_head(X: np.ndarray, labels: np.ndarray, positive: str, *, k: int, C: float, threshold: float = 0.5,
             meta: dict[str, Any] | None = None) -> TopicHead:
    """Fit the logistic regression on all classes and keep the examples for the kNN vote."""
    classes = tuple(sorted(set(labels.tolist())))
    if positive not in classes:
        raise ValueError(f"positive class {positive!r} not in the data (classes: {', '.join(classes)})")
    if len(classes) < 2:
        raise ValueError("need at least two classes")
    y = np.array([classes.index(c) for c in labels])
    lr = LogisticRegression(C=C, max_iter=5000).fit(X, y)
    coef, intercept = lr.coef_, lr.intercept_
    if len(classes) == 2:  # binary LR keeps one row; spell out both so the head is always a softmax
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return TopicHead(embeddings=X.astype(np.float32), labels=y, classes=classes, positive=positive,
                     coef=coef.astype(np.float32), intercept=intercept.astype(np.float32), k=k,
                     threshold=threshold, meta=meta or {})


def metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 of the positive class and accuracy, for booleans."""
    p, r, f, _ = precision_recall_fscore_support(truth, predicted, average="binary", zero_division=0)
    return {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
            "accuracy": round(float(accuracy_score(truth, predicted)), 4)}


def select_params(X: np.ndarray, labels: np.ndarray, positive: str, folds: int = FOLDS,
                  seed: int = SEED) -> tuple[int, float, float, float]:
    """(k, C, threshold, mean F1) with the best cross-validated F1 of the positive class over the grid."""
    skf = StratifiedKFold(folds, shuffle=True, random_state=seed)
    splits = list(skf.split(X, labels))
    best: tuple[float, int, float, float] | None = None
    f1s: dict[tuple[int, float, float], list[float]] = {}
    for tr, te in splits:
        for C in GRID_C:
            head = fit_head(X[tr], labels[tr], positive, k=GRID_K[0], C=C)
            for k in GRID_K:
                p = replace(head, k=k).proba(X[te])
                for t in GRID_THRESHOLD:
                    f1s.setdefault((k, C, t), []).append(metrics(labels[te] == positive, p >= t)["f1"])
    for (k, C, t), scores in f1s.items():
        score = float(np.mean(scores))
        if best is None or score > best[0] + 1e-9:
            best = (score, k, C, t)
    assert best is not None
    return best[1], best[2], best[3], best[0]


def cross_validate(X: np.ndarray, labels: np.ndarray, positive: str, folds: int = FOLDS,
                   seed: int = SEED) -> dict[str, float]:
    """Nested cross-validation: k, C and threshold are chosen inside each training fold; test folds pooled."""
    pred = np.zeros(len(labels), dtype=bool)
    skf = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for tr, te in skf.split(X, labels):
        k, C, t, _ = select_params(X[tr], labels[tr], positive, folds, seed)
        pred[te] = fit_head(X[tr], labels[tr], positive, k=k, C=C, threshold=t).score(X[te]) >= 0.5
    return {"n": len(labels), **metrics(labels == positive, pred)}


def train(data_path: str | Path, embedder: Any, positive: str = "1", *, evaluate: bool = True) -> TopicHead:
    """Train a head on a labelled CSV; with `evaluate`, nested-CV scores go into its provenance."""
    data = load_labelled_csv(data_path)
    X = embedder.encode(data.texts)
    k, C, t, inner_f1 = select_params(X, data.labels, positive)
    meta = {"data_file": Path(data_path).name, "data_sha256": sha256_of(data_path), "n": len(data.texts),
            "C": C, "selection_cv_f1": round(inner_f1, 4), "encoder": getattr(embedder, "name", "all-MiniLM-L6-v2"),
            "trained_by": "python -m bot.train.topic_head"}
    if evaluate:
        meta["nested_cv"] = cross_validate(X, data.labels, positive)
    return fit_head(X, data.labels, positive, k=k, C=C, threshold=t, meta=meta)


def main(argv: list[str] | None = None) -> int:
    """CLI: train and write topic_head.npz/topic_head.json."""
    parser = argparse.ArgumentParser(prog="newsdigest train classify", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True,
                        help="CSV (optionally gzipped) with header class,title,description")
    parser.add_argument("--positive", default="1", help="class value of the topic (AG News World: 1)")
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parent.parent / "resources"),
                        help="where to write topic_head.npz and topic_head.json (default: the package's)")
    parser.add_argument("--no-eval", action="store_true", help="skip the nested cross-validation report")
    args = parser.parse_args(argv)
    from summarizer.embedding import Embedder

    try:
        head = train(args.data, Embedder(), args.positive, evaluate=not args.no_eval)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        print(f"newsdigest train classify: {e}", file=sys.stderr)
        return 2
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head.save(out / HEAD_NPZ, out / HEAD_JSON)
    print(json.dumps({"out": str(out), "k": head.k, **head.meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

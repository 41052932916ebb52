"""Train the world-topic head on labelled news (AG News CSV format: header `class,title,description`).

    python -m bot.train.topic_head --data ag_news_dev.csv.gz [--positive 1] [--out-dir bot/resources]

Embeds title + description with all-MiniLM-L6-v2, adds the rubric cue-word counts (bot/resources/geo_lexicon.json)
for the logistic regression and the RBF SVM, picks k (nearest neighbours), C (logistic regression), the SVM's
C and gamma and the decision threshold by 5-fold cross-validation on the file, fits on all of it and writes
topic_head.npz + topic_head.json (with the file's sha256, row count and nested cross-validated scores). The
result depends only on this script, the lexicon and the file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC

from bot.pipeline.topic import (
    HEAD_JSON,
    HEAD_NPZ,
    CueLexicon,
    TopicHead,
    article_text_for_topic,
    expit,
    knn_vote,
    load_lexicon,
    part_logodds,
    rbf_decision,
    softmax,
    svm_logodds,
)

GRID_C = (1.0, 3.0, 10.0)
GRID_K = (5, 10, 20)
GRID_SVM_C = (1.0, 3.0, 10.0)
GRID_GAMMA = (1.0, 2.0)  # multiples of scikit-learn's gamma="scale", 1 / (features * variance) of the fit set
GRID_THRESHOLD = (0.35, 0.4, 0.45, 0.5)
LEX_WEIGHT = 0.2
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


def _class_indices(labels: np.ndarray, positive: str) -> tuple[tuple[str, ...], np.ndarray]:
    classes = tuple(sorted(set(labels.tolist())))
    if positive not in classes:
        raise ValueError(f"positive class {positive!r} not in the data (classes: {', '.join(classes)})")
    if len(classes) < 2:
        raise ValueError("need at least two classes")
    return classes, np.array([classes.index(c) for c in labels])


def model_input(X: np.ndarray, texts: Sequence[str], lexicon: CueLexicon) -> np.ndarray:
    """[embedding, LEX_WEIGHT * cue features]: the input of the logistic regression and the SVM."""
    if len(texts) != len(X):
        raise ValueError(f"{len(texts)} texts for {len(X)} embeddings")
    return np.hstack([np.asarray(X, dtype=np.float32), LEX_WEIGHT * lexicon.features(texts)])


def fit_lr(F: np.ndarray, y: np.ndarray, C: float, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(coef, intercept) of a multinomial logistic regression, one row per class (also for two classes)."""
    lr = LogisticRegression(C=C, max_iter=5000).fit(F, y)
    coef, intercept = lr.coef_, lr.intercept_
    if n_classes == 2:  # binary LR keeps one row; spell out both so the head is always a softmax
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef.astype(np.float32), intercept.astype(np.float32)


def fit_svm(F: np.ndarray, y: np.ndarray, pos: int, n_classes: int, C: float,
            gamma_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(support, coef, intercept, gamma) of a one-vs-one RBF SVM, kept as the pairwise decisions "class `pos`
    vs each other class" (> 0 favours `pos`): coef (n_support, n_classes - 1), intercept (n_classes - 1,)."""
    F64 = F.astype(np.float64)
    gamma = float(gamma_scale / (F64.shape[1] * F64.var()))
    svm = SVC(C=C, kernel="rbf", gamma=gamma, decision_function_shape="ovo").fit(F64, y)
    starts = np.concatenate([[0], np.cumsum(svm.n_support_)])
    rows = [slice(starts[c], starts[c + 1]) for c in range(n_classes)]
    others = [j for j in range(n_classes) if j != pos]
    coef = np.zeros((len(svm.support_vectors_), len(others)))
    intercept = np.zeros(len(others))
    if n_classes == 2:  # scikit-learn's binary decision favours classes_[1]
        sign = 1.0 if pos == 1 else -1.0
        coef[:, 0], intercept[0] = sign * svm.dual_coef_[0], sign * svm.intercept_[0]
    else:  # libsvm's pair (i, j), i < j: dual_coef_[j - 1] over class i's vectors, dual_coef_[i] over j's
        pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
        for col, other in enumerate(others):
            i, j = min(pos, other), max(pos, other)
            sign = 1.0 if i == pos else -1.0
            coef[rows[i], col] = sign * svm.dual_coef_[j - 1, rows[i]]
            coef[rows[j], col] = sign * svm.dual_coef_[i, rows[j]]
            intercept[col] = sign * svm.intercept_[pairs.index((i, j))]
    check = rbf_decision(F64[:50], svm.support_vectors_, coef, intercept, gamma)
    want = svm.decision_function(F64[:50])
    want = want[:, None] * (1.0 if pos == 1 else -1.0) if n_classes == 2 else np.stack(
        [want[:, pairs.index((min(pos, o), max(pos, o)))] * (1.0 if pos < o else -1.0) for o in others], axis=1)
    if not np.allclose(check, want, atol=1e-6):
        raise RuntimeError("SVM pairwise decisions do not reproduce scikit-learn's")
    return svm.support_vectors_.astype(np.float32), coef, intercept, gamma


def fit_head(X: np.ndarray, labels: np.ndarray, positive: str, *, k: int, C: float, svm_C: float = 3.0,
             svm_gamma: float = 1.0, threshold: float = 0.5, texts: Sequence[str] | None = None,
             lexicon: CueLexicon | None = None, meta: dict[str, Any] | None = None) -> TopicHead:
    """Fit the logistic regression and the SVM on all classes over [X, cues of `texts`] and keep the examples
    for the kNN vote (`svm_gamma`: a multiple of gamma="scale")."""
    classes, y = _class_indices(labels, positive)
    if texts is None:
        raise ValueError("the texts of X are needed (cue-word features)")
    lexicon = lexicon or load_lexicon()
    F = model_input(X, texts, lexicon)
    coef, intercept = fit_lr(F, y, C, len(classes))
    support, svm_coef, svm_intercept, gamma = fit_svm(F, y, classes.index(positive), len(classes), svm_C,
                                                      svm_gamma)
    return TopicHead(embeddings=X.astype(np.float32), labels=y, classes=classes, positive=positive, coef=coef,
                     intercept=intercept, k=k, threshold=threshold, meta=meta or {}, lexicon=lexicon,
                     lex_weight=LEX_WEIGHT, svm_support=support, svm_coef=svm_coef, svm_intercept=svm_intercept,
                     svm_gamma=gamma)


def metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 of the positive class and accuracy, for booleans."""
    p, r, f, _ = precision_recall_fscore_support(truth, predicted, average="binary", zero_division=0)
    return {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
            "accuracy": round(float(accuracy_score(truth, predicted)), 4)}


Params = tuple[int, float, float, float, float]  # k, C, svm_C, svm_gamma (multiple of "scale"), threshold


def select_params(X: np.ndarray, labels: np.ndarray, positive: str, texts: Sequence[str],
                  lexicon: CueLexicon | None = None, folds: int = FOLDS,
                  seed: int = SEED) -> tuple[Params, float]:
    """((k, C, svm_C, svm_gamma, threshold), mean F1) with the best cross-validated F1 of the positive class
    over the grid (mean of the folds' F1; the first of equal scores in grid order)."""
    classes, y = _class_indices(labels, positive)
    pos, n = classes.index(positive), len(classes)
    F = model_input(X, texts, lexicon or load_lexicon())
    f1s: dict[Params, list[float]] = {}
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, labels):
        truth = labels[te] == positive
        knn = {k: part_logodds(knn_vote(X[te], X[tr], y[tr], k, n)[:, pos]) for k in GRID_K}
        lr = {}
        for C in GRID_C:
            coef, intercept = fit_lr(F[tr], y[tr], C, n)
            lr[C] = part_logodds(softmax(F[te] @ coef.T + intercept, axis=1)[:, pos])
        svm = {}
        for sC in GRID_SVM_C:
            for g in GRID_GAMMA:
                support, sv_coef, sv_intercept, gamma = fit_svm(F[tr], y[tr], pos, n, sC, g)
                svm[sC, g] = svm_logodds(rbf_decision(F[te], support, sv_coef, sv_intercept, gamma))
        for C in GRID_C:
            for k in GRID_K:
                for sC in GRID_SVM_C:
                    for g in GRID_GAMMA:
                        p = expit((knn[k] + lr[C] + svm[sC, g]) / 3)
                        for t in GRID_THRESHOLD:
                            f1s.setdefault((k, C, sC, g, t), []).append(metrics(truth, p >= t)["f1"])
    best: tuple[float, Params] | None = None
    for params, scores in f1s.items():
        score = float(np.mean(scores))
        if best is None or score > best[0] + 1e-9:
            best = (score, params)
    assert best is not None
    return best[1], best[0]


def cross_validate(X: np.ndarray, labels: np.ndarray, positive: str, texts: Sequence[str],
                   folds: int = FOLDS, seed: int = SEED) -> dict[str, float]:
    """Nested cross-validation: k, C, the SVM's C and gamma and the threshold are chosen inside each training
    fold; test folds pooled."""
    lexicon = load_lexicon()
    pred = np.zeros(len(labels), dtype=bool)
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, labels):
        tr_texts = [texts[i] for i in tr]
        (k, C, sC, g, t), _ = select_params(X[tr], labels[tr], positive, tr_texts, lexicon, folds, seed)
        head = fit_head(X[tr], labels[tr], positive, k=k, C=C, svm_C=sC, svm_gamma=g, threshold=t,
                        texts=tr_texts, lexicon=lexicon)
        pred[te] = head.score(X[te], [texts[i] for i in te]) >= 0.5
    return {"n": len(labels), **metrics(labels == positive, pred)}


def train(data_path: str | Path, embedder: Any, positive: str = "1", *, evaluate: bool = True) -> TopicHead:
    """Train a head on a labelled CSV; with `evaluate`, nested-CV scores go into its provenance."""
    data = load_labelled_csv(data_path)
    lexicon = load_lexicon()
    X = embedder.encode(data.texts)
    (k, C, sC, g, t), inner_f1 = select_params(X, data.labels, positive, data.texts, lexicon)
    meta = {"data_file": Path(data_path).name, "data_sha256": sha256_of(data_path), "n": len(data.texts),
            "C": C, "svm_C": sC, "svm_gamma_scale": g, "selection_cv_f1": round(inner_f1, 4),
            "encoder": getattr(embedder, "name", "all-MiniLM-L6-v2"), "trained_by": "python -m bot.train.topic_head"}
    if evaluate:
        meta["nested_cv"] = cross_validate(X, data.labels, positive, data.texts)
    return fit_head(X, data.labels, positive, k=k, C=C, svm_C=sC, svm_gamma=g, threshold=t, texts=data.texts,
                    lexicon=lexicon, meta=meta)


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

"""Train the same-story pair model and its background word table.

    python -m bot.train.story_pairs --ecb documents_dev.jsonl.gz --allsides allsides_dev.jsonl.gz \\
        --background ag_news_dev.csv.gz xsum_dev.jsonl.gz cnndm_dev.jsonl.gz geo_dev.jsonl.gz [--out-dir DIR]

1. Document frequencies of the background texts (never the story files) -> story_idf.json.gz.
2. Every article pair of each story file, featurized by the service's own code (bot/pipeline/story.py):
   ECB+ without times (it has none); AllSides three times, so one model serves both protocols and any stream:
   without times; with its real times and the stream rate its articles really arrive at (a dozen a day); and
   as a busy live stream (different-story pairs get gaps drawn over the window, and the rate is drawn between
   STREAM_RATES). (Giving ECB+ pairs random 0-48 h gaps as timed copies was tried: it lowered every
   cross-fitted score; docs/story.md.)
3. A LightGBM classifier (fixed settings, deterministic) -> story_pairs.txt + story_pairs.json (files' sha256,
   pair counts and, with --cv, a cross-fitted estimate: each story file split in two by story, each half's
   pairs scored by a model that never saw them, articles placed online as the service places them).
The result depends only on this script and the files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bot.datafiles import read_json_lines, read_text
from bot.pipeline import story
from bot.pipeline.story_pairs import (
    FEATURE_NAMES,
    IDF_FILE,
    MODEL_FILE,
    MODEL_META,
    RATE_WINDOW_H,
    TIME_SCALE_H,
    Idf,
    PairModel,
    Signals,
    pair_features,
)
from bot.train.topic_head import sha256_of

RATE = FEATURE_NAMES.index("stream_rate")

LGBM_PARAMS = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50,
               "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8,
               "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbose": -1}
ROUNDS = 300
# The model is the mean log-odds of one booster per bagging seed. A single booster's cross-fitted ECB+ B-cubed F1
# at 0.60 ranged 0.845-0.887 over seeds 0-3 (bagging and feature sampling alone); the mean of three is steadier
# and higher on every set (docs/story.md, "The pair model").
SEEDS = (0, 1, 2)
# ECB+ pairs weigh double: the third AllSides copy would otherwise halve the share of ECB+'s hard same-topic
# negatives (cross-fitted ECB+ B-cubed F1 0.846 at weight 1, 0.871 at 2; AllSides within noise).
FILE_WEIGHTS = {"ecbplus": 2.0}
# The stream rates (articles within a day either side) a busy live copy is given: a feed list's real range.
STREAM_RATES = (20.0, 1000.0)
CV_THRESHOLDS = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


def background_texts(path: str | Path) -> list[str]:
    """News texts of a background file: AG News-style CSV (title, description) or JSON lines with
    `document`, `article` or `title`/`description` fields."""
    if str(path).removesuffix(".gz").endswith(".csv"):
        rows = csv.DictReader(io.StringIO(read_text(path)))
        return [f"{r.get('title') or ''} {r.get('description') or ''}" for r in rows]
    return [d.get("document") or d.get("article") or f"{d.get('title') or ''} {d.get('description') or ''}"
            for _, d in read_json_lines(path)]


def story_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a labelled story file (doc_id, cluster_id, text; optional title, published)."""
    from bot.eval.dedup import load_documents

    return load_documents(path)


def article_dicts(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The service's article shape for labelled records."""
    return [{"key": r["doc_id"], "title": r.get("title") or "", "text": r["text"],
             "published": parse_time(r.get("published"))} for r in records]


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (a trailing Z allowed), or None."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def pair_matrix(features: Sequence[story.StoryFeatures], idf: Idf, *, timed: bool) -> np.ndarray:
    """Features of every pair (i < j), in itertools.combinations order."""
    sig: list[Signals] = []
    for f in features:
        if f.signals is None:
            raise ValueError("features without pair signals: build them with featurize()")
        sig.append(f.signals)
    return np.asarray([pair_features(sig[i], sig[j], idf, timed=timed)
                       for i, j in itertools.combinations(range(len(sig)), 2)], dtype=np.float64)


def pair_labels(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """1 where both articles of a pair belong to the same story."""
    c = [r["cluster_id"] for r in records]
    return np.asarray([c[i] == c[j] for i, j in itertools.combinations(range(len(c)), 2)], dtype=np.int8)


def stream_gaps(X_timed: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Timed pair features with the different-story pairs' gaps drawn as in a live stream.

    AllSides has about 1.5 stories a day, so in its real times "published within a day" almost means "the same
    story"; a live feed list brings hundreds of unrelated stories a day. Same-story pairs keep their real gaps;
    different-story pairs get a gap drawn uniformly over the service's window (seeded), so the model learns that
    a large gap speaks against a join, not that a small one speaks for it.
    """
    X = X_timed.copy()
    neg = y == 0
    window_h = story.DEFAULT_WINDOW.total_seconds() / 3600
    rng = np.random.default_rng(seed)
    gap_h = rng.uniform(0.0, window_h, int(neg.sum()))
    X[neg, FEATURE_NAMES.index("time_near")] = np.exp(-gap_h / TIME_SCALE_H)
    X[:, RATE] = np.exp(rng.uniform(np.log(STREAM_RATES[0]), np.log(STREAM_RATES[1]), len(X)))
    return X


def real_rates(X_timed: np.ndarray, records: Sequence[dict[str, Any]]) -> np.ndarray:
    """Timed pair features with the stream rate the newer article of each pair sees when the file is placed in
    publication order, one article at a time (as `newsdigest eval dedup` places it): the earlier articles
    published within RATE_WINDOW_H."""
    stamps = [_timestamp(r["published"]) for r in records]
    order = sorted(range(len(records)), key=lambda i: stamps[i])
    rank = np.empty(len(records), np.int64)
    rank[order] = np.arange(len(records))
    ordered = np.asarray([stamps[i] for i in order])
    span = RATE_WINDOW_H * 3600
    # Articles before position k (in arrival order) published at or after t_k - span.
    rate_at = np.asarray([k - np.searchsorted(ordered[:k], ordered[k] - span, side="left")
                          for k in range(len(order))], dtype=np.float64)
    pairs = np.asarray(list(itertools.combinations(range(len(records)), 2)))
    newer = np.maximum(rank[pairs[:, 0]], rank[pairs[:, 1]])
    X = X_timed.copy()
    X[:, RATE] = rate_at[newer]
    return X


StorySet = tuple[list[dict[str, Any]], np.ndarray, np.ndarray | None, np.ndarray]


def training_copies(sets: dict[str, StorySet]) -> dict[str, list[np.ndarray]]:
    """Each story file's training copies, pair rows aligned with its labels: without times; and, for a timed
    file, as a busy live stream and at its real rate (the last copy is also what its timed protocol sees)."""
    return {name: [X_plain, *([stream_gaps(X_timed, y), real_rates(X_timed, records)] if X_timed is not None
                             else [])]
            for name, (records, y, X_timed, X_plain) in sets.items()}


def stacked(blocks: Sequence[tuple[np.ndarray, np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, weights) of training blocks stacked in order; each block is (X, y, its weight)."""
    return (np.vstack([X for X, _, _ in blocks]), np.concatenate([y for _, y, _ in blocks]),
            np.concatenate([np.full(len(y), w) for _, y, w in blocks]))


def fit(X: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Any:
    """One deterministic LightGBM booster per bagging seed (SEEDS), merged into one: the mean of their log-odds."""
    import lightgbm

    # A Dataset per seed: the seed also draws the rows that LightGBM's feature bins are built from.
    return merge_boosters([lightgbm.train({**LGBM_PARAMS, "seed": seed},
                                          lightgbm.Dataset(X, label=y, weight=weight, feature_name=list(FEATURE_NAMES)),
                                          num_boost_round=ROUNDS)
                           for seed in SEEDS])


def merge_boosters(boosters: Sequence[Any]) -> Any:
    """One booster whose raw score is the mean of `boosters`' raw scores (log-odds for a binary model): every
    tree of every booster, each leaf value divided by their number. LightGBM has no API for this, so it is done
    on its text model format (documented, stable across 4.x); `tree_sizes` is dropped, so LightGBM parses the
    trees one after another."""
    import lightgbm

    if len(boosters) == 1:
        return boosters[0]
    k = len(boosters)
    texts = [b.model_to_string() for b in boosters]
    head = re.sub(r"^tree_sizes=.*\n", "", texts[0].partition("\nTree=0\n")[0] + "\n", flags=re.M).rstrip("\n")
    trees: list[str] = []
    for text in texts:
        body = "Tree=0\n" + text.partition("\nTree=0\n")[2].partition("\nend of trees")[0]
        for block in re.split(r"\n(?=Tree=\d+\n)", body.strip("\n")):
            block = re.sub(r"^Tree=\d+", f"Tree={len(trees)}", block)
            block = re.sub(r"^leaf_value=(.*)$",
                           lambda m: "leaf_value=" + " ".join(repr(float(v) / k) for v in m.group(1).split()),
                           block, flags=re.M)
            trees.append(block)
    tail = "end of trees" + texts[0].partition("\nend of trees")[2]
    return lightgbm.Booster(model_str=head + "\n\n" + "\n\n".join(trees) + "\n\n" + tail)


def _timestamp(value: Any) -> float:
    when = parse_time(value)
    if when is None:
        raise ValueError(f"no publication time: {value!r}")
    return when.timestamp()


def half_of(cluster_id: str) -> int:
    """A stable split of stories in two (md5 parity of the story id)."""
    return int(hashlib.md5(str(cluster_id).encode()).hexdigest(), 16) % 2


def cluster_with(probs: np.ndarray, order: Sequence[int], times: Sequence[float | None],
                 threshold: float, window_s: float | None) -> list[int]:
    """Online placement on a precomputed pair-probability matrix, as StoryIndex places articles: the story
    whose best member probabilities (story_pairs.story_score over its recent members) join it (story.joins_story:
    the threshold, or for an article with a time a clear lead over the others)."""
    from bot.pipeline.story_pairs import MAX_SCORED_MEMBERS, story_score

    stories: list[list[int]] = []
    label = [0] * len(order)
    params = replace(story.DEFAULT_PARAMS, join_threshold=threshold)
    for i in order:
        ids: list[int] = []
        scores: list[float] = []
        t_i = times[i]
        for s, members in enumerate(stories):
            t_last = times[members[-1]]
            if window_s is not None and t_i is not None and t_last is not None and abs(t_i - t_last) > window_s:
                continue
            ids.append(s)
            scores.append(story_score(probs[i, members[-MAX_SCORED_MEMBERS:]]))
        k = int(np.argmax(scores)) if scores else -1
        if k >= 0 and story.joins_story(scores, k, params, dated=t_i is not None):
            best = ids[k]
            stories[best].append(i)
            label[i] = best
        else:
            stories.append([i])
            label[i] = len(stories) - 1
    return label


def cross_fitted(sets: dict[str, StorySet], log: Callable[[str], None]) -> dict[str, Any]:
    """Cross-fitted B-cubed scores: for each story file and half, a model trained on every other file and the
    other half; pairs across halves get the mean of both halves' models."""
    from bot.eval.dedup import bcubed

    copies = training_copies(sets)
    out: dict[str, Any] = {}
    for name, (records, y, X_timed, X_plain) in sets.items():
        halves = np.asarray([half_of(r["cluster_id"]) for r in records])
        pairs = np.asarray(list(itertools.combinations(range(len(records)), 2)))
        ph = np.where(halves[pairs[:, 0]] == halves[pairs[:, 1]], halves[pairs[:, 0]], -1)
        p_timed, p_plain = np.zeros(len(pairs)), np.zeros(len(pairs))
        for h in (0, 1):
            keep = ph == h
            blocks = [(c, oy, FILE_WEIGHTS.get(other, 1.0)) for other, (_, oy, _, _) in sets.items()
                      if other != name for c in copies[other]]
            blocks += [(c[keep], y[keep], FILE_WEIGHTS.get(name, 1.0)) for c in copies[name]]
            booster = fit(*stacked(blocks))
            X_real = copies[name][-1] if X_timed is not None else None
            for target, X in ((p_plain, X_plain), (p_timed, X_real)):
                if X is None:
                    continue
                unseen, across = ph == 1 - h, ph == -1
                target[unseen] = booster.predict(X[unseen])
                target[across] += 0.5 * booster.predict(X[across])
            log(f"cv {name}: half {h} done")
        n = len(records)
        gold = [r["cluster_id"] for r in records]
        res: dict[str, Any] = {}
        for protocol, p in (("dense", p_plain), ("timed", p_timed if X_timed is not None else None)):
            if p is None:
                continue
            M = np.zeros((n, n))
            M[pairs[:, 0], pairs[:, 1]] = p
            M[pairs[:, 1], pairs[:, 0]] = p
            times: list[float | None]
            window: float | None
            if protocol == "timed":  # X_timed exists only when every record has a publication time
                stamps = [_timestamp(r["published"]) for r in records]
                times, order, window = list(stamps), sorted(range(n), key=lambda i: stamps[i]), \
                    story.DEFAULT_WINDOW.total_seconds()
            else:
                times, order, window = [None] * n, list(range(n)), None
            res[protocol] = {str(t): bcubed(cluster_with(M, order, times, t, window), gold) for t in CV_THRESHOLDS}
        out[name] = res
    return out


def train(ecb: str | Path, allsides: str | Path, background: Sequence[str | Path], embedder: Any, *,
          cv: bool = False, log: Callable[[str], None] = lambda s: None) -> tuple[Idf, PairModel]:
    """Build the background table and the pair model (see the module docstring)."""
    texts = [t for path in background for t in background_texts(path)]
    if not texts:
        raise ValueError("the background files hold no texts")
    idf = Idf.from_texts(texts)
    log(f"background: {len(texts)} texts, {len(idf.df)} words")
    sets: dict[str, StorySet] = {}
    for name, path in (("ecbplus", ecb), ("allsides", allsides)):
        records = story_records(path)
        feats = story.featurize(article_dicts(records), embedder.encode, idf=idf)
        timed = all(r.get("published") for r in records)
        sets[name] = (records, pair_labels(records), pair_matrix(feats, idf, timed=True) if timed else None,
                      pair_matrix(feats, idf, timed=False))
        log(f"{name}: {len(records)} articles, {int(sets[name][1].sum())} same-story pairs")
    X, y, weight = stacked([(c, sets[name][1], FILE_WEIGHTS.get(name, 1.0))
                            for name, cs in training_copies(sets).items() for c in cs])
    booster = fit(X, y, weight)
    meta: dict[str, Any] = {
        "features": list(FEATURE_NAMES), "threshold": story.DEFAULT_PARAMS.join_threshold,
        "clear_threshold": story.DEFAULT_PARAMS.clear_threshold, "clear_margin": story.DEFAULT_PARAMS.clear_margin,
        "lightgbm": LGBM_PARAMS, "rounds": ROUNDS, "seeds": list(SEEDS), "file_weights": FILE_WEIGHTS,
        "stream_rates": list(STREAM_RATES), "pairs": int(len(y)), "positive_pairs": int(y.sum()),
        "files": {Path(p).name: sha256_of(p) for p in (ecb, allsides, *background)},
        "story_files": [sha256_of(ecb), sha256_of(allsides)], "encoder": getattr(embedder, "name", "all-MiniLM-L6-v2"),
        "trained_by": "python -m bot.train.story_pairs"}
    if cv:
        meta["cross_fitted_bcubed"] = cross_fitted(sets, log)
    return idf, PairModel(booster, meta)


def main(argv: list[str] | None = None) -> int:
    """CLI: `newsdigest train dedup`; writes the three files and prints one JSON summary."""
    parser = argparse.ArgumentParser(prog="newsdigest train dedup", description=__doc__.splitlines()[0])
    parser.add_argument("--ecb", required=True, help="ECB+-format JSON lines (doc_id, cluster_id, text)")
    parser.add_argument("--allsides", required=True,
                        help="AllSides-format JSON lines (doc_id, cluster_id, title, text, published)")
    parser.add_argument("--background", nargs="+", required=True,
                        help="background news texts for word rarity (AG News CSV, JSON lines)")
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parent.parent / "resources"),
                        help="where to write the model and the word table (default: the package's)")
    parser.add_argument("--cv", action="store_true", help="also compute the cross-fitted estimate (slow)")
    args = parser.parse_args(argv)
    from summarizer.embedding import Embedder

    try:
        idf, model = train(args.ecb, args.allsides, args.background, Embedder(), cv=args.cv,
                           log=lambda s: print(s, file=sys.stderr))
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        print(f"newsdigest train dedup: {e}", file=sys.stderr)
        return 2
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    idf.save(out / IDF_FILE)
    model.save(out / MODEL_FILE, out / MODEL_META)
    print(json.dumps({"out": str(out), **{k: v for k, v in model.meta.items() if k != "lightgbm"}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

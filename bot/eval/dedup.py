"""Evaluate online same-story detection on ECB+-format documents (B-cubed and pairwise P/R/F1 vs gold events).

Documents are fed one at a time in file order, as a live bot would see them. The baseline of the same run is
the rule two peer projects use: join the nearest story if the cosine of MiniLM embeddings of the first 3
sentences to its centroid is >= 0.75, else start a new one.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.pipeline import story

BASELINE_THRESHOLD = 0.75


def load_documents(path: str | Path) -> list[dict]:
    """Documents with `doc_id`, `cluster_id` and `text` from a (gzipped) JSON-lines file, in file order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            missing = {"doc_id", "cluster_id", "text"} - set(d)
            if missing:
                raise ValueError(f"{path}:{n}: missing field(s) {', '.join(sorted(missing))}")
            docs.append(d)
    if not docs:
        raise ValueError(f"{path}: no documents")
    return docs


def bcubed(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> dict[str, float]:
    """B-cubed precision, recall and F1 of a clustering against gold labels."""
    pc: dict[Hashable, set[int]] = defaultdict(set)
    gc: dict[Hashable, set[int]] = defaultdict(set)
    for i, (p, g) in enumerate(zip(pred, gold, strict=True)):
        pc[p].add(i)
        gc[g].add(i)
    overlap = [len(pc[p] & gc[g]) for p, g in zip(pred, gold, strict=True)]
    prec = float(np.mean([o / len(pc[p]) for o, p in zip(overlap, pred, strict=True)]))
    rec = float(np.mean([o / len(gc[g]) for o, g in zip(overlap, gold, strict=True)]))
    return _prf(prec, rec)


def pairwise(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> dict[str, float]:
    """Pairwise precision, recall and F1: pairs put together vs pairs that belong together."""
    def pairs(labels: Sequence[Hashable]) -> set[tuple[int, int]]:
        groups: dict[Hashable, list[int]] = defaultdict(list)
        for i, lab in enumerate(labels):
            groups[lab].append(i)
        return {(a, b) for g in groups.values() for i, a in enumerate(g) for b in g[i + 1:]}

    pp, gp = pairs(pred), pairs(gold)
    tp = len(pp & gp)
    return _prf(tp / len(pp) if pp else 0.0, tp / len(gp) if gp else 0.0)


def _prf(p: float, r: float) -> dict[str, float]:
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def scores(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> dict:
    """The contract's scoring block for one clustering."""
    return {"bcubed": bcubed(pred, gold), "pairwise": pairwise(pred, gold),
            "clusters": {"predicted": len(set(pred)), "gold": len(set(gold))}}


def cluster_online(docs: Sequence[dict], encode: Callable[[list[str]], np.ndarray],
                   params: story.StoryParams = story.DEFAULT_PARAMS) -> list[int]:
    """Story id of each document, placing them one at a time with the StoryIndex (what the bot does)."""
    articles = [{"key": d["doc_id"], "title": "", "text": d["text"]} for d in docs]
    feats = story.featurize(articles, encode, params)
    index = story.StoryIndex(params)
    new_ids = itertools.count(1)
    out = []
    for f in feats:
        decision, state = story.place(index, f)
        sid = decision.story_id if decision.story_id is not None else next(new_ids)
        index.add_story(sid, state)
        out.append(sid)
    return out


def cluster_baseline(docs: Sequence[dict], encode: Callable[[list[str]], np.ndarray],
                     threshold: float = BASELINE_THRESHOLD) -> list[int]:
    """Peer rule: nearest story centroid by first-3-sentence embedding, join if cosine >= threshold."""
    vecs = encode([" ".join(story.sentences(d["text"], 3)) for d in docs])
    sums: list[np.ndarray] = []
    out = []
    for v in vecs:
        if sums:
            cents = np.stack(sums)
            sims = cents @ v / np.linalg.norm(cents, axis=1)
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                sums[j] = sums[j] + v
                out.append(j)
                continue
        sums.append(v.astype(np.float32).copy())
        out.append(len(sums) - 1)
    return out


def run(data_path: str | Path, params: story.StoryParams = story.DEFAULT_PARAMS,
        embedder: Any = None) -> dict:
    """Score online same-story detection and the peer baseline on one ECB+-format file."""
    docs = load_documents(data_path)
    if embedder is None:
        from summarizer.embedding import Embedder

        embedder = Embedder()
    gold = [d["cluster_id"] for d in docs]
    result = {"n": len(docs), **scores(cluster_online(docs, embedder.encode, params), gold)}
    result["baseline"] = scores(cluster_baseline(docs, embedder.encode), gold)
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI: `newsdigest eval dedup --data FILE.jsonl.gz`; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="newsdigest eval dedup", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ECB+-format JSON lines (doc_id, cluster_id, text)")
    parser.add_argument("--threshold", type=float, default=story.DEFAULT_PARAMS.join_threshold,
                        help="same-story score threshold (default: %(default)s)")
    parser.add_argument("--embed-weight", type=float, default=story.DEFAULT_PARAMS.embed_weight,
                        help="weight of the lead-embedding cosine in the score (default: %(default)s)")
    args = parser.parse_args(argv)
    params = story.StoryParams(join_threshold=args.threshold, embed_weight=args.embed_weight)
    try:
        result = run(args.data, params)
    except (OSError, ValueError) as e:
        print(f"newsdigest eval dedup: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

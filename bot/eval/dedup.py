"""Evaluate online same-story detection on labelled articles (B-cubed and pairwise P/R/F1 vs gold stories).

Records have `doc_id, cluster_id, text` and optionally `title, published, outlet` (ECB+ and AllSides format).
Two protocols, both placing articles one at a time through the service's own code (StoryIndex, place):
- `timed`: in `published` order, with publication times and the service's time window;
- `dense`: in file order, with no time information and no window (a busy deployment's worth of confusable
  stories at once).
The default is `timed` when every record has `published`, else `dense`. The baseline of the same run is the
rule peer projects use: join the nearest story if the cosine of the MiniLM embedding of title + lead to its
centroid is >= 0.75, else start a new one (under the same protocol: order and window).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bot.datafiles import read_json_lines
from bot.pipeline import story

BASELINE_THRESHOLD = 0.75
Protocol = Literal["timed", "dense"]


def default_protocol(docs: Sequence[dict[str, Any]]) -> Protocol:
    """`timed` when every record has a publication time, else `dense`."""
    return "timed" if all(d.get("published") for d in docs) else "dense"


def arrival(docs: Sequence[dict[str, Any]], protocol: Protocol) -> list[int]:
    """The order articles are placed in: by publication time (stable) or file order."""
    if protocol == "timed":
        return sorted(range(len(docs)), key=lambda i: docs[i]["published"])
    return list(range(len(docs)))


def load_documents(path: str | Path) -> list[dict[str, Any]]:
    """Documents with `doc_id`, `cluster_id` and `text` from a (gzipped) JSON-lines file, in file order;
    raises ValueError naming the line of a bad record."""
    docs = []
    for n, d in read_json_lines(path):
        missing = {"doc_id", "cluster_id", "text"} - set(d)
        if missing:
            raise ValueError(f"{path}:{n}: missing field(s) {', '.join(sorted(missing))}")
        if d.get("published"):
            try:
                published = datetime.fromisoformat(str(d["published"]).replace("Z", "+00:00"))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: published is not an ISO 8601 time: {d['published']}") from e
            if published.tzinfo is None:
                published = published.replace(tzinfo=UTC)
            d = {**d, "published": published}
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


def scores(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> dict[str, Any]:
    """The contract's scoring block for one clustering."""
    return {"bcubed": bcubed(pred, gold), "pairwise": pairwise(pred, gold),
            "clusters": {"predicted": len(set(pred)), "gold": len(set(gold))}}


def cluster_online(docs: Sequence[dict[str, Any]], encode: Callable[[list[str]], np.ndarray],
                   params: story.StoryParams = story.DEFAULT_PARAMS, protocol: Protocol = "dense",
                   model: Any = None) -> list[int]:
    """Story id of each document, placing them one at a time with the StoryIndex (what the service does)."""
    timed = protocol == "timed"
    if timed:
        params = replace(params, window=params.window or story.DEFAULT_WINDOW)
    else:
        params = replace(params, window=None)
    order = arrival(docs, protocol)
    articles = [{"key": docs[i]["doc_id"], "title": docs[i].get("title") or "", "text": docs[i]["text"],
                 "outlet": docs[i].get("outlet") or "",
                 "published": docs[i].get("published") if timed else None} for i in order]
    feats = story.featurize(articles, encode, params)
    index = story.StoryIndex(params, model)
    new_ids = itertools.count(1)
    out = [0] * len(docs)
    for i, f in zip(order, feats, strict=True):
        if timed and params.window is not None:
            if f.published is None:  # default_protocol picks `timed` only when every document has a time
                raise ValueError(f"document {f.key} has no publication time under the timed protocol")
            index.evict_before(f.published - params.window)
        decision, state = story.place(index, f, f.published)
        sid = decision.story_id if decision.story_id is not None else next(new_ids)
        index.add_story(sid, state)
        out[i] = sid
    return out


def cluster_baseline(docs: Sequence[dict[str, Any]], encode: Callable[[list[str]], np.ndarray],
                     threshold: float = BASELINE_THRESHOLD, protocol: Protocol = "dense") -> list[int]:
    """Peer rule: nearest story centroid by title+lead embedding, join if cosine >= threshold (timed: in
    publication order, among stories updated within the window)."""
    order = arrival(docs, protocol)
    vecs = encode([story.lead_text(docs[i].get("title") or "", docs[i]["text"], 3) for i in order])
    window = story.DEFAULT_WINDOW
    sums: list[np.ndarray] = []
    last: list[Any] = []
    out = [0] * len(docs)
    for i, v in zip(order, vecs, strict=True):
        when = docs[i].get("published") if protocol == "timed" else None
        if sums:
            cents = np.stack(sums)
            sims = cents @ v / np.linalg.norm(cents, axis=1)
            if when is not None:
                sims[[when - t > window for t in last]] = -1.0
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                sums[j] = sums[j] + v
                last[j] = when
                out[i] = j
                continue
        sums.append(v.astype(np.float32).copy())
        last.append(when)
        out[i] = len(sums) - 1
    return out


def in_training_data(data_path: str | Path) -> bool:
    """Whether the file is one the shipped pair model was trained on."""
    from bot.pipeline.story_pairs import default_model
    from bot.train.topic_head import sha256_of

    return sha256_of(data_path) in default_model().meta.get("story_files", [])


def run(data_path: str | Path, params: story.StoryParams = story.DEFAULT_PARAMS,
        embedder: Any = None, protocol: Protocol | None = None) -> dict[str, Any]:
    """Score online same-story detection and the peer baseline on one file under one protocol."""
    docs = load_documents(data_path)
    protocol = protocol or default_protocol(docs)
    if protocol == "timed" and not all(d.get("published") for d in docs):
        raise ValueError(f"{data_path}: the timed protocol needs `published` on every record")
    if embedder is None:
        from summarizer.embedding import Embedder

        embedder = Embedder()
    gold = [d["cluster_id"] for d in docs]
    result = {"n": len(docs), "protocol": protocol,
              **scores(cluster_online(docs, embedder.encode, params, protocol), gold)}
    result["baseline"] = scores(cluster_baseline(docs, embedder.encode, protocol=protocol), gold)
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI: `newsdigest eval dedup --data FILE [--protocol timed|dense]`; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="newsdigest eval dedup", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True,
                        help="JSON lines with doc_id, cluster_id, text (optional title, published, outlet)")
    parser.add_argument("--protocol", choices=("timed", "dense"),
                        help="timed: publication order, times and window; dense: file order, no time "
                             "(default: timed when every record has `published`)")
    parser.add_argument("--threshold", type=float, default=story.DEFAULT_PARAMS.join_threshold,
                        help="same-story score threshold (default: %(default)s)")
    args = parser.parse_args(argv)
    params = replace(story.DEFAULT_PARAMS, join_threshold=args.threshold)
    try:
        if in_training_data(args.data):
            print(f"{Path(args.data).name} is part of the shipped pair model's training data: these numbers are "
                  "in-sample (`newsdigest train dedup --cv` reports the cross-fitted estimate)", file=sys.stderr)
        result = run(args.data, params, protocol=args.protocol)
    except (OSError, ValueError) as e:
        print(f"newsdigest eval dedup: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

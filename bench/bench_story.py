"""Time to place one new article against N stored stories: StoryIndex (HNSW via usearch above its size
threshold) beside numpy brute force over the same stories, in the same run; memory of each.

    python bench/bench_story.py [--sizes 10000,100000,1000000] [--queries 200]

Vectors are synthetic but clustered like news (stories around topics; queries are noisy copies of a stored
story's centroid, cosine ~0.85 to it). "place" = candidates (exact keys, MinHash LSH, k nearest centroids) +
decide (pair-model scoring against each candidate's members), what the runner calls per article. The 1M run
stores no members per story (no LSH entries, no pair scoring) to keep the bench's memory at a few GB; the LSH
lookup is a hash-table probe whose cost does not grow with N.
Also prints the numpy-vs-HNSW crossover that sets StoryParams.ann_min_size.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from dataclasses import replace

import numpy as np

from bot.pipeline import story, story_pairs

DIM = story.DIM


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def synthetic_centroids(n: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """n unit vectors around n/50 topic centres."""
    centres = unit(rng.standard_normal((max(n // 50, 1), DIM)).astype(np.float32))
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        topic = rng.integers(0, len(centres), e - s)
        noise = rng.standard_normal((e - s, DIM)).astype(np.float32) / np.sqrt(DIM)
        out[s:e] = unit(centres[topic] + 0.9 * noise)
    return out


def signals(key: str, vec: np.ndarray, terms: dict[str, int], minhash: np.ndarray) -> story_pairs.Signals:
    text = " ".join(terms)
    return story_pairs.text_signals(key=key, title=text, lead=text, body=text, names=terms, lead_names=terms,
                                    embedding=vec, title_embedding=vec, minhash=minhash, published=None)


def states_for(vecs: np.ndarray, rng: np.random.Generator, members: bool) -> list[story.StoryState]:
    out = []
    for i, v in enumerate(vecs):
        terms = {f"t{j}": 1 for j in rng.integers(0, 5000, 8)}
        mh = rng.integers(0, 2**32, 128, dtype=np.uint64).astype(story.MINHASH_DTYPE)
        m = [story.StoryMember(key=f"a{i}", minhash=mh, signals=signals(f"a{i}", v, terms, mh))] if members else []
        out.append(story.StoryState(centroid=v, n_members=1, terms=terms, members=m))
    return out


def queries_for(vecs: np.ndarray, rng: np.random.Generator, q: int) -> list[story.StoryFeatures]:
    pick = rng.integers(0, len(vecs), q)
    noisy = unit(vecs[pick] + 0.6 * rng.standard_normal((q, DIM)).astype(np.float32) / np.sqrt(DIM))
    out = []
    for i in range(q):
        mh = rng.integers(0, 2**32, 128, dtype=np.uint64).astype(story.MINHASH_DTYPE)
        terms = {"t1": 1, "t2": 1}
        out.append(story.StoryFeatures(key=f"q{i}", embedding=noisy[i], terms=terms, lead_terms={}, minhash=mh,
                                       signals=signals(f"q{i}", noisy[i], terms, mh)))
    return out, pick


def time_place(index: story.StoryIndex, feats: list[story.StoryFeatures]) -> tuple[float, list[list[int]]]:
    tops = []
    t = time.perf_counter()
    for f in feats:
        cands = index.candidates(f)
        story.decide(f, cands, index.params)
        tops.append([c.story_id for c in sorted(cands, key=lambda c: -c.cosine)])
    return (time.perf_counter() - t) / len(feats), tops


def bench_size(n: int, q: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vecs = synthetic_centroids(n, rng)
    states = states_for(vecs, rng, members=n <= 100_000)
    del vecs
    feats, _ = queries_for(np.stack([s.centroid for s in states[:: max(n // 5000, 1)]]), rng, q)
    gc.collect()
    results = {}
    for name, params in (("numpy brute force", replace(story.DEFAULT_PARAMS, ann_min_size=10**12)),
                         ("StoryIndex (HNSW)", story.DEFAULT_PARAMS)):
        before = rss_mb()
        t = time.perf_counter()
        index = story.StoryIndex(params)
        index.add_stories(enumerate(states))
        build = time.perf_counter() - t
        mem = rss_mb() - before
        per, tops = time_place(index, feats)
        ann_mb = index._ann.memory_usage / 1e6 if index.uses_ann else index._mat.nbytes / 1e6
        results[name] = (per, tops)
        print(f"  {name:18s} build {build:7.1f} s   place {per * 1e3:8.3f} ms/article   "
              f"vector search structure {ann_mb:7.0f} MB   index RSS +{mem:6.0f} MB", flush=True)
        del index
        gc.collect()
    (bf, bf_tops), (ann, ann_tops) = results["numpy brute force"], results["StoryIndex (HNSW)"]
    recall1 = np.mean([a[:1] == b[:1] for a, b in zip(ann_tops, bf_tops, strict=True)])
    recall10 = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(ann_tops, bf_tops, strict=True)])
    print(f"  ratio brute/HNSW: {bf / ann:.1f}x faster per article; HNSW top-1 = brute top-1 for "
          f"{recall1:.1%} of queries, top-10 overlap {recall10:.1%}", flush=True)


def crossover(q: int = 300) -> None:
    """Nearest-centroid search alone: numpy vs usearch at small sizes (sets ann_min_size)."""
    from usearch.index import Index

    rng = np.random.default_rng(1)
    print("numpy vs HNSW nearest-20 search, per query:")
    for n in (500, 1000, 2000, 4000, 8000):
        vecs = synthetic_centroids(n, rng)
        qs = unit(vecs[rng.integers(0, n, q)] + 0.6 * rng.standard_normal((q, DIM)).astype(np.float32) / 20)
        t = time.perf_counter()
        for v in qs:
            s = vecs @ v
            np.argpartition(-s, 19)[:20]
        tn = (time.perf_counter() - t) / q
        idx = Index(ndim=DIM, metric="cos", dtype=story.ANN_DTYPE, connectivity=story.ANN_CONNECTIVITY,
                    expansion_add=story.ANN_EXPANSION_ADD, expansion_search=story.ANN_EXPANSION_SEARCH)
        idx.add(np.arange(n, dtype=np.uint64), vecs)
        t = time.perf_counter()
        for v in qs:
            idx.search(v, 20, threads=1)
        tu = (time.perf_counter() - t) / q
        print(f"  n={n:6d}  numpy {tn * 1e6:7.0f} us   HNSW {tu * 1e6:7.0f} us   ratio {tn / tu:5.2f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-crossover", action="store_true")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}  HNSW: dtype={story.ANN_DTYPE} M={story.ANN_CONNECTIVITY} "
          f"ef_add={story.ANN_EXPANSION_ADD} ef_search={story.ANN_EXPANSION_SEARCH} "
          f"({story.ANN_EXPANSION_SEARCH_LARGE} from {story.ANN_LARGE:,})  "
          f"k={story.DEFAULT_PARAMS.k}  "
          f"ann_min_size={story.DEFAULT_PARAMS.ann_min_size}")
    if not args.no_crossover:
        crossover()
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"{n:,} stored stories:", flush=True)
        bench_size(n, args.queries)


if __name__ == "__main__":
    main()

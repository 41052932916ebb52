"""What the geopolitics head's encoder costs: all-mpnet-base-v2 against all-MiniLM-L6-v2 (the baseline), both w8
ONNX as the service runs them, on the same feed items, in one bench run.

For each encoder, in a fresh child process of its own (so neither pays the other's one-time costs): resident
memory added by loading its session and encoding the items once (RSS before and after; onnxruntime and
tokenizers are imported before), and the time per item (title + description, batched as the service batches), the median
of --repeats passes. Prints one JSON object with both and the mpnet/MiniLM ratios.
Usage:  python bench/bench_geo_encoder.py [--data geo_dev.jsonl.gz] [--items 400] [--repeats 3] [--threads N]
Without --data it uses the 40 real items of tests/data/geo_sample.jsonl, repeated up to --items.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    """This process's resident set size (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(name: str, embedder: object, texts: list[str], repeats: int) -> dict[str, float]:
    """Load + first pass (memory), then timed passes."""
    before = rss_mb()
    embedder.encode(texts)  # type: ignore[attr-defined]
    loaded = rss_mb()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        embedder.encode(texts)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t)
    per_item = statistics.median(times) / len(texts) * 1000
    return {"encoder": name, "rss_added_mb": round(loaded - before, 1), "ms_per_item": round(per_item, 2)}


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="geo JSON lines (default: tests/data/geo_sample.jsonl)")
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for onnxruntime")
    parser.add_argument("--only", choices=("minilm", "mpnet"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only is None:
        import subprocess

        rows = {}
        for which in ("minilm", "mpnet"):
            cmd = [sys.executable, __file__, "--only", which, "--items", str(args.items), "--repeats", str(args.repeats)]
            cmd += (["--data", args.data] if args.data else []) + (["--threads", str(args.threads)] if args.threads else [])
            rows[which] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        base, big = rows["minilm"], rows["mpnet"]
        print(json.dumps({"items": args.items, "cpus": os.cpu_count(), "baseline": base, "mpnet": big,
                          "ratio_time": round(big["ms_per_item"] / base["ms_per_item"], 2),
                          "ratio_rss_added": round(big["rss_added_mb"] / max(base["rss_added_mb"], 1e-9), 2)}))
        return 0
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import onnxruntime  # noqa: F401  # imported first, so each RSS figure is the model's session, not the library
    import tokenizers  # noqa: F401

    from bot.train.geo_head import load_geo_jsonl
    from summarizer import mpnet
    from summarizer.embedding import Embedder

    texts = load_geo_jsonl(args.data or ROOT / "tests" / "data" / "geo_sample.jsonl").texts
    texts = (texts * (args.items // len(texts) + 1))[:args.items]
    if args.only == "minilm":
        print(json.dumps(measure("all-MiniLM-L6-v2:w8", Embedder(), texts, args.repeats)))
    else:
        print(json.dumps(measure("all-mpnet-base-v2:w8", Embedder(mpnet.model_path()), texts, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

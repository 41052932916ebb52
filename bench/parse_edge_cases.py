"""Run feedparser's edge-case suite through the entry stage: count parsed feeds, ParseErrors and crashes.

Usage: python bench/parse_edge_cases.py --data /tmp/feeds/rss_feeds/feedparser_edge_cases
Any exception other than ParseError is a crash and is printed. The timing line compares the stage with plain
`feedparser.parse` on the same files in the same process.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from bot.errors import ParseError  # noqa: E402
from bot.pipeline.entry import parse_feed  # noqa: E402


def run(data: Path) -> dict:
    """Parse every file under `data`; return counts, per-folder counts, crashes and timings."""
    files = sorted(p for p in data.rglob("*") if p.is_file())
    counts: Counter[str] = Counter()
    by_folder: dict[str, Counter[str]] = {}
    crashes: list[dict[str, str]] = []
    stage_s = 0.0
    for path in files:
        body = path.read_bytes()
        folder = path.parent.name
        start = time.perf_counter()
        try:
            feed = parse_feed(body, url=f"http://example.org/{path.name}")
            outcome = "parsed_with_entries" if feed.entries else "parsed_empty"
        except ParseError:
            outcome = "parse_error"
        except Exception as exc:  # the point of this script: anything but ParseError is a crash
            outcome = "crash"
            crashes.append({"file": str(path.relative_to(data)), "error": f"{type(exc).__name__}: {exc}",
                            "where": traceback.format_exc(limit=-2)})
        stage_s += time.perf_counter() - start
        counts[outcome] += 1
        by_folder.setdefault(folder, Counter())[outcome] += 1
    start = time.perf_counter()
    for path in files:
        feedparser.parse(io.BytesIO(path.read_bytes()))
    baseline_s = time.perf_counter() - start
    return {
        "files": len(files),
        "parsed": counts["parsed_with_entries"] + counts["parsed_empty"],
        "parsed_with_entries": counts["parsed_with_entries"],
        "parse_errors": counts["parse_error"],
        "crashes": len(crashes),
        "by_folder": {k: dict(v) for k, v in sorted(by_folder.items())},
        "crash_details": crashes,
        "stage_s": round(stage_s, 2),
        "feedparser_s": round(baseline_s, 2),
        "time_ratio_vs_feedparser": round(stage_s / baseline_s, 2) if baseline_s else None,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit status 1 when anything crashed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="folder with the edge-case files (searched recursively)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder")
    report = run(args.data)
    for crash in report["crash_details"]:
        print(f"CRASH {crash['file']}: {crash['error']}\n{crash['where']}", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 1 if report["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())

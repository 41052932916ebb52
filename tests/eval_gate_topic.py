"""Evaluation gate for the built-in topics (run separately, not collected by pytest; needs the dev files).

    python tests/eval_gate_topic.py --geo DATA/geo/geo_dev.jsonl.gz --ag DATA/ag_news_dev.csv.gz

DATA is ../shared/data. Both files are the shipped heads' training files, so `bot.eval.classify` reports
nested cross-validation on them (several minutes on 2 cores; geopolitics over three fold seeds). Exits 1 if an
F1 falls below its floor. Floors sit a little under the dev numbers (docs/story.md, section 1) to absorb fold
noise; never lower one silently.
"""

from __future__ import annotations

import argparse
import json
import sys

# Dev, nested CV. Geopolitics: the mean over fold seeds 0-2 (GEO_SEEDS). Raised to 0.855 when the head moved to
# all-mpnet-base-v2 vectors (w8; seeds 0.855 / 0.874 / 0.868, mean 0.866; docs/story.md, sixth round). Before
# that: 0.845 for the MiniLM head, 0.853 with the head retrained on the w8
# embedder's vectors (issue 12; seeds 0.852 / 0.863 / 0.845). Lowered in the open from a single-seed floor of 0.86
# (fp32 then: 0.873 at seed 0, 0.846 / 0.862 at seeds 1 / 2): one seed's folds move F1 by up to 0.02, and the w8
# vectors regroup the near-duplicate items that each fold keeps together, which alone took seed 0 from 0.873 to
# 0.852; on the same folds the w8 head scores 0.880 / 0.849 / 0.862 against fp32's 0.873 / 0.846 / 0.862.
# World: the fixed fold seed, F1 0.9028 with the kNN + LR + SVM head with cue words (issue 9; fold seeds 1-4:
# 0.9014 / 0.9074 / 0.9053 / 0.9048); raised from 0.89, set for the previous head's 0.8964 (fp32: 0.8994).
FLOORS = {"geopolitics": 0.855, "world": 0.895}
GEO_SEEDS = (0, 1, 2)


def main(argv: list[str] | None = None) -> int:
    """Run both evaluations, print their JSON, fail below the floors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geo", required=True, help="geo_dev.jsonl.gz")
    parser.add_argument("--ag", required=True, help="ag_news_dev.csv.gz")
    args = parser.parse_args(argv)
    from bot.eval import classify

    failed = []
    for topic, path in (("geopolitics", args.geo), ("world", args.ag)):
        if topic == "geopolitics":
            runs = [classify.run(path, topic, seed=seed) for seed in GEO_SEEDS]
            result = {"n": runs[0]["n"], "seeds": list(GEO_SEEDS), "f1_each": [r["f1"] for r in runs],
                      **{k: round(sum(r[k] for r in runs) / len(runs), 4)
                         for k in ("precision", "recall", "f1", "accuracy")}}
        else:
            result = classify.run(path, topic)
        print(json.dumps({"topic": topic, **result, "floor": FLOORS[topic]}), flush=True)
        if result["f1"] < FLOORS[topic]:
            failed.append(f"{topic} F1 {result['f1']} < {FLOORS[topic]}")
    for line in failed:
        print(f"eval gate: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluation gate: quality floors of same-story detection, story summaries and the built-in topics on the dev
files (run by .ci/run when the data is there; not collected by pytest).

    python tests/eval_gate.py --data ../shared/data [--skip-topics]

Exits 1 if a number falls below its floor. Each floor sits a little under the number measured when it was set
(docs/story.md); a floor is raised when the work improves and never lowered silently. The dedup files are the
pair model's training files: their eval numbers are in-sample and guard the code path, while the model's
recorded cross-fitted numbers (bot/resources/story_pairs.json) guard the model itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Set 2026-11-29 a little under the numbers measured then (docs/story.md): in-sample eval runs, and the
# cross-fitted estimate recorded in the model file at the shipped join threshold. Changed since, in the open:
# with the stream-rate model the cross-fitted AllSides timed precision floor went from 0.96 to 0.94 (measured
# 0.976 -> 0.956, the bar is 0.92) for F1 0.859 -> 0.889; raised with the model retrained on the w8 embedder's
# vectors (issue 12) and with the three-seed model (issue 9). With the clear-best rule for dated articles (issue
# 9, story.is_clear_best) the in-sample AllSides timed precision floor went from 0.98 to 0.975 (measured 0.985 ->
# 0.979: 306 -> 289 stories, the rule's weak joins) while timed F1 rose in-sample (0.954 -> 0.965) and
# cross-fitted (0.901 -> 0.912), and those F1 floors were raised. Measured values in the comments: the current model and rule; in brackets, the
# numbers before the rule on the timed rows (it applies only to dated articles), the single-seed model's elsewhere.
DEDUP_FLOORS = {
    ("stories/allsides_dev.jsonl.gz", "timed"): {"precision": 0.975, "f1": 0.955},  # 0.979 / 0.965 (0.985 / 0.954)
    ("stories/allsides_dev.jsonl.gz", "dense"): {"precision": 0.96, "f1": 0.835},  # 0.975 / 0.840 (0.976 / 0.835)
    ("ecbplus/documents_dev.jsonl.gz", "dense"): {"f1": 0.945},  # 0.957 (0.944)
}
CROSS_FITTED_FLOORS = {("allsides", "timed"): {"precision": 0.945, "f1": 0.90},  # 0.951 / 0.912 (0.957 / 0.901)
                       ("allsides", "dense"): {"precision": 0.90, "f1": 0.815},  # 0.908 / 0.828 (0.904 / 0.819)
                       ("ecbplus", "dense"): {"f1": 0.87}}  # 0.882 (0.886; single seeds 0.845-0.887)
SUMMARY_MARGIN_FLOOR = 2.0  # story summary ROUGE-1 minus the first sentence of each outlet (measured +3.2)


class CachedEncoder:
    """One embedding per distinct text across the gate's runs (the protocols embed the same articles)."""

    def __init__(self, embedder: object) -> None:
        self.embedder = embedder
        self.cache: dict[str, object] = {}

    def encode(self, texts: list[str]):  # noqa: ANN201
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            for t, v in zip(todo, self.embedder.encode(todo), strict=True):  # type: ignore[attr-defined]
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts]) if texts else self.embedder.encode([])  # type: ignore


def check(name: str, got: dict, floors: dict, failed: list[str]) -> None:
    """Compare measured numbers with their floors, recording failures."""
    for key, floor in floors.items():
        if got[key] < floor:
            failed.append(f"{name}: {key} {got[key]} < floor {floor}")


def main(argv: list[str] | None = None) -> int:
    """Run every evaluation, print one JSON line each, fail below a floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    parser.add_argument("--skip-topics", action="store_true", help="skip the (slower) topic evaluations")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not (data / "stories" / "allsides_dev.jsonl.gz").exists():
        print(f"eval gate: skipped, no dev data under {data}", file=sys.stderr)
        return 0
    from bot.eval import dedup, story_summaries
    from bot.pipeline.story_pairs import default_model
    from summarizer.embedding import Embedder

    failed: list[str] = []
    encoder = CachedEncoder(Embedder())
    for (rel, protocol), floors in DEDUP_FLOORS.items():
        result = dedup.run(data / rel, embedder=encoder, protocol=protocol)  # type: ignore[arg-type]
        print(json.dumps({"gate": "dedup", "file": rel, **result}), flush=True)
        check(f"dedup {rel} {protocol}", result["bcubed"], floors, failed)
    threshold = str(default_model().threshold)
    recorded = default_model().meta.get("cross_fitted_bcubed", {})
    for (name, protocol), floors in CROSS_FITTED_FLOORS.items():
        got = recorded.get(name, {}).get(protocol, {}).get(threshold)
        if got is None:
            failed.append(f"cross-fitted {name} {protocol}: not recorded at threshold {threshold}")
            continue
        print(json.dumps({"gate": "dedup cross-fitted", "set": name, "protocol": protocol, "bcubed": got}))
        check(f"cross-fitted {name} {protocol}", got, floors, failed)
    result = story_summaries.run(data / "stories" / "allsides_dev.jsonl.gz",
                                 data / "stories" / "allsides_dev_summaries.jsonl.gz")
    print(json.dumps({"gate": "story summaries", **result}), flush=True)
    margin = result["methods"]["story"]["rouge1"] - result["methods"]["first_sentences"]["rouge1"]
    if margin < SUMMARY_MARGIN_FLOOR:
        failed.append(f"story summaries: ROUGE-1 margin {margin:.2f} < floor {SUMMARY_MARGIN_FLOOR}")
    if not args.skip_topics:
        sys.path.insert(0, str(Path(__file__).parent))
        import eval_gate_topic

        if eval_gate_topic.main(["--geo", str(data / "geo" / "geo_dev.jsonl.gz"),
                                 "--ag", str(data / "ag_news_dev.csv.gz")]) != 0:
            failed.append("topics: below a floor (see above)")
    for line in failed:
        print(f"eval gate: {line}", file=sys.stderr)
    print("eval gate: " + ("FAILED" if failed else "all floors hold"), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

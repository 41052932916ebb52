"""Evaluate the world-topic classifier on AG News-format CSV: precision, recall, F1, accuracy, World vs rest.

Uses the shipped head, unless the file is the one the head was trained on (same sha256, recorded in its
provenance): then it reports nested k-fold cross-validation on the file instead, and says so on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bot.pipeline.topic import TopicHead, load_default_head
from bot.train import topic_head as training


def run(data_path: str | Path, head: TopicHead | None = None, embedder: Any = None, positive: str = "1",
        folds: int = training.FOLDS) -> dict:
    """`{"n", "precision", "recall", "f1", "accuracy"}` of the positive class against the rest."""
    data = training.load_labelled_csv(data_path)
    head = head or load_default_head()
    if embedder is None:
        from summarizer.embedding import Embedder

        embedder = Embedder()
    X = embedder.encode(data.texts)
    if training.sha256_of(data_path) == head.meta.get("data_sha256"):
        print(f"{Path(data_path).name} is the file the shipped head was trained on: reporting {folds}-fold "
              "nested cross-validation on it instead (k, C and threshold chosen inside each training fold)",
              file=sys.stderr)
        return training.cross_validate(X, data.labels, positive, folds)
    return {"n": len(data.texts), **training.metrics(data.labels == positive, head.score(X) >= 0.5)}


def main(argv: list[str] | None = None) -> int:
    """CLI: `newsdigest eval classify --data FILE.csv.gz`; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="newsdigest eval classify", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True,
                        help="CSV (optionally gzipped) with header class,title,description")
    parser.add_argument("--positive", default="1", help="class value of the topic (AG News World: 1)")
    args = parser.parse_args(argv)
    try:
        result = run(args.data, positive=args.positive)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        print(f"newsdigest eval classify: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

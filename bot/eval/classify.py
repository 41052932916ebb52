"""Evaluate a built-in topic (geopolitics or world) on labelled news: precision, recall, F1, accuracy.

FILE is either AG News-format CSV (header `class,title,description`; positive: the World class "1") or feed
items as JSON lines with a `geopolitical` 0/1 field (geo/RUBRIC.md labels), detected from the content. The
default topic is geopolitics for JSON lines and world for CSV. Uses the shipped head, unless FILE is the file
that head was trained on (same sha256, recorded in its provenance): then it reports nested k-fold
cross-validation on FILE instead, and says so on stderr; it never scores a head on its own training data.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bot.pipeline.topic import (
    GEOPOLITICS,
    WORLD,
    GeoHead,
    TopicHead,
    encoder_for,
    load_default_head,
    load_geo_head,
    undo_feed_escapes,
)
from bot.train import geo_head as geo_training
from bot.train import topic_head as training

TOPICS = (GEOPOLITICS, WORLD)


def detect_format(path: str | Path) -> str:
    """"geo" for JSON lines, "csv" for a CSV with a header; ValueError for anything else."""
    raw = Path(path).read_bytes()[:1 << 20]
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(4096)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable gzip file ({e})") from e
    head = raw.decode("utf-8-sig", errors="replace").lstrip()
    if not head:
        raise ValueError(f"{path}: empty file")
    if head.startswith("{"):
        return "geo"
    if "," in head.splitlines()[0]:
        return "csv"
    raise ValueError(f"{path}: neither JSON lines (geo items) nor a CSV with header class,title,description")


def _load(path: str | Path, fmt: str, positive: str) -> tuple[list[str], np.ndarray]:
    if fmt == "geo":
        data = geo_training.load_geo_jsonl(path)
        return data.texts, data.labels == 1
    csv = training.load_labelled_csv(path)
    return [undo_feed_escapes(t) for t in csv.texts], csv.labels == positive


def run(data_path: str | Path, topic: str | None = None, *, head: TopicHead | None = None,
        geo_head: GeoHead | None = None, embedder: Any = None, positive: str = "1",
        folds: int = training.FOLDS, seed: int = geo_training.SEED) -> dict[str, Any]:
    """`{"n", "precision", "recall", "f1", "accuracy"}` of the topic against the file's labels (`seed`: the
    geopolitics head's nested cross-validation folds, when the file is its training file)."""
    fmt = detect_format(data_path)
    topic = topic or (GEOPOLITICS if fmt == "geo" else WORLD)
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r} (choose from {', '.join(TOPICS)})")
    texts, truth = _load(data_path, fmt, positive)
    if embedder is None:
        from summarizer.embedding import Embedder

        embedder = Embedder()
    sha = training.sha256_of(data_path)
    name = Path(data_path).name
    if topic == GEOPOLITICS:
        geo_head = geo_head or load_geo_head()
        X = encoder_for(str(geo_head.meta.get("encoder", "")), embedder).encode(texts)
        if sha == geo_head.meta.get("data_sha256"):
            print(f"{name} is the file the geopolitics head was trained on: reporting "
                  f"{folds}-fold nested cross-validation on it instead (C and threshold chosen inside each training fold)",
                  file=sys.stderr)
            return geo_training.cross_validate(X, texts, truth.astype(np.int64), folds=folds, seed=seed)
        predicted = geo_head.score(X, texts) >= 0.5
    else:
        head = head or load_default_head()
        X = embedder.encode(texts)
        if sha == head.meta.get("data_sha256"):
            print(f"{name} is the file the world head was trained on: reporting {folds}-fold "
                  "nested cross-validation on it instead (k, C, the SVM's C and gamma and the threshold "
                  "chosen inside each training fold)", file=sys.stderr)
            labels = training.load_labelled_csv(data_path).labels
            return training.cross_validate(X, labels, positive, texts, folds)
        predicted = head.score(X, texts) >= 0.5
    return {"n": len(texts), **training.metrics(truth, predicted)}


def main(argv: list[str] | None = None) -> int:
    """CLI: `newsdigest eval classify [--topic geopolitics|world] --data FILE`; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="newsdigest eval classify", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="geo JSON lines or AG News CSV (optionally gzipped)")
    parser.add_argument("--topic", choices=TOPICS, default=None,
                        help="default: geopolitics for JSON lines, world for CSV")
    parser.add_argument("--positive", default="1", help="CSV class value of the topic (AG News World: 1)")
    args = parser.parse_args(argv)
    try:
        result = run(args.data, args.topic, positive=args.positive)
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as e:
        print(f"newsdigest eval classify: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

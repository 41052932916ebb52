"""ROUGE evaluation against CNN/DM- or XSum-format JSONL: `python -m summarizer.eval --data FILE [--methods ...]`.

Prints one JSON object: {"n": N, "methods": {name: {"rouge1", "rouge2", "rougeL", "rougeLsum"}}}, ROUGE F1 in
percent (rouge-score, Porter stemming). `lead` is lead-3 on CNN/DM-format data (fields article, reference; PTB-
tokenized references are detokenized) and lead-1 on XSum-format data (fields document, summary; empty documents
skipped). Every method gets the same sentence budget. Methods: `lead`, `default` (the extractive Summarizer) and
any seq2seq model id or local path.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .text import normalize

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_PTB = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}


def detokenize_ptb(text: str) -> str:
    """Undo Penn-Treebank tokenization (" 's", "-LRB-", "`` ''", "did n't")."""
    from nltk.tokenize.treebank import TreebankWordDetokenizer

    tokens: list[str] = []
    opening = False
    for tok in text.split():
        if tok == "`":  # CNN/DM opens single quotes with a backtick; glue it to the next word
            opening = True
            continue
        tok = _PTB.get(tok, tok)
        tokens.append("'" + tok if opening else tok)
        opening = False
    return str(TreebankWordDetokenizer().detokenize(tokens))  # nltk is untyped


def raw_sentences(text: str) -> list[str]:
    """Plain pysbd sentences of a text, paragraph by paragraph, with no news-specific cleaning (for baselines)."""
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False)
    return [s.strip() for para in normalize(text).split("\n") if para for s in seg.segment(para) if s.strip()]


def read_records(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """(format, [(document, reference)]) from a .jsonl or .jsonl.gz file; format is 'cnndm' or 'xsum'."""
    opener = gzip.open if path.suffix == ".gz" else open
    fmt = None
    records = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "article" in row and "reference" in row:
                kind, doc, ref = "cnndm", row["article"], detokenize_ptb(row["reference"])
            elif "document" in row and "summary" in row:
                kind, doc, ref = "xsum", row["document"], row["summary"]
            else:
                raise ValueError(f"{path}:{lineno}: expected fields article+reference or document+summary")
            if fmt is None:
                fmt = kind
            elif kind != fmt:
                raise ValueError(f"{path}:{lineno}: mixes CNN/DM and XSum records")
            if doc and doc.strip() and ref and ref.strip():
                records.append((doc, ref))
    if fmt is None:
        raise ValueError(f"{path}: no records")
    return fmt, records


def score(predictions: list[list[str]], references: list[str]) -> dict[str, float]:
    """Mean ROUGE F1 (percent) of sentence-list predictions against reference texts."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references, strict=True):
        result = scorer.score("\n".join(raw_sentences(ref)), "\n".join(pred))
        for k in ROUGE_TYPES:
            totals[k] += result[k].fmeasure
    n = max(len(references), 1)
    return {k: round(100 * v / n, 2) for k, v in totals.items()}


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run(path: Path, methods: list[str], limit: int | None = None) -> dict[str, Any]:
    """Evaluate methods on a data file; returns the result object."""
    fmt, records = read_records(path)
    records = records[:limit] if limit else records
    docs = [d for d, _ in records]
    refs = [r for _, r in records]
    k = 3 if fmt == "cnndm" else 1
    results = {}
    for method in methods:
        if method == "lead":
            preds = [raw_sentences(d)[:k] for d in docs]
        else:
            from .core import Summarizer
            from .models import resolve_model

            if method != "default" and resolve_model(method) is None:
                raise ValueError(f"model {method!r} is not available locally (download it first)")
            summarizer = Summarizer(None if method == "default" else method)
            preds = [list(s.sentences) for batch in _batches(docs, 32)
                     for s in summarizer.summarize_batch(batch, max_sentences=k)]
        results[method] = score(preds, refs)
    return {"n": len(records), "methods": results}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m summarizer.eval", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="JSONL(.gz) file in CNN/DM or XSum format")
    parser.add_argument("--methods", nargs="+", default=["lead", "default"],
                        help="lead, default, or a seq2seq model id / local path")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N records")
    args = parser.parse_args(argv)
    try:
        result = run(args.data, args.methods, args.limit)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`newsdigest eval extract --data DIR`: token P/R/F1 of the article stage against the Zyte benchmark format.

DIR holds `ground-truth.json` ({id: {articleBody, url}}) and `html/<id>.html.gz`. Scoring follows
scrapinghub/article-extraction-benchmark's evaluate.py with unigram tokens: tokens are lowercase `\\w+` words
matched as multisets per page; precision (over pages with a non-empty prediction), recall (over pages with a
non-empty truth) and F1 (per page, all pages) are macro-averaged over pages. "default" is this project's
`extract_article`; "baseline" is plain `trafilatura.extract` with its defaults, run on the same pages.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trafilatura

from bot.errors import ExtractError
from bot.pipeline.article import extract_article

_TOKEN = re.compile(r"\w+")


class DataError(ValueError):
    """The data folder is not in the benchmark's format; the message names the file and the problem."""


def load_pages(data_dir: str | Path) -> dict[str, tuple[str, str | None, str]]:
    """id -> (html, url, true article body) of every page of `data_dir`; DataError when a file is missing or
    not in the benchmark's format."""
    data = Path(data_dir)
    if not data.is_dir():
        raise DataError(f"{data}: not found or not a folder")
    gt = data / "ground-truth.json"
    if not gt.is_file():
        raise DataError(f"{data}: no ground-truth.json there (a folder with ground-truth.json and html/)")
    try:
        truth = json.loads(gt.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{gt}: not valid JSON ({exc})") from exc
    if not isinstance(truth, dict) or not all(isinstance(v, dict) for v in truth.values()):
        raise DataError(f"{gt}: expected an object of {{id: {{articleBody, url}}}}")
    pages = {}
    for key, item in sorted(truth.items()):
        path = data / "html" / f"{key}.html.gz"
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                pages[key] = (f.read(), item.get("url"), item.get("articleBody") or "")
        except FileNotFoundError as exc:
            raise DataError(f"{path}: not found (every id in ground-truth.json needs its page)") from exc
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a gzip-compressed UTF-8 page ({exc})") from exc
    return pages


def run(data_dir: str | Path) -> dict[str, Any]:
    """Score the article stage and the trafilatura-defaults baseline on every page of `data_dir`."""
    pages = load_pages(data_dir)
    return {
        "n": len(pages),
        "default": _score(pages, _ours),
        "baseline": _score(pages, lambda html, url: trafilatura.extract(html, url=url) or ""),
    }


def _ours(html: str, url: str | None) -> str:
    try:
        return extract_article(html, url)
    except ExtractError:
        return ""


def _score(pages: dict[str, tuple[str, str | None, str]], extract: Callable[[str, str | None], str]) -> dict[str, Any]:
    precisions, recalls, f1s = [], [], []
    for html, url, truth in pages.values():
        p, r, f = token_prf(truth, extract(html, url))
        if p is not None:
            precisions.append(p)
        if r is not None:
            recalls.append(r)
        f1s.append(f)
    return {"precision": round(_mean(precisions), 4), "recall": round(_mean(recalls), 4),
            "f1": round(_mean(f1s), 4)}


def token_prf(truth: str, pred: str) -> tuple[float | None, float | None, float]:
    """Token precision, recall and F1 of one page; precision/recall are None where undefined (empty side)."""
    t, p = Counter(_TOKEN.findall(truth.lower())), Counter(_TOKEN.findall(pred.lower()))
    if not t and not p:
        return 1.0, 1.0, 1.0
    tp = sum((t & p).values())
    precision = tp / sum(p.values()) if p else None
    recall = tp / sum(t.values()) if t else None
    f1 = 2 * tp / (sum(p.values()) + sum(t.values()))
    return precision, recall, f1


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def main(argv: list[str] | None = None) -> int:
    """Print the score object as one JSON line on stdout."""
    parser = argparse.ArgumentParser(prog="newsdigest eval extract", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="folder with ground-truth.json and html/")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(run(args.data)))
    except DataError as exc:
        print(f"newsdigest eval extract: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

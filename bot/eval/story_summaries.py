"""Evaluate multi-outlet story summaries against neutral roundups (AllSides): ROUGE of the service's story
summary beside the first sentence of each outlet.

    python -m bot.eval.story_summaries --articles allsides_dev.jsonl.gz --stories allsides_dev_summaries.jsonl.gz

Each story's articles go through the service's own path (bot/summaries.py `story_documents`, the default
Summarizer, `strip_headline`) with a budget of `--sentences` sentences (4 by default, about the roundups'
length); the baseline is the first sentence of each outlet's article. Prints one JSON object:
`{"n", "sentences", "methods": {"story": {rouge...}, "first_sentences": {rouge...}}}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.datafiles import read_json_lines
from bot.eval.dedup import load_documents


def load_roundups(path: str | Path) -> dict[str, str]:
    """cluster_id -> roundup text from a (gzipped) JSON-lines file with `cluster_id` and `summary`."""
    out = {}
    for n, row in read_json_lines(path):
        if "cluster_id" not in row or "summary" not in row:
            raise ValueError(f"{path}:{n}: needs a JSON object with cluster_id and summary")
        out[str(row["cluster_id"])] = str(row["summary"])
    if not out:
        raise ValueError(f"{path}: no stories")
    return out


def run(articles_path: str | Path, stories_path: str | Path, sentences: int = 4, summarizer: Any = None) -> dict[str, Any]:
    """Story summaries and the first-sentence baseline, scored against the roundups."""
    from bot.pipeline.digest import strip_headline
    from bot.storage.stories import StoryMember
    from bot.summaries import story_documents
    from summarizer import Summarizer
    from summarizer.eval import raw_sentences, score

    roundups = load_roundups(stories_path)
    by_story: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in load_documents(articles_path):
        if d["cluster_id"] in roundups:
            by_story[d["cluster_id"]].append(d)
    ids = sorted(by_story)
    if not ids:
        raise ValueError("no article belongs to a story of the roundups file")
    # Members as StoryStore.story_members gives them; each outlet (or an article without one) is a feed.
    feed_ids: dict[str, int] = {}

    def member(i: int, d: dict[str, Any]) -> StoryMember:
        outlet = str(d.get("outlet") or d["doc_id"])
        return StoryMember(id=i, title=d.get("title") or "", text=d["text"], url=None, canonical_url=None,
                           published_at=None, fetched_at=datetime.now(UTC),
                           feed_id=feed_ids.setdefault(outlet, len(feed_ids)),
                           story_reason="new" if i == 0 else "same_story", story_score=1.0, outlet=outlet)

    members = {sid: [member(i, d)
                     for i, d in enumerate(sorted(by_story[sid], key=lambda d: str(d.get("published") or "")))]
               for sid in ids}
    batch = [story_documents(members[sid]) for sid in ids]
    summarizer = summarizer or Summarizer()
    results = summarizer.summarize_batch([docs for docs, _ in batch], titles=[t for _, t in batch],
                                         max_sentences=sentences)
    story = [raw_sentences(strip_headline(r.text, t)) for r, (_, t) in zip(results, batch, strict=True)]
    firsts = [[s[0] for m in members[sid] if (s := raw_sentences(m.text))] for sid in ids]
    refs = [roundups[sid] for sid in ids]
    return {"n": len(ids), "sentences": sentences,
            "methods": {"story": score(story, refs), "first_sentences": score(firsts, refs)}}


def main(argv: list[str] | None = None) -> int:
    """CLI; prints one JSON object."""
    parser = argparse.ArgumentParser(prog="python -m bot.eval.story_summaries", description=__doc__.splitlines()[0])
    parser.add_argument("--articles", required=True, help="AllSides-format articles (JSON lines)")
    parser.add_argument("--stories", required=True, help="roundups: JSON lines with cluster_id and summary")
    parser.add_argument("--sentences", type=int, default=4)
    args = parser.parse_args(argv)
    try:
        result = run(args.articles, args.stories, args.sentences)
    except (OSError, ValueError) as e:
        print(f"story summaries eval: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

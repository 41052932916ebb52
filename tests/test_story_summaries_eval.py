"""The multi-outlet story-summary evaluation on a small AllSides sample (real summarizer, real ROUGE)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.eval import story_summaries

DATA = Path(__file__).parent / "data"


def test_story_summaries_eval_scores_both_methods(tmp_path):
    ids = {json.loads(line)["cluster_id"] for line in (DATA / "allsides_sample.jsonl").read_text().splitlines()}
    roundups = tmp_path / "roundups.jsonl"
    roundups.write_text("".join(json.dumps({"cluster_id": c, "summary": "Texas abortion law court ruling. Yellen "
                                            "warns Congress on the debt limit. US to share vaccine doses."}) + "\n"
                                for c in sorted(ids)))
    result = story_summaries.run(DATA / "allsides_sample.jsonl", roundups, sentences=2)
    assert result["n"] == len(ids) == 6 and result["sentences"] == 2
    for method in ("story", "first_sentences"):
        assert 0 < result["methods"][method]["rouge1"] < 100


def test_story_summaries_eval_rejects_bad_roundups(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"cluster_id": "x"}\n')
    assert story_summaries.main(["--articles", str(DATA / "allsides_sample.jsonl"), "--stories", str(bad)]) == 2
    assert "needs a JSON object with cluster_id and summary" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["", "\n"])
def test_story_summaries_eval_needs_stories(tmp_path, content):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(content)
    with pytest.raises(ValueError, match="no stories"):
        story_summaries.load_roundups(empty)

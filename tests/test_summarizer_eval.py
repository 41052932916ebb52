"""The `python -m summarizer.eval` contract, on small CNN/DM- and XSum-format files written here."""

from __future__ import annotations

import gzip
import json

import pytest

from summarizer.eval import detokenize_ptb, main, raw_sentences

ARTICLE = ("The company said on Monday it didn't expect profits to fall. Its shares (listed in 2001) rose 5% "
           "in early trading. Analysts had warned of a weak quarter. The chief executive will speak on Friday.")
# The first three sentences, PTB-tokenized as in the CNN/DM references.
PTB_REFERENCE = ("The company said on Monday it did n't expect profits to fall . Its shares -LRB- listed in 2001 "
                 "-RRB- rose 5 % in early trading . Analysts had warned of a weak quarter .")


def test_detokenize_ptb():
    assert detokenize_ptb("Kite 's length is 6 km -LRB- 3.7 miles -RRB- and it did n't fly .") == \
        "Kite's length is 6 km (3.7 miles) and it didn't fly."
    assert detokenize_ptb("He called it ` a gold digger ' and `` awful '' .") == \
        "He called it 'a gold digger' and \"awful\"."


def _run(path, capsys, *methods):
    args = ["--data", str(path)] + (["--methods", *methods] if methods else [])
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_cnndm_format_lead3_matches_a_lead_reference(tmp_path, capsys):
    path = tmp_path / "cnndm.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i in range(2):
            fh.write(json.dumps({"id": str(i), "article": ARTICLE, "reference": PTB_REFERENCE}) + "\n")
    result = _run(path, capsys, "lead")
    assert result["n"] == 2 and set(result["methods"]) == {"lead"}
    assert result["methods"]["lead"] == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "rougeLsum": 100.0}


def test_xsum_format_uses_lead1_and_skips_empty_documents(tmp_path, capsys):
    path = tmp_path / "xsum.jsonl"
    rows = [{"id": "1", "document": "Rain hit the north.\nFloods closed roads.\nSchools shut early.",
             "summary": "Rain hit the north."},
            {"id": "2", "document": "", "summary": "Nothing here."},
            {"id": "3", "document": "Talks resumed in Geneva.\nBoth sides attended.", "summary": "Talks resumed."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    result = _run(path, capsys)
    assert result["n"] == 2 and set(result["methods"]) == {"lead", "default"}
    assert result["methods"]["lead"]["rouge1"] == pytest.approx(100 * (1 + 2 * 0.5 * 1 / 1.5) / 2, abs=0.01)
    for scores in result["methods"].values():
        assert set(scores) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
        assert all(0 <= v <= 100 for v in scores.values())


def test_bad_data_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "x"}) + "\n")
    assert main(["--data", str(path)]) == 2
    assert "expected fields" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "missing.jsonl")]) == 2


def test_raw_sentences_keeps_paragraphs():
    assert raw_sentences("One. Two.\nThree") == ["One.", "Two.", "Three"]


def test_unknown_model_method_is_an_error_not_a_silent_fallback(tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"document": "Rain fell.", "summary": "Rain."}) + "\n")
    assert main(["--data", str(path), "--methods", "lead", "no-such-org/no-such-model"]) == 2
    assert "no-such-org/no-such-model" in capsys.readouterr().err

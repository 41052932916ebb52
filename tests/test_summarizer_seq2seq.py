"""The seq2seq path, on tiny random-weight BART models built and saved here and loaded with from_pretrained."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from summarizer import LRUCache, Summarizer
from summarizer.abstractive import Seq2SeqSummarizer
from summarizer.models import resolve_model
from summarizer.text import split_sentences

DATA = Path(__file__).parent / "data" / "summarizer"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
# Random weights emit any token; keep special tokens out so the decoded text is never empty.
GEN = {"min_new_tokens": 6, "max_new_tokens": 6, "num_beams": 1, "do_sample": False, "suppress_tokens": [0, 1, 3, 4]}


def _text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory) -> Path:
    """A 2-layer BART with a byte-level BPE tokenizer trained on the fixture articles, saved to disk."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    corpus = (_text("wire_style.txt") + _text("dm_style.txt")).splitlines()
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>", model_max_length=64)
    config = BartConfig(vocab_size=tok.get_vocab_size(), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        decoder_start_token_id=2, forced_bos_token_id=None)
    path = tmp_path_factory.mktemp("models") / "tiny-bart"
    import torch

    # Seeded: unseeded random weights sometimes emit only whitespace tokens, which decode to an empty summary.
    torch.manual_seed(0)
    BartForConditionalGeneration(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def test_long_article_is_chunked_to_the_token_limit(tiny_bart):
    s2s = Seq2SeqSummarizer(tiny_bart, generation=GEN, max_chunks=10)
    article = " ".join([_text("dm_style.txt")] * 3)
    chunks = s2s.chunks([article])
    assert s2s.input_limit() == 64
    assert len(chunks) > 1
    budget = 64 - s2s._tokenizer.num_special_tokens_to_add()
    sentences = {s.text for s in split_sentences(article)}
    for chunk in chunks:
        n = len(s2s._tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"])
        # a chunk only exceeds the budget when it is one sentence that is itself too long (then truncated)
        assert n <= budget or chunk in sentences
    assert len(Seq2SeqSummarizer(tiny_bart, max_chunks=2).chunks([article])) == 2


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_generates_with_each_precision(tiny_bart, precision):
    s2s = Seq2SeqSummarizer(tiny_bart, name="tiny", precision=precision, generation=GEN, batch_size=2)
    out = s2s.summarize_batch([([_text("wire_style.txt")], None), ([_text("dm_style.txt")], None),
                               (["Short text about a ceasefire."], None)], max_sentences=2)
    assert [s.method for s in out] == ["abstractive"] * 3
    assert all(s.text and s.model == f"tiny:{precision}" for s in out)
    assert all(set(s.sources) == {-1} for s in out)


def test_batched_output_matches_one_by_one(tiny_bart):
    s2s = Seq2SeqSummarizer(tiny_bart, generation=GEN, batch_size=4)
    texts = ["The deal was signed on Monday.", _text("wire_style.txt")[:200], "Aid agencies welcomed it."]
    assert s2s.generate(texts) == [s2s.generate([t])[0] for t in texts]


def test_summarizer_uses_a_local_model_path_and_caches(tiny_bart):
    s = Summarizer(str(tiny_bart), generation=GEN, cache=LRUCache())
    first = s.summarize(_text("wire_style.txt"), max_sentences=1, max_chars=40)
    again = s.summarize(_text("wire_style.txt"), max_sentences=1, max_chars=40)
    assert first.method == "abstractive" and not first.cached
    assert again.cached and again.text == first.text
    assert len(first.text) <= 40


def test_model_in_models_dir_is_found_by_id(tiny_bart, tmp_path):
    (tmp_path / "acme--tiny-bart").symlink_to(tiny_bart, target_is_directory=True)
    assert resolve_model("acme/tiny-bart", tmp_path) == tmp_path / "acme--tiny-bart"


def test_missing_model_warns_once_and_falls_back(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="summarizer")
    s = Summarizer("no-such-org/no-such-model", models_dir=tmp_path)
    out = s.summarize_batch([_text("wire_style.txt"), _text("dm_style.txt")], max_sentences=2)
    s.summarize(_text("wire_style.txt"))
    Summarizer("no-such-org/no-such-model", models_dir=tmp_path).summarize("Another story. It is short.")
    assert all(o.method == "extractive" and o.text for o in out)
    warnings = [r.getMessage() for r in caplog.records if "no-such-org/no-such-model" in r.getMessage()]
    assert len(warnings) == 1
    assert "newsdigest models download no-such-org/no-such-model" in warnings[0]


def test_broken_checkpoint_falls_back(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="summarizer")
    (tmp_path / "config.json").write_text("{not json")
    s = Summarizer(str(tmp_path))
    assert s.summarize(_text("wire_style.txt")).method == "extractive"
    assert any("failed to load" in r.getMessage() for r in caplog.records)


def test_multi_outlet_story_is_merged_before_generation(tiny_bart):
    outlet_a = ("Two neighbouring countries signed a ceasefire agreement in Geneva on Monday, ending three years "
                "of fighting along their shared border. The deal creates a demilitarised zone 20 km wide.")
    outlet_b = ("A ceasefire agreement ending three years of fighting along the border between the two "
                "neighbouring countries was signed in Geneva on Monday. Aid agencies hope to reach displaced "
                "families before winter.")
    s = Summarizer(str(tiny_bart), generation=GEN)
    [(docs, _)] = s._merge_outlets([([outlet_a, outlet_b], None)])
    assert len(docs) == 1 and docs[0].count("ceasefire agreement") == 1
    assert "demilitarised zone" in docs[0] and "Aid agencies" in docs[0]
    assert s.summarize([outlet_a, outlet_b]).method == "abstractive"


def test_eval_runs_a_seq2seq_model_by_path(tiny_bart, tmp_path, capsys):
    import json

    from summarizer.eval import main

    path = tmp_path / "xsum.jsonl"
    path.write_text(json.dumps({"document": _text("wire_style.txt"), "summary": "A ceasefire was signed."}) + "\n")
    assert main(["--data", str(path), "--methods", "lead", str(tiny_bart)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 1 and set(result["methods"]) == {"lead", str(tiny_bart)}


def test_task_specific_summarization_params_are_applied(tiny_bart, tmp_path):
    import json
    import shutil

    path = tmp_path / "tiny-t5-style"
    shutil.copytree(tiny_bart, path)
    config = json.loads((path / "config.json").read_text())
    config["task_specific_params"] = {"summarization": {"prefix": "summarize: ", "max_length": 12, "num_beams": 2}}
    (path / "config.json").write_text(json.dumps(config))
    s2s = Seq2SeqSummarizer(path, generation={"num_beams": 1}, max_chunks=50)
    plain = Seq2SeqSummarizer(tiny_bart, max_chunks=50)
    article = " ".join([_text("dm_style.txt")] * 2)
    # the prefix takes room in every chunk
    assert max(map(len, s2s.chunks([article]))) <= max(map(len, plain.chunks([article])))
    assert s2s._prefix == "summarize: "
    assert s2s.generation == {"max_length": 12, "num_beams": 1}
    assert s2s.summarize_batch([([article], None)])[0].method == "abstractive"

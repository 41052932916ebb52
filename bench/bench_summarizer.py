"""Summarizer throughput on this CPU: the extractive default and a distilbart-cnn-12-6-shaped seq2seq model.

Each part runs a naive baseline in the same process (one encode / one generate call per article, fp32) beside
newsdigest's path (one batched call, dynamic padding; bf16 and dynamic int8 as options) and prints ratios.
The seq2seq model has random weights in distilbart-cnn-12-6's exact shape (built here, saved, and loaded through
from_pretrained), with a forced 60-token output. Articles are ~700 words: from --data (CNN/DM- or XSum-format
JSONL) when given, else built from the test fixtures.
Usage:  python bench/bench_summarizer.py [--n 16] [--n-seq2seq 2] [--batch-size 2] [--repeat 2] [--data FILE]
        [--skip-seq2seq]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "data" / "summarizer"
WORDS = 700


def articles(n: int, data: Path | None) -> list[str]:
    """n distinct articles of about WORDS words."""
    if data:
        from summarizer.eval import read_records

        docs = [d for d, _ in read_records(data)[1]]
        docs.sort(key=lambda d: abs(len(d.split()) - WORDS))
        return docs[:n]
    base = " ".join((FIXTURES / f).read_text(encoding="utf-8") for f in ("wire_style.txt", "dm_style.txt"))
    sents = base.replace("\n", " ").split(". ")
    out = []
    for i in range(n):  # rotate the sentences so no two articles are identical
        rot = sents[i % len(sents):] + sents[:i % len(sents)]
        words = ". ".join(rot * 12).split()[:WORDS]
        out.append(" ".join(words) + ".")
    return out


def best_of(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Fastest of `repeat` interleaved rounds per run: other load on the machine hits every run alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def bench_extractive(docs: list[str], repeat: int) -> None:
    from summarizer import Summarizer
    from summarizer.embedding import Embedder
    from summarizer.extractive import ExtractiveSummarizer, _candidates
    from summarizer.text import split_sentences

    naive_emb = Embedder(precision="fp32", backend="torch")
    naive_emb.encode(["warm-up"])

    def naive() -> None:
        for d in docs:  # one encode call per article
            naive_emb.encode([s.text for s in split_sentences(d) if not s.fragment])

    # Before (issue 12): sentence-transformers on torch, and every lede of the head embedded.
    before = ExtractiveSummarizer(Embedder(precision="fp32", backend="torch"))
    before.embedder.encode(["warm-up"])

    def before_run(k: int) -> object:
        items = [([d], None) for d in docs]
        cands = [_candidates([d], before.config.min_words) for d in docs]
        return before._summarize_head(items, cands, before.config.lede_window + 2 * k, k, None)

    runs: dict[str, Callable[[], object]] = {"naive fp32, one encode per article": naive,
                                             "before: torch fp32, 3 sentences": lambda: before_run(3)}
    # The default (w8 weights on onnx), then the embedder's other precisions.
    variants: dict[str, Callable[[], Summarizer]] = {
        "default": Summarizer,
        "fp32": lambda: Summarizer(embedder=Embedder(precision="fp32")),
        "int8": lambda: Summarizer(embedder=Embedder(precision="int8")),
        "bf16": lambda: Summarizer(precision="bf16")}
    for label, make in variants.items():
        s = make()
        s.summarize("Warm-up sentence one. Warm-up sentence two.")
        emb = s._extractive.embedder
        for k in (3, 1):
            runs[f"Summarizer {label} ({emb.backend} {emb.precision}), {k} sentence(s)"] = \
                lambda s=s, k=k: s.summarize_batch(docs, max_sentences=k)
    n_sent = sum(len(split_sentences(d)) for d in docs)
    print(f"extractive, {len(docs)} articles of ~{WORDS} words ({n_sent} sentences), best of {repeat}")
    times = best_of(runs, repeat)
    base = times["naive fp32, one encode per article"]
    ref = times["before: torch fp32, 3 sentences"]
    for name, t in times.items():
        print(f"  {name:42s}: {len(docs) / t:7.2f} articles/s  (x{base / t:.2f} vs naive, x{ref / t:.2f} vs before)")


def build_distilbart_shaped(path: Path) -> None:
    """Random-weight BART with distilbart-cnn-12-6's shape and a BPE tokenizer trained on the fixtures."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    corpus = [(FIXTURES / f).read_text(encoding="utf-8") for f in ("wire_style.txt", "dm_style.txt")]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>", mask_token="<mask>", model_max_length=1024).save_pretrained(path)
    config = BartConfig(vocab_size=50264, d_model=1024, encoder_layers=12, decoder_layers=6,
                        encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                        decoder_ffn_dim=4096, max_position_embeddings=1024, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=0)
    BartForConditionalGeneration(config).save_pretrained(path)


def bench_seq2seq(docs: list[str], batch_size: int, repeat: int) -> None:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from summarizer.abstractive import Seq2SeqSummarizer

    gen = {"min_new_tokens": 60, "max_new_tokens": 60, "num_beams": 1, "do_sample": False}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "distilbart-cnn-12-6-shaped"
        build_distilbart_shaped(path)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=True).eval()
        # Both paths read the same input: the article's first chunk of at most 1024 tokens.
        s2s = Seq2SeqSummarizer(path, name="distilbart-shaped", max_chunks=1, batch_size=batch_size,
                                generation=gen)
        inputs = [s2s.chunks([d])[0] for d in docs]
        n_tok = [len(tokenizer(x)["input_ids"]) for x in inputs]

        def naive(model=model) -> None:
            for x in inputs:  # one generate call per article, fp32
                enc = tokenizer(x, truncation=True, max_length=1024, return_tensors="pt")
                with torch.inference_mode():
                    model.generate(**enc, **gen)

        runs: dict[str, Callable[[], object]] = {"naive fp32, one generate per article": naive}
        for precision in ("fp32", "bf16", "int8"):
            runner = Seq2SeqSummarizer(path, name="distilbart-shaped", precision=precision, max_chunks=1,
                                       batch_size=batch_size, generation=gen)
            runner.load()
            runs[f"Seq2SeqSummarizer {precision}, batch {batch_size}"] = lambda r=runner: r.generate(inputs)
        print(f"seq2seq (distilbart-cnn-12-6 shape, random weights), {len(docs)} articles, "
              f"{min(n_tok)}-{max(n_tok)} input tokens, 60 output tokens, greedy, best of {repeat}")
        times = best_of(runs, repeat)
        base = times["naive fp32, one generate per article"]
        for name, t in times.items():
            print(f"  {name:38s}: {t / len(docs):6.2f} s/article  (x{base / t:.2f} vs naive)")


def main() -> None:
    """Run both benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=16, help="articles for the extractive benchmark")
    parser.add_argument("--n-seq2seq", type=int, default=2, help="articles for the seq2seq benchmark")
    parser.add_argument("--batch-size", type=int, default=2, help="seq2seq batch size")
    parser.add_argument("--data", type=Path, default=None, help="CNN/DM- or XSum-format JSONL(.gz) for articles")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds; the fastest counts")
    parser.add_argument("--skip-seq2seq", action="store_true")
    args = parser.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_extractive(articles(args.n, args.data), args.repeat)
    if not args.skip_seq2seq:
        bench_seq2seq(articles(args.n_seq2seq, args.data), args.batch_size, args.repeat)


if __name__ == "__main__":
    main()

"""Offline news summarization: extractive on all-MiniLM-L6-v2 by default, any HF seq2seq model as an option.

This package never imports `bot`.

    from summarizer import Summarizer, LRUCache
    s = Summarizer(model=None, device="auto", precision="fp32", cache=LRUCache())  # None: extractive default
    s.summarize(docs, title=None, max_sentences=3, max_chars=None) -> Summary  # docs: str or one str per outlet
    s.summarize_batch([docs, ...], titles=None, max_sentences=3, max_chars=None) -> list[Summary]

`model` is a Hugging Face seq2seq model id or a local directory (e.g. "sshleifer/distilbart-cnn-12-6"). It is
loaded from local files only: a path, a copy made by `summarizer.models.download_model(id)`, or the Hugging Face
cache. When it is missing the Summarizer logs one warning naming it and how to fetch it, and uses the default.
`precision` is the seq2seq model's: "fp32", "bf16" (model and embedder) or "int8" (dynamic quantization, CPU);
the embedder of the extractive default is MiniLM with 8-bit weights on CPU (`summarizer.embedding`) unless bf16.
`Summary(text, sentences, sources, method, model, cached)`: `sources[i]` is the index of the document that
sentence i comes from (-1 for generated text). Extractive sentences are verbatim from the sources.
Caches implement `SummaryCache` (get/put by key); `LRUCache` keeps them in memory.
Evaluation: `python -m summarizer.eval --data FILE [--methods lead default ...]`.
"""

from .cache import LRUCache, SummaryCache, cache_key
from .core import Summarizer
from .extractive import ExtractiveConfig
from .models import download_model
from .types import Summary

__all__ = ["ExtractiveConfig", "LRUCache", "Summarizer", "Summary", "SummaryCache", "cache_key", "download_model"]

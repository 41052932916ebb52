"""The Summarizer facade: default extractive model, optional seq2seq model with fallback, and caching."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .abstractive import PRECISIONS, Seq2SeqSummarizer, pick_device
from .cache import SummaryCache, cache_key
from .embedding import Embedder
from .extractive import ExtractiveConfig, ExtractiveSummarizer
from .models import resolve_model
from .types import Summary

log = logging.getLogger("summarizer")

_warned: set[str] = set()
_warned_lock = threading.Lock()

Docs = str | Sequence[str]
_MERGED_SENTENCES = 40  # enough to fill a 1,024-token input


def _warn_once(key: str, message: str) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message)


def _as_docs(docs: Docs) -> list[str]:
    if isinstance(docs, str):
        docs = [docs]
    elif not isinstance(docs, Sequence):
        raise TypeError(f"docs must be a str or a sequence of str, not {type(docs).__name__}")
    out = []
    for d in docs:
        if not isinstance(d, str):
            raise TypeError(f"each document must be a str, not {type(d).__name__}")
        out.append(d)
    return out


class Summarizer:
    """Summarizes an article, or one story told by several outlets, into a few sentences."""

    def __init__(self, model: str | Path | None = None, *, device: str = "auto", precision: str = "fp32",
                 cache: SummaryCache | None = None, models_dir: str | Path | None = None, batch_size: int = 8,
                 generation: dict[str, Any] | None = None, embedder: Embedder | None = None,
                 extractive: ExtractiveConfig | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.model = str(model) if model else None
        self.device = device
        self.precision = precision
        self.cache = cache
        self.models_dir = models_dir
        self.batch_size = batch_size
        self.generation = dict(generation or {})
        if embedder is None:
            dev = pick_device(device) if device != "auto" else None
            embedder = Embedder(device=dev, precision="bf16" if precision == "bf16" else None)
        self._extractive = ExtractiveSummarizer(embedder, extractive)
        self._seq2seq: Seq2SeqSummarizer | None = None
        self._seq2seq_failed = False
        self._lock = threading.Lock()

    def _abstractive(self) -> Seq2SeqSummarizer | None:
        """The configured seq2seq model if it can be loaded; otherwise warns once and returns None."""
        if self.model is None or self._seq2seq_failed:
            return None
        with self._lock:
            if self._seq2seq is not None:
                return self._seq2seq
            path = resolve_model(self.model, self.models_dir)
            if path is None:
                self._seq2seq_failed = True
                _warn_once(self.model, (
                    f"summarization model {self.model!r} is not available on this machine; using the built-in "
                    f"extractive summarizer. Fetch it with `newsdigest models download {self.model}` "
                    f"(or summarizer.models.download_model) on a machine with network access."))
                return None
            s2s = Seq2SeqSummarizer(path, name=self.model, device=self.device, precision=self.precision,
                                    batch_size=self.batch_size, generation=self.generation)
            try:
                s2s.load()
            except Exception as exc:  # a broken or incompatible checkpoint must not stop a digest
                self._seq2seq_failed = True
                _warn_once(self.model, f"summarization model {self.model!r} at {path} failed to load ({exc}); "
                                       "using the built-in extractive summarizer.")
                return None
            self._seq2seq = s2s
            return s2s

    @property
    def model_name(self) -> str:
        """Identifier of the model that summaries are produced with now."""
        s2s = self._abstractive()
        return s2s.name if s2s else self._extractive.name

    def summarize(self, docs: Docs, *, title: str | None = None, max_sentences: int = 3,
                  max_chars: int | None = None) -> Summary:
        """Summarize one article (str) or one story told by several outlets (sequence of str)."""
        return self.summarize_batch([docs], titles=[title], max_sentences=max_sentences, max_chars=max_chars)[0]

    def summarize_batch(self, stories: Sequence[Docs], *, titles: Sequence[str | None] | None = None,
                        max_sentences: int = 3, max_chars: int | None = None) -> list[Summary]:
        """Summarize many stories in one batched pass; cached ones are not recomputed."""
        if max_sentences < 1:
            raise ValueError("max_sentences must be at least 1")
        if max_chars is not None and max_chars < 1:
            raise ValueError("max_chars must be positive")
        titles = list(titles) if titles is not None else [None] * len(stories)
        if len(titles) != len(stories):
            raise ValueError("titles must have one entry per story")
        items = [([d for d in _as_docs(s) if d.strip()], t) for s, t in zip(stories, titles, strict=True)]
        s2s = self._abstractive()
        engine = s2s or self._extractive
        settings = {"max_sentences": max_sentences, "max_chars": max_chars,
                    **({"generation": self.generation} if s2s else {"extractive": asdict(self._extractive.config)})}
        keys = [cache_key(docs, title=t, model=engine.name, settings=settings) for docs, t in items]
        results: list[Summary | None] = [None] * len(items)
        todo: list[int] = []
        for i, ((docs, _), key) in enumerate(zip(items, keys, strict=True)):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                results[i] = replace(hit, cached=True)
            elif not docs:
                results[i] = Summary("", (), (), "extractive" if s2s is None else "abstractive", engine.name)
            else:
                todo.append(i)
        if todo:
            batch = [items[i] for i in todo]
            fresh = self._run(s2s, batch, max_sentences, max_chars)
            for i, summary in zip(todo, fresh, strict=True):
                results[i] = summary
                if self.cache is not None and summary.method == ("abstractive" if s2s else "extractive"):
                    self.cache.put(keys[i], summary)
        return [r for r in results if r is not None]

    def _run(self, s2s: Seq2SeqSummarizer | None, batch: list[tuple[list[str], str | None]],
             max_sentences: int, max_chars: int | None) -> list[Summary]:
        if s2s is not None:
            try:
                return s2s.summarize_batch(self._merge_outlets(batch), max_sentences=max_sentences,
                                           max_chars=max_chars)
            except Exception as exc:  # generation trouble degrades to the extractive default, never fails
                _warn_once(f"{self.model}:generate", f"summarization model {self.model!r} failed ({exc}); "
                                                     "falling back to the built-in extractive summarizer.")
        return self._extractive.summarize_batch(batch, max_sentences=max_sentences, max_chars=max_chars)

    def _merge_outlets(self, batch: list[tuple[list[str], str | None]]) -> list[tuple[list[str], str | None]]:
        """Give the seq2seq model one text per multi-outlet story: each fact once, ledes first (extract-then-abstract)."""
        multi = [i for i, (docs, _) in enumerate(batch) if len(docs) > 1]
        if not multi:
            return batch
        merged = self._extractive.summarize_batch([batch[i] for i in multi], max_sentences=_MERGED_SENTENCES)
        out = list(batch)
        for i, summary in zip(multi, merged, strict=True):
            out[i] = ([summary.text], batch[i][1])
        return out

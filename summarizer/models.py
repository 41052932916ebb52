"""Finding and fetching Hugging Face seq2seq summarization models for offline use."""

from __future__ import annotations

import os
from pathlib import Path

# Files a seq2seq checkpoint needs; skips other frameworks' weights (tf, flax, onnx, rust) to save disk.
_ALLOW = ["*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.tiktoken", "*.py"]
_IGNORE = ["*tf_model*", "*flax_model*", "*.msgpack", "*.h5", "*onnx*", "rust_model*", "*.ot"]


def models_dir() -> Path:
    """Where downloaded models live: $NEWSDIGEST_MODELS_DIR, else ~/.cache/newsdigest/models."""
    env = os.environ.get("NEWSDIGEST_MODELS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "newsdigest" / "models"


def _local_name(model_id: str) -> str:
    return model_id.replace("/", "--")


def download_model(model_id: str, dest_dir: str | Path | None = None) -> Path:
    """Download a Hugging Face model (needs network) into dest_dir/<id> and return that directory."""
    from huggingface_hub import snapshot_download

    target = Path(dest_dir) if dest_dir else models_dir()
    path = target / _local_name(model_id)
    snapshot_download(repo_id=model_id, local_dir=path, allow_patterns=_ALLOW, ignore_patterns=_IGNORE)
    return path


def resolve_model(model: str | Path, dest_dir: str | Path | None = None) -> Path | None:
    """Local directory holding `model` (a path, a download_model copy, or the HF cache), or None if absent."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path if (path / "config.json").is_file() else None
    model_id = str(model)
    local = (Path(dest_dir) if dest_dir else models_dir()) / _local_name(model_id)
    if (local / "config.json").is_file():
        return local
    try:
        from huggingface_hub import snapshot_download

        cached = Path(snapshot_download(repo_id=model_id, local_files_only=True))
    except Exception:  # any failure here (bad id, not cached, offline) means "not available"
        return None
    return cached if (cached / "config.json").is_file() else None

"""The onnx embedding backend: the same vectors as sentence-transformers, and no torch in the process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from summarizer.embedding import Embedder, default_model_path, onnx_file

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")

TEXTS = [
    "Iran and the United States resumed indirect talks in Vienna on Tuesday.",
    "The European Central Bank left interest rates unchanged.",
    "Taliban fighters took control of Kabul as the Afghan government collapsed after two decades of US efforts.",
    "short",
    "Ukraine's grain exports through the Black Sea resumed under a deal brokered by Turkey and the UN. " * 12,
]


def test_onnx_and_torch_give_the_same_vectors() -> None:
    onnx = Embedder(backend="onnx", precision="fp32").encode(TEXTS)
    torch_vecs = Embedder(backend="torch").encode(TEXTS)
    assert onnx.shape == torch_vecs.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(onnx * torch_vecs, axis=1))) > 0.9999


def test_int8_stays_close_to_fp32() -> None:
    fp32 = Embedder(backend="onnx", precision="fp32").encode(TEXTS)
    int8 = Embedder(precision="int8").encode(TEXTS)
    assert float(np.min(np.sum(fp32 * int8, axis=1))) > 0.97


def test_the_default_w8_weights_give_nearly_the_fp32_vectors() -> None:
    """8-bit weights with fp32 arithmetic: what the topic heads and the pair model were trained on, nearly."""
    default = Embedder()
    assert (default.backend, default.precision, default.name) == ("onnx", "w8", "all-MiniLM-L6-v2:w8")
    fp32 = Embedder(precision="fp32").encode(TEXTS)
    w8 = default.encode(TEXTS)
    assert np.allclose(np.linalg.norm(w8, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(fp32 * w8, axis=1))) > 0.9995
    assert not np.array_equal(fp32, w8)  # the weights really are quantized
    graph = onnx_file(default_model_path(), "w8")
    assert graph.stat().st_size < 0.7 * onnx_file(default_model_path(), "fp32").stat().st_size


def test_the_torch_backend_defaults_to_fp32() -> None:
    assert Embedder(backend="torch").precision == "fp32"


def test_default_backend_on_cpu_is_onnx_and_never_imports_torch() -> None:
    code = ("import sys; from summarizer.embedding import Embedder; e = Embedder(); v = e.encode(['one', 'two']); "
            "print(e.backend, v.shape, 'torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["onnx", "(2,", "384)", "False", "False"]


def test_export_cache_is_keyed_by_the_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSDIGEST_MODEL_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"a" * 10)
    first = onnx_file(model, "fp32")
    assert first.parent == tmp_path / "cache" and first.name.endswith(".fp32.onnx")
    assert onnx_file(model, "int8") != first
    (model / "model.safetensors").write_bytes(b"b" * 11)
    assert onnx_file(model, "fp32") != first


def test_failed_export_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSDIGEST_MODEL_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken-model"
    broken.mkdir()
    shutil.copy(default_model_path() / "tokenizer.json", broken / "tokenizer.json")
    (broken / "config.json").write_text('{"model_type": "bert"}')  # no weights
    with pytest.raises(RuntimeError, match="ONNX export of .*broken-model failed"):
        Embedder(broken, backend="onnx").encode(["x"])
    assert not any((tmp_path / "cache").glob("*.onnx")) if (tmp_path / "cache").exists() else True


def test_bad_combinations_are_refused() -> None:
    with pytest.raises(ValueError, match="onnx backend"):
        Embedder(precision="bf16", backend="onnx")
    with pytest.raises(ValueError, match="int8 embeddings need the onnx backend"):
        Embedder(precision="int8", backend="torch")
    with pytest.raises(ValueError, match="w8 embeddings need the onnx backend"):
        Embedder(precision="w8", backend="torch")
    with pytest.raises(ValueError, match="precision"):
        Embedder(precision="fp8")


def test_export_module_writes_where_the_embedder_looks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSDIGEST_MODEL_CACHE", str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "summarizer.onnx_export"], capture_output=True, text=True,
                         timeout=600, check=True, cwd=Path(__file__).resolve().parent.parent,
                         env={**os.environ, "NEWSDIGEST_MODEL_CACHE": str(tmp_path)})
    # With no arguments it writes the default embedder's graph (what `make setup` runs ahead of time).
    assert Path(out.stdout.strip()) == onnx_file(default_model_path(), Embedder().precision)
    assert onnx_file(default_model_path(), "w8").stat().st_size > 10_000_000

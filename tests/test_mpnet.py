"""all-mpnet-base-v2 from its split PyPI archive: joined, verified file by file, and the encoder the
geopolitics head reads."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bot.pipeline import topic
from summarizer import mpnet

MEMBERS = {"config.json": b'{"hidden_size": 768}', "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}'}


def _split_archive(tmp_path: Path, members: dict[str, bytes], pieces: int = 3) -> list[Path]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for rel, data in members.items():
            z.writestr(f"{mpnet.NAME}/{rel}", data)
        z.writestr(f"{mpnet.NAME}/desktop.ini", b"[.ShellClassInfo]")
        z.writestr("../escape.txt", b"never written")
    raw = buf.getvalue()
    step = len(raw) // pieces + 1
    paths = []
    for i in range(pieces):
        p = tmp_path / f"{mpnet.NAME}.zip.{i + 1:03d}"
        p.write_bytes(raw[i * step:(i + 1) * step])
        paths.append(p)
    return paths


def _pins(members: dict[str, bytes]) -> dict[str, str]:
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in members.items()}


def test_assemble_joins_the_parts_and_writes_only_the_pinned_files(tmp_path):
    parts = _split_archive(tmp_path, MEMBERS)
    target = tmp_path / "cache" / mpnet.NAME
    assert mpnet.assemble(parts, target, _pins(MEMBERS)) == target
    assert (target / "config.json").read_bytes() == MEMBERS["config.json"]
    assert (target / "1_Pooling" / "config.json").read_bytes() == MEMBERS["1_Pooling/config.json"]
    assert (target / ".verified").read_text().startswith("sentence-transformers/all-mpnet-base-v2@")
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert written == [".verified", "1_Pooling/config.json", "config.json"]
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "cache" / "escape.txt").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [mpnet.NAME], "no staging directory left behind"


def test_a_file_that_differs_from_upstream_is_refused_and_nothing_is_installed(tmp_path):
    pins = _pins(MEMBERS)
    tampered = {**MEMBERS, "config.json": b'{"hidden_size": 769}'}
    target = tmp_path / "cache" / mpnet.NAME
    with pytest.raises(mpnet.ModelUnavailable, match="config.json .*does not match the upstream file"):
        mpnet.assemble(_split_archive(tmp_path, tampered), target, pins)
    assert not target.exists()


def test_a_missing_file_or_a_broken_archive_is_a_clear_error(tmp_path):
    parts = _split_archive(tmp_path, {"config.json": MEMBERS["config.json"]})
    with pytest.raises(mpnet.ModelUnavailable, match="lacks 1_Pooling/config.json"):
        mpnet.assemble(parts, tmp_path / "a" / mpnet.NAME, _pins(MEMBERS))
    with pytest.raises(mpnet.ModelUnavailable, match="cannot read the all-mpnet-base-v2 archive"):
        mpnet.assemble(parts[:-1], tmp_path / "b" / mpnet.NAME, _pins(MEMBERS))  # the last part is missing


def test_missing_packages_name_the_install_command(monkeypatch):
    monkeypatch.setattr(mpnet, "PARTS", ("newsdigest-no-such-part-001",))
    with pytest.raises(mpnet.ModelUnavailable, match="pip install newsdigest-no-such-part-001"):
        mpnet.part_files()


def _real_model() -> Path:
    try:
        return mpnet.model_path()
    except mpnet.ModelUnavailable as exc:
        pytest.skip(f"all-mpnet-base-v2 is not installed here ({exc}); `make setup` installs it")


def test_the_installed_model_is_the_upstream_one_and_encodes_768_dim_unit_vectors():
    from summarizer.embedding import Embedder

    path = _real_model()
    for rel, want in mpnet.FILES.items():
        if rel != "model.safetensors":  # 438 MB: checked when it was installed
            assert hashlib.sha256((path / rel).read_bytes()).hexdigest() == want, rel
    emb = Embedder(path)
    assert emb.dim == 768 and emb.name == "all-mpnet-base-v2:w8"
    X = emb.encode(["Russia and Ukraine agree to a prisoner swap", "Moscow and Kyiv exchange prisoners of war",
                    "Striker signs new contract with the club"])
    assert X.shape == (3, 768) and np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert X[0] @ X[1] > X[0] @ X[2] + 0.2


def test_the_shipped_geopolitics_head_reads_mpnet_vectors_and_other_heads_the_shared_encoder():
    from summarizer.embedding import Embedder

    _real_model()
    minilm = Embedder()
    clf = topic.TopicClassifier(minilm)
    assert clf.geo_head.meta["encoder"] == "all-mpnet-base-v2:w8"
    assert clf.geo_embedder is not minilm and clf.geo_embedder.encode(["x"]).shape == (1, 768)
    assert topic.encoder_for("all-MiniLM-L6-v2:w8", minilm) is minilm
    assert topic.encoder_for("all-mpnet-base-v2:w8", minilm) is clf.geo_embedder, "one instance per process"
    with pytest.raises(ValueError, match="newsdigest cannot make"):
        topic.encoder_for("bge-large:fp32", minilm)


def test_the_minilm_head_ships_for_small_machines_and_loads_no_second_model():
    from summarizer.embedding import Embedder

    head = topic.load_geo_head(encoder="minilm")
    assert head.meta["encoder"] == "all-MiniLM-L6-v2:w8" and head.embeddings.shape == (head.meta["n"], 384)
    minilm = Embedder()
    clf = topic.TopicClassifier(minilm, geo_head=head)
    assert clf.geo_embedder is minilm
    geo = [s[topic.GEOPOLITICS] for s in clf.score_many([
        "Kremlin recalls ambassador as sanctions row with Brussels deepens. Moscow called the EU measures economic war.",
        "Midfielder signs new five-year contract with club. The 23-year-old has scored 12 goals this season."])]
    assert geo[0] > 0.5 > geo[1]
    with pytest.raises(ValueError, match="no shipped geopolitics head for encoder 'bert'"):
        topic.load_geo_head(encoder="bert")


def test_the_geo_encoder_setting_is_validated():
    from bot.errors import ConfigError
    from bot.settings import load_settings

    assert load_settings({}).geo_encoder == "mpnet"
    assert load_settings({"NEWSDIGEST_GEO_ENCODER": " MiniLM "}).geo_encoder == "minilm"
    with pytest.raises(ConfigError, match="expected mpnet or minilm"):
        load_settings({"NEWSDIGEST_GEO_ENCODER": "bert"})

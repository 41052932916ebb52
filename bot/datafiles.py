"""Reading labelled data files for evaluation and training: gzip recognised by its magic bytes, JSON lines
read with the line number of any bad record in the error."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any


def read_text(path: str | Path) -> str:
    """A (possibly gzipped) UTF-8 file's text; ValueError when it cannot be read as such."""
    raw = Path(path).read_bytes()
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: unreadable ({e})") from e


def read_json_lines(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of every non-blank line; ValueError naming the first line that is not a JSON
    object."""
    out = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not a JSON object (not JSON: {e.msg})") from e
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{n}: not a JSON object")
        out.append((n, rec))
    return out

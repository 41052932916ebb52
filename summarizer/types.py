"""The value returned by every summarization method."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary: its text, its sentences and, per sentence, the index of the source document (-1: generated)."""

    text: str
    sentences: tuple[str, ...]
    sources: tuple[int, ...]
    method: str  # "extractive" or "abstractive"
    model: str
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for caches that persist summaries."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        """Inverse of to_dict."""
        return cls(text=data["text"], sentences=tuple(data["sentences"]), sources=tuple(data["sources"]),
                   method=data["method"], model=data["model"], cached=bool(data.get("cached", False)))

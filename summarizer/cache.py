"""Summary cache: a small Protocol plus an in-memory LRU; keys hash the content, the model and the settings."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .text import normalize
from .types import Summary


@runtime_checkable
class SummaryCache(Protocol):
    """Anything that stores summaries by key (the bot keeps a database-backed one)."""

    def get(self, key: str) -> Summary | None:
        """The summary stored under key, or None."""

    def put(self, key: str, summary: Summary) -> None:
        """Store summary under key."""


def cache_key(docs: Sequence[str], *, title: str | None, model: str, settings: dict[str, Any]) -> str:
    """Stable key for (content, model, settings); whitespace-only differences in the text map to the same key."""
    payload = json.dumps({"docs": [normalize(d) for d in docs], "title": normalize(title or ""),
                          "model": model, "settings": settings}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LRUCache:
    """Thread-safe in-memory SummaryCache that evicts the least recently used entry."""

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[str, Summary] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Summary | None:
        """The summary stored under key, or None; marks it recently used."""
        with self._lock:
            summary = self._data.get(key)
            if summary is not None:
                self._data.move_to_end(key)
            return summary

    def put(self, key: str, summary: Summary) -> None:
        """Store summary under key, evicting the oldest entry when full."""
        with self._lock:
            self._data[key] = summary
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

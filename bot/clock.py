"""The service's clock: one definition of "now", free of I/O imports, so that every layer can use it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


__all__ = ["Clock", "utcnow"]

"""The summary cache: summarizer output by content key, so a story or link is summarized once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot.clock import utcnow
from bot.storage.db import Database
from bot.storage.tables import summaries


@dataclass(frozen=True)
class SummaryEntry:
    """A cached summary: the model that wrote it and its payload (summarizer.Summary.to_dict())."""

    key: str
    model: str
    payload: dict[str, Any]
    created_at: datetime


class SummaryCacheStorage(Database):
    """The `summaries` table."""

    def summary_get(self, key: str) -> SummaryEntry | None:
        """A cached summary by key."""
        with self.read() as conn:
            row = conn.execute(select(summaries).where(summaries.c.key == key)).first()
        return SummaryEntry(**row._mapping) if row else None

    def summary_put(self, key: str, model: str, payload: dict[str, Any]) -> None:
        """Cache a summary payload (first writer wins)."""
        with self.write() as conn:
            conn.execute(self.insert(summaries).values(key=key, model=model, payload=payload,
                                                       created_at=utcnow()).on_conflict_do_nothing())


__all__ = ["SummaryCacheStorage", "SummaryEntry"]

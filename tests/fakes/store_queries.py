"""Queries only tests need, straight on the tables: counts and raw rows to check, rows to set up a case."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from bot.storage.db import Database
from bot.storage.tables import articles, outbox


def count_articles(db: Database) -> int:
    """Number of stored articles."""
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(articles)).scalar_one()


def outbox_rows(db: Database, chat_db_id: int | None = None) -> list[dict[str, Any]]:
    """Outbox rows as mappings, in id order (one chat's, or all)."""
    q = select(outbox).order_by(outbox.c.id)
    if chat_db_id is not None:
        q = q.where(outbox.c.chat_id == chat_db_id)
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def enqueue_messages(db: Database, chat_db_id: int, digest_key: str, payloads: Sequence[dict[str, Any]],
                     now: datetime, subscription_id: int | None = None) -> int:
    """Queue arbitrary message parts for a chat (idempotent by digest_key + part); returns rows added."""
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    added = 0
    with db.write() as conn:
        for part, payload in enumerate(payloads):
            res = conn.execute(insert(outbox).values(
                chat_id=chat_db_id, subscription_id=subscription_id, digest_key=digest_key, part=part,
                payload=payload, status="pending", attempts=0, next_attempt_at=now, created_at=now)
                .on_conflict_do_nothing().returning(outbox.c.id))
            added += len(res.all())
    return added

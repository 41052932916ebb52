"""Owner alert storage: events recorded where they happen, each owner's alert state, and queuing the alerts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from bot.pipeline.alerts import AlertEvent, OwnerState
from bot.ports import PRIVATE
from bot.storage.chats import PENDING
from bot.storage.db import Database
from bot.storage.tables import alert_events, alert_owners, chats, outbox

KEEP_EVENTS = timedelta(days=7)
MAX_EVENTS = 2000


def _owner_state(r: Any) -> OwnerState:
    return OwnerState(owner=r.owner, cursor=r.cursor, last_sent_at=r.last_sent_at,
                      last_summary_at=r.last_summary_at, muted_until=r.muted_until)


class AlertStorage(Database):
    """Alert events and owners' alert state (mute, what was sent), and alerts queued to the outbox."""

    def record_alert(self, kind: str, subject: str, detail: str, now: datetime) -> None:
        """Store one event for the owners."""
        with self.write() as conn:
            conn.execute(alert_events.insert().values(kind=kind, subject=subject[:500], detail=detail[:1000],
                                                      created_at=now))

    def alert_events(self, after_id: int, since: datetime) -> list[AlertEvent]:
        """Events with an id above `after_id` or created after `since` (the newest MAX_EVENTS)."""
        q = (select(alert_events).where(or_(alert_events.c.id > after_id, alert_events.c.created_at > since))
             .order_by(alert_events.c.id.desc()).limit(MAX_EVENTS))
        with self.read() as conn:
            rows = conn.execute(q).all()
        return [AlertEvent(id=r.id, kind=r.kind, subject=r.subject, detail=r.detail, created_at=r.created_at)
                for r in reversed(rows)]

    def alert_owner_states(self, owners: Sequence[str]) -> dict[str, OwnerState]:
        """The stored state of each owner (a default one for an owner never seen)."""
        with self.read() as conn:
            rows = conn.execute(select(alert_owners).where(alert_owners.c.owner.in_(list(owners)))).all()
        found = {r.owner: _owner_state(r) for r in rows}
        return {o: found.get(o, OwnerState(o)) for o in owners}

    def owner_chats(self, owners: Sequence[str]) -> dict[str, int]:
        """Owner -> the database id of their private chat with the bot, for owners who have one."""
        out: dict[str, int] = {}
        with self.read() as conn:
            for owner in owners:
                platform, _, user_id = owner.partition(":")
                row = conn.execute(select(chats.c.id).where(
                    chats.c.platform == platform, chats.c.chat_ref == user_id, chats.c.thread_ref == "",
                    chats.c.kind == PRIVATE)).first()
                if row is not None:
                    out[owner] = row.id
        return out

    def save_alerts(self, before: OwnerState, after: OwnerState,
                    messages: Sequence[tuple[int, str, list[dict[str, Any]]]], now: datetime) -> bool:
        """Store an owner's new state and queue its messages ((chat id, key, payloads)) in one transaction.

        Idempotent: returns False (and changes nothing) when the stored state is no longer `before`.
        """
        with self.write() as conn:
            if before.last_summary_at is None and before.cursor == 0 and before.last_sent_at is None \
                    and conn.execute(select(alert_owners.c.owner).where(alert_owners.c.owner == before.owner)
                                     ).first() is None:
                conn.execute(alert_owners.insert().values(owner=after.owner, cursor=after.cursor,
                                                          last_sent_at=after.last_sent_at,
                                                          last_summary_at=after.last_summary_at,
                                                          muted_until=after.muted_until))
            else:
                moved = conn.execute(update(alert_owners).where(
                    alert_owners.c.owner == before.owner, alert_owners.c.cursor == before.cursor,
                    _same(alert_owners.c.last_summary_at, before.last_summary_at)).values(
                    cursor=after.cursor, last_sent_at=after.last_sent_at, last_summary_at=after.last_summary_at))
                if moved.rowcount != 1:
                    return False
            for chat_db_id, key, payloads in messages:
                for part, payload in enumerate(payloads):
                    conn.execute(self.insert(outbox).values(
                        chat_id=chat_db_id, subscription_id=None, digest_key=key[:100], part=part, payload=payload,
                        story_ids=[], status=PENDING, attempts=0, next_attempt_at=now, created_at=now
                    ).on_conflict_do_nothing())
            conn.execute(delete(alert_events).where(alert_events.c.created_at < now - KEEP_EVENTS))
        return True

    def register_owner_chat(self, platform: str, chat_id: str, now: datetime) -> None:
        """Record an owner's private chat with the bot (alerts go there), if it has no row yet."""
        with self.write() as conn:
            conn.execute(self.insert(chats).values(platform=platform, chat_ref=chat_id, thread_ref="", kind=PRIVATE,
                                                   title="", created_at=now).on_conflict_do_nothing())

    def set_alert_mute(self, owner: str, muted_until: datetime | None) -> None:
        """Mute an owner's alerts until `muted_until` (None: unmute)."""
        with self.write() as conn:
            moved = conn.execute(update(alert_owners).where(alert_owners.c.owner == owner)
                                 .values(muted_until=muted_until))
            if moved.rowcount == 0:
                # Events before the mute are not news to this owner either: start after the newest.
                newest = conn.execute(select(func.max(alert_events.c.id))).scalar() or 0
                conn.execute(alert_owners.insert().values(owner=owner, cursor=newest, muted_until=muted_until))


def _same(column: Any, value: datetime | None) -> Any:
    return column.is_(None) if value is None else and_(column.is_not(None), column == value)


__all__ = ["AlertStorage"]

"""Outbox storage: rendered digest parts queued per chat, leased to a sender, confirmed or given up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select, update

from bot.ports import ChatRef
from bot.storage.chats import FAILED, PENDING, SENT, Subscription, row_chat
from bot.storage.db import Database
from bot.storage.tables import chats, outbox, sent_stories, subscriptions


@dataclass(frozen=True)
class OutboxItem:
    """One claimed outbox row: a rendered message part for a chat."""

    id: int
    chat_db_id: int
    chat: ChatRef
    subscription_id: int | None
    digest_key: str
    part: int
    payload: dict[str, Any]
    attempts: int


class OutboxStorage(Database):
    """The delivery outbox: a digest queued with its schedule step, parts claimed in order, then settled."""

    def enqueue_digest(self, sub: Subscription, *, due_at: datetime, next_due_at: datetime, digest_key: str,
                       payloads: Sequence[dict[str, Any]], story_versions: dict[int, int], now: datetime,
                       part_stories: Sequence[Sequence[int]] | None = None,
                       coverage: Mapping[int, dict[str, Any]] | None = None) -> bool:
        """Queue a digest's parts, record its stories as sent and advance the schedule, all in one transaction.

        `part_stories` says which stories each part carries (default: all of them, in every part); each story is
        recorded with the first part that carries it (a follow-up replies to that part's message once it is
        sent) and with its `coverage` (what the item showed). Idempotent: returns False (and changes nothing)
        when another worker already handled this due time.
        """
        with self.write() as conn:
            moved = conn.execute(update(subscriptions).where(
                subscriptions.c.id == sub.id, subscriptions.c.active.is_(True),
                subscriptions.c.next_due_at == due_at).values(
                next_due_at=next_due_at, last_digest_at=now if payloads else sub.last_digest_at, updated_at=now))
            if moved.rowcount != 1:
                return False
            part_of: dict[int, int] = {}
            for part, payload in enumerate(payloads):
                ids = sorted(part_stories[part]) if part_stories is not None else sorted(story_versions)
                row_id = conn.execute(self.insert(outbox).values(
                    chat_id=sub.chat_db_id, subscription_id=sub.id, digest_key=digest_key, part=part,
                    payload=payload, story_ids=ids, status=PENDING, attempts=0,
                    next_attempt_at=now, created_at=now).on_conflict_do_nothing().returning(outbox.c.id)).scalar()
                for story_id in ids:
                    if row_id is not None:
                        part_of.setdefault(story_id, row_id)
            for story_id, version in story_versions.items():
                values = {"version": version, "sent_at": now, "outbox_id": part_of.get(story_id),
                          "coverage": (coverage or {}).get(story_id)}
                stmt = self.insert(sent_stories).values(subscription_id=sub.id, story_id=story_id, **values)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=[sent_stories.c.subscription_id, sent_stories.c.story_id], set_=values))
        return True

    def claim_outbox(self, now: datetime, *, lease_s: float, limit: int, platforms: Sequence[str] | None = None,
                     exclude_chats: Sequence[int] = ()) -> list[OutboxItem]:
        """Lease due parts, each chat's earliest pending part only (so parts go out in order, one at a time).

        A claim expires after `lease_s`, so a crashed worker's parts are taken up again; confirmed parts
        (status sent) are never claimed again.
        """
        earlier = outbox.alias("earlier")
        q = (select(outbox, chats.c.platform, chats.c.chat_ref, chats.c.thread_ref, chats.c.kind, chats.c.title)
             .select_from(outbox.join(chats, chats.c.id == outbox.c.chat_id))
             .where(outbox.c.status == PENDING, outbox.c.next_attempt_at <= now,
                    or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
                    ~exists().where(earlier.c.chat_id == outbox.c.chat_id, earlier.c.status == PENDING,
                                    earlier.c.id < outbox.c.id))
             .order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit))
        if platforms is not None:
            q = q.where(chats.c.platform.in_(list(platforms)))
        if exclude_chats:
            q = q.where(outbox.c.chat_id.not_in(list(exclude_chats)))
        if self.dialect == "postgresql":
            q = q.with_for_update(of=outbox, skip_locked=True)
        until = now + timedelta(seconds=lease_s)
        with self.write() as conn:
            rows = conn.execute(q).all()
            if rows:
                conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows])).values(claimed_until=until))
        return [OutboxItem(id=r.id, chat_db_id=r.chat_id, chat=row_chat(r._mapping), subscription_id=r.subscription_id,
                           digest_key=r.digest_key, part=r.part, payload=r.payload, attempts=r.attempts) for r in rows]

    def claimed(self, item_id: int, until: datetime) -> bool:
        """Whether this part is still pending under the claim that ends at `until` (a scale-out delivery task
        checks it before sending: a part sent already, or claimed again since, is not sent by this task)."""
        with self.read() as conn:
            row = conn.execute(select(outbox.c.status, outbox.c.claimed_until).where(outbox.c.id == item_id)).first()
        return row is not None and row.status == PENDING and row.claimed_until is not None \
            and abs((row.claimed_until - until).total_seconds()) < 1e-3

    def mark_sent(self, item_id: int, message_ref: str, now: datetime) -> None:
        """Confirm a part as delivered; it is never sent again."""
        with self.write() as conn:
            conn.execute(update(outbox).where(outbox.c.id == item_id).values(
                status=SENT, message_ref=message_ref[:100], sent_at=now, claimed_until=None,
                attempts=outbox.c.attempts + 1))

    def retry_later(self, item_id: int, at: datetime, error: str | None, *, count_attempt: bool = True) -> None:
        """Release a part to be tried again at `at`."""
        values: dict[str, Any] = {"next_attempt_at": at, "claimed_until": None}
        if error is not None:
            values["last_error"] = error[:2000]
        if count_attempt:
            values["attempts"] = outbox.c.attempts + 1
        with self.write() as conn:
            conn.execute(update(outbox).where(outbox.c.id == item_id, outbox.c.status == PENDING).values(**values))

    def release(self, item_ids: Sequence[int]) -> None:
        """Give back claimed parts unsent (shutdown), so the next worker takes them at once."""
        if not item_ids:
            return
        with self.write() as conn:
            conn.execute(update(outbox).where(outbox.c.id.in_(list(item_ids)), outbox.c.status == PENDING)
                         .values(claimed_until=None))

    def mark_failed(self, item_id: int, error: str, now: datetime) -> None:
        """Give up on a part (permanent error or too many attempts); later parts of the chat go on."""
        with self.write() as conn:
            conn.execute(update(outbox).where(outbox.c.id == item_id).values(
                status=FAILED, last_error=error[:2000], claimed_until=None, attempts=outbox.c.attempts + 1))

    def outbox_counts(self) -> dict[str, int]:
        """Rows per status."""
        with self.read() as conn:
            return {r.status: r.n for r in conn.execute(
                select(outbox.c.status, func.count().label("n")).group_by(outbox.c.status))}


__all__ = ["OutboxItem", "OutboxStorage"]

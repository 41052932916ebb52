"""Chat storage: chats, their subscriptions and settings, the /summary cooldown, and the stories already sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from bot.pipeline.digest import Schedule
from bot.pipeline.filters import ChatFilters
from bot.pipeline.followups import Coverage, SentStory
from bot.ports import ChatRef
from bot.settings import DigestDefaults
from bot.storage.db import Database
from bot.storage.tables import chats, outbox, sent_stories, subscriptions

PENDING, SENT, FAILED, CANCELLED = "pending", "sent", "failed", "cancelled"


@dataclass(frozen=True)
class Subscription:
    """A chat's subscription with its settings."""

    id: int
    chat_db_id: int
    chat: ChatRef
    active: bool
    paused_reason: str | None
    schedule: Schedule
    max_stories: int
    topics: tuple[str, ...]
    last_digest_at: datetime | None
    next_due_at: datetime | None
    filters: ChatFilters = ChatFilters()


def row_chat(m: Any) -> ChatRef:
    """The ChatRef of a row joined with `chats` (platform, chat_ref, thread_ref, kind, title)."""
    return ChatRef(platform=m["platform"], chat_id=m["chat_ref"], thread_id=m["thread_ref"], kind=m["kind"],
                   title=m["title"])


def _subscription(r: Any) -> Subscription:
    m = r._mapping
    return Subscription(
        id=m["id"], chat_db_id=m["chat_id"], chat=row_chat(m), active=m["active"], paused_reason=m["paused_reason"],
        schedule=Schedule(m["timezone"], tuple(m["times"] or ()), m["every_hours"]), max_stories=m["max_stories"],
        topics=tuple(m["topics"] or ()), last_digest_at=m["last_digest_at"], next_due_at=m["next_due_at"],
        filters=ChatFilters.from_json(m["filters"]))


_SUB_COLUMNS = (subscriptions, chats.c.platform, chats.c.chat_ref, chats.c.thread_ref, chats.c.kind, chats.c.title)


class SubscriptionStorage(Database):
    """Chats and their subscriptions: subscribe, settings, pause, the /summary cooldown, sent story versions."""

    def _upsert_chat(self, conn: Connection, ref: ChatRef, now: datetime) -> int:
        cond = and_(chats.c.platform == ref.platform, chats.c.chat_ref == ref.chat_id,
                    chats.c.thread_ref == ref.thread_id)
        conn.execute(self.insert(chats).values(platform=ref.platform, chat_ref=ref.chat_id, thread_ref=ref.thread_id,
                                                kind=ref.kind, title=ref.title[:300], created_at=now)
                     .on_conflict_do_nothing())
        row = conn.execute(select(chats.c.id, chats.c.kind, chats.c.title).where(cond)).one()
        if (row.kind, row.title) != (ref.kind, ref.title[:300]) and ref.title:
            conn.execute(update(chats).where(chats.c.id == row.id).values(kind=ref.kind, title=ref.title[:300]))
        chat_id: int = row.id
        return chat_id

    def _sub_query(self) -> Select[Any]:
        return select(*_SUB_COLUMNS).select_from(subscriptions.join(chats, chats.c.id == subscriptions.c.chat_id))

    def get_subscription(self, ref: ChatRef) -> Subscription | None:
        """The chat's subscription (active or paused), or None."""
        q = self._sub_query().where(chats.c.platform == ref.platform, chats.c.chat_ref == ref.chat_id,
                                    chats.c.thread_ref == ref.thread_id)
        with self.read() as conn:
            row = conn.execute(q).first()
        return _subscription(row) if row else None

    def get_subscription_by_id(self, sub_id: int) -> Subscription | None:
        """A subscription by id."""
        with self.read() as conn:
            row = conn.execute(self._sub_query().where(subscriptions.c.id == sub_id)).first()
        return _subscription(row) if row else None

    def subscribe(self, ref: ChatRef, defaults: DigestDefaults, now: datetime, *,
                  next_due: Callable[[Schedule, datetime], datetime]) -> tuple[Subscription, str]:
        """Subscribe a chat with the default settings, or resume a paused one with its own; returns (sub, state).

        state is "created", "resumed" or "already"; `next_due(schedule, now)` (the digest stage's) gives the
        first digest time of a created or resumed subscription, in the same transaction.
        """
        with self.write() as conn:
            chat_id = self._upsert_chat(conn, ref, now)
            row = conn.execute(select(subscriptions).where(subscriptions.c.chat_id == chat_id)).first()
            if row is None:
                schedule = Schedule(defaults.timezone, tuple(defaults.times), defaults.every_hours)
                conn.execute(insert(subscriptions).values(
                    chat_id=chat_id, active=True, timezone=schedule.timezone, times=list(schedule.times),
                    every_hours=schedule.every_hours, max_stories=defaults.max_stories, topics=list(defaults.topics),
                    next_due_at=next_due(schedule, now), created_at=now, updated_at=now))
                state = "created"
            elif row.active:
                state = "already"
            else:
                schedule = Schedule(row.timezone, tuple(row.times or ()), row.every_hours)
                conn.execute(update(subscriptions).where(subscriptions.c.id == row.id).values(
                    active=True, paused_reason=None, next_due_at=next_due(schedule, now), updated_at=now))
                state = "resumed"
        sub = self.get_subscription(ref)
        assert sub is not None
        return sub, state

    def unsubscribe(self, ref: ChatRef, now: datetime) -> bool:
        """Stop a chat's digests (settings kept) and cancel its queued parts; False when it was not subscribed."""
        sub = self.get_subscription(ref)
        if sub is None or not sub.active:
            return False
        self.pause(sub.chat_db_id, "unsubscribed", now)
        return True

    def pause(self, chat_db_id: int, reason: str, now: datetime) -> None:
        """Pause a chat's subscription (settings kept) and cancel what is queued for it."""
        with self.write() as conn:
            self._pause(conn, [chat_db_id], reason, now)

    def pause_chat(self, platform: str, chat_ref: str, reason: str, now: datetime) -> int:
        """Pause the subscriptions of a whole chat, each forum topic or thread of it included (the bot was
        removed from the group), and cancel what is queued for them; returns how many were active."""
        return self.pause_chats(platform, [chat_ref], reason, now)

    def pause_chats(self, platform: str, chat_refs: Sequence[str], reason: str, now: datetime) -> int:
        """pause_chat for several chats in one transaction (every channel of a Discord server the bot left)."""
        refs = list(dict.fromkeys(chat_refs))
        with self.write() as conn:
            ids: list[int] = []
            for i in range(0, len(refs), 500):  # bounded IN lists for servers with many channels
                ids += conn.execute(select(chats.c.id).where(chats.c.platform == platform,
                                                             chats.c.chat_ref.in_(refs[i:i + 500]))).scalars()
            return self._pause(conn, ids, reason, now) if ids else 0

    @staticmethod
    def _pause(conn: Connection, chat_db_ids: Sequence[int], reason: str, now: datetime) -> int:
        active = conn.execute(select(func.count()).select_from(subscriptions).where(
            subscriptions.c.chat_id.in_(chat_db_ids), subscriptions.c.active.is_(True))).scalar_one()
        # Only active ones: a chat that unsubscribed itself keeps "unsubscribed" as its reason.
        conn.execute(update(subscriptions).where(subscriptions.c.chat_id.in_(chat_db_ids),
                                                 subscriptions.c.active.is_(True)).values(
            active=False, paused_reason=reason[:500], next_due_at=None, updated_at=now))
        conn.execute(update(outbox).where(outbox.c.chat_id.in_(chat_db_ids), outbox.c.status == PENDING)
                     .values(status=CANCELLED, last_error=reason[:2000], claimed_until=None))
        return active

    def update_subscription(self, sub_id: int, now: datetime, *, schedule: Schedule | None = None,
                            next_due_at: datetime | None = None, max_stories: int | None = None,
                            topics: Sequence[str] | None = None,
                            filters: ChatFilters | None = None) -> Subscription:
        """Change settings; a new schedule comes with its next due time (computed by the digest stage)."""
        values: dict[str, Any] = {"updated_at": now}
        if schedule is not None:
            if next_due_at is None:
                raise ValueError("a new schedule needs its next_due_at")
            values.update(timezone=schedule.timezone, times=list(schedule.times), every_hours=schedule.every_hours,
                          next_due_at=next_due_at)
        if max_stories is not None:
            values["max_stories"] = max_stories
        if topics is not None:
            values["topics"] = list(topics)
        if filters is not None:
            values["filters"] = filters.to_json()
        with self.write() as conn:
            conn.execute(update(subscriptions).where(subscriptions.c.id == sub_id).values(**values))
        sub = self.get_subscription_by_id(sub_id)
        assert sub is not None
        return sub

    # /summary cooldown ---------------------------------------------------------------------------------------

    def claim_summary(self, ref: ChatRef, now: datetime, cooldown_s: float) -> datetime | None:
        """Start a /summary here unless one started less than `cooldown_s` ago; returns None when granted, else
        when the next one is allowed.

        Check and claim are one UPDATE, so concurrent requests (several updates at once, several processes)
        get one summary, and the cooldown survives a restart.
        """
        cutoff = now - timedelta(seconds=cooldown_s)
        with self.write() as conn:
            chat_id = self._upsert_chat(conn, ref, now)
            granted = conn.execute(update(chats).where(
                chats.c.id == chat_id,
                or_(chats.c.last_summary_at.is_(None), chats.c.last_summary_at <= cutoff)).values(
                last_summary_at=now)).rowcount
            if granted:
                return None
            last = conn.execute(select(chats.c.last_summary_at).where(chats.c.id == chat_id)).scalar()
        return (last or now) + timedelta(seconds=cooldown_s)

    def release_summary(self, ref: ChatRef, claimed_at: datetime) -> None:
        """Give back a claim that produced nothing (the link failed): the chat may ask again at once. A newer
        claim is left alone."""
        with self.write() as conn:
            # The claim succeeded, so the one before it had expired: clearing it is the same as restoring it.
            conn.execute(update(chats).where(
                chats.c.platform == ref.platform, chats.c.chat_ref == ref.chat_id,
                chats.c.thread_ref == ref.thread_id, chats.c.last_summary_at == claimed_at).values(
                last_summary_at=None))

    def request_digest(self, ref: ChatRef, now: datetime) -> bool:
        """Make an active subscription due now (its regular schedule resumes after this digest)."""
        with self.write() as conn:
            chat_id = conn.execute(select(chats.c.id).where(
                chats.c.platform == ref.platform, chats.c.chat_ref == ref.chat_id,
                chats.c.thread_ref == ref.thread_id)).scalar()
            if chat_id is None:
                return False
            return conn.execute(update(subscriptions).where(
                subscriptions.c.chat_id == chat_id, subscriptions.c.active.is_(True)).values(
                next_due_at=now, updated_at=now)).rowcount > 0

    def migrate_chat(self, platform: str, old_chat_id: str, new_chat_id: str) -> None:
        """Follow a chat that moved (Telegram group -> supergroup): its rows now point at the new id."""
        with self.write() as conn:
            old = conn.execute(select(chats.c.id, chats.c.thread_ref).where(
                chats.c.platform == platform, chats.c.chat_ref == old_chat_id)).all()
            for row in old:
                clash = conn.execute(select(chats.c.id).where(
                    chats.c.platform == platform, chats.c.chat_ref == new_chat_id,
                    chats.c.thread_ref == row.thread_ref)).first()
                if clash is None:
                    conn.execute(update(chats).where(chats.c.id == row.id).values(chat_ref=new_chat_id))
                else:
                    # The new chat already has its own row (someone used the bot there): keep that one.
                    conn.execute(delete(chats).where(chats.c.id == row.id))

    def due_subscriptions(self, now: datetime, limit: int = 500, platforms: Sequence[str] | None = None
                          ) -> list[Subscription]:
        """Active subscriptions whose next digest is due."""
        q = (self._sub_query().where(subscriptions.c.active.is_(True), subscriptions.c.next_due_at <= now)
             .order_by(subscriptions.c.next_due_at, subscriptions.c.id).limit(limit))
        if platforms is not None:
            q = q.where(chats.c.platform.in_(list(platforms)))
        with self.read() as conn:
            return [_subscription(r) for r in conn.execute(q)]

    def subscription_counts(self) -> dict[str, int]:
        """Subscriptions by state: active, paused (by the bot, e.g. it was blocked), unsubscribed (for metrics)."""
        state = case((subscriptions.c.active.is_(True), "active"),
                     (subscriptions.c.paused_reason == "unsubscribed", "unsubscribed"), else_="paused")
        q = select(state.label("state"), func.count().label("n")).select_from(subscriptions).group_by(state)
        with self.read() as conn:
            return {r.state: r.n for r in conn.execute(q)}

    def sent_versions(self, sub_id: int, story_ids: Sequence[int] | None = None) -> dict[int, int]:
        """story id -> version already sent to this subscription."""
        q = select(sent_stories.c.story_id, sent_stories.c.version).where(sent_stories.c.subscription_id == sub_id)
        if story_ids is not None:
            if not story_ids:
                return {}
            q = q.where(sent_stories.c.story_id.in_(list(story_ids)))
        with self.read() as conn:
            return {r.story_id: r.version for r in conn.execute(q)}

    def sent_stories(self, sub_id: int, story_ids: Sequence[int]) -> dict[int, SentStory]:
        """story id -> what this subscription was sent of it: version, what the item showed, and the message it
        went in (only once that part is confirmed sent)."""
        if not story_ids:
            return {}
        q = (select(sent_stories.c.story_id, sent_stories.c.version, sent_stories.c.coverage, outbox.c.status,
                    outbox.c.message_ref)
             .select_from(sent_stories.outerjoin(outbox, outbox.c.id == sent_stories.c.outbox_id))
             .where(sent_stories.c.subscription_id == sub_id, sent_stories.c.story_id.in_(list(story_ids))))
        with self.read() as conn:
            return {r.story_id: SentStory(r.version, Coverage.from_json(r.coverage),
                                          r.message_ref if r.status == SENT and r.message_ref else "")
                    for r in conn.execute(q)}


__all__ = ["CANCELLED", "FAILED", "PENDING", "SENT", "Subscription", "SubscriptionStorage", "row_chat"]

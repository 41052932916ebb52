"""Chats, subscriptions, sent stories and the delivery outbox (composes with Store over the same engine)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.pipeline.digest import OutletLink, Schedule, StoryCandidate, next_due
from bot.ports import ChatRef
from bot.settings import DigestDefaults
from bot.storage.store import outlet_name
from bot.storage.tables import articles, chats, feeds, outbox, sent_stories, stories, subscriptions

PENDING, SENT, FAILED, CANCELLED = "pending", "sent", "failed", "cancelled"
MAX_CANDIDATES = 1000
MAX_LINKS_PER_STORY = 12


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


def _chat_ref(m: Any) -> ChatRef:
    return ChatRef(platform=m["platform"], chat_id=m["chat_ref"], thread_id=m["thread_ref"], kind=m["kind"],
                   title=m["title"])


def _subscription(r: Any) -> Subscription:
    m = r._mapping
    return Subscription(
        id=m["id"], chat_db_id=m["chat_id"], chat=_chat_ref(m), active=m["active"], paused_reason=m["paused_reason"],
        schedule=Schedule(m["timezone"], tuple(m["times"] or ()), m["every_hours"]), max_stories=m["max_stories"],
        topics=tuple(m["topics"] or ()), last_digest_at=m["last_digest_at"], next_due_at=m["next_due_at"])


_SUB_COLUMNS = [subscriptions, chats.c.platform, chats.c.chat_ref, chats.c.thread_ref, chats.c.kind, chats.c.title]


def _topic_names(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, dict):
        return tuple(k for k, v in raw.items() if v)
    if isinstance(raw, list | tuple):
        return tuple(str(t) for t in raw)
    return ()


def _topic_scores(raw: Any) -> dict[str, float]:
    if isinstance(raw, dict):
        return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}
    return {}


class ChatStore:
    """Database access for the chat layer: chats, subscriptions, sent stories, outbox."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def _insert(self, table):  # noqa: ANN001, ANN202
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    # chats and subscriptions --------------------------------------------------------------------------------

    def _upsert_chat(self, conn: Connection, ref: ChatRef, now: datetime) -> int:
        cond = and_(chats.c.platform == ref.platform, chats.c.chat_ref == ref.chat_id,
                    chats.c.thread_ref == ref.thread_id)
        conn.execute(self._insert(chats).values(platform=ref.platform, chat_ref=ref.chat_id, thread_ref=ref.thread_id,
                                                kind=ref.kind, title=ref.title[:300], created_at=now)
                     .on_conflict_do_nothing())
        row = conn.execute(select(chats.c.id, chats.c.kind, chats.c.title).where(cond)).one()
        if (row.kind, row.title) != (ref.kind, ref.title[:300]) and ref.title:
            conn.execute(update(chats).where(chats.c.id == row.id).values(kind=ref.kind, title=ref.title[:300]))
        return row.id

    def _sub_query(self):  # noqa: ANN202
        return select(*_SUB_COLUMNS).select_from(subscriptions.join(chats, chats.c.id == subscriptions.c.chat_id))

    def get_subscription(self, ref: ChatRef) -> Subscription | None:
        """The chat's subscription (active or paused), or None."""
        q = self._sub_query().where(chats.c.platform == ref.platform, chats.c.chat_ref == ref.chat_id,
                                    chats.c.thread_ref == ref.thread_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return _subscription(row) if row else None

    def get_subscription_by_id(self, sub_id: int) -> Subscription | None:
        """A subscription by id."""
        with self.engine.connect() as conn:
            row = conn.execute(self._sub_query().where(subscriptions.c.id == sub_id)).first()
        return _subscription(row) if row else None

    def subscribe(self, ref: ChatRef, defaults: DigestDefaults, now: datetime) -> tuple[Subscription, str]:
        """Subscribe a chat with the default settings, or resume a paused one with its own; returns (sub, state).

        state is "created", "resumed" or "already".
        """
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
            self._pause(conn, [chat_db_id], reason, now)

    def pause_chat(self, platform: str, chat_ref: str, reason: str, now: datetime) -> int:
        """Pause the subscriptions of a whole chat, each forum topic or thread of it included (the bot was
        removed from the group), and cancel what is queued for them; returns how many were active."""
        with self.engine.begin() as conn:
            ids = list(conn.execute(select(chats.c.id).where(chats.c.platform == platform,
                                                             chats.c.chat_ref == chat_ref)).scalars())
            return self._pause(conn, ids, reason, now) if ids else 0

    @staticmethod
    def _pause(conn: Connection, chat_db_ids: Sequence[int], reason: str, now: datetime) -> int:
        active = conn.execute(select(func.count()).select_from(subscriptions).where(
            subscriptions.c.chat_id.in_(chat_db_ids), subscriptions.c.active.is_(True))).scalar_one()
        conn.execute(update(subscriptions).where(subscriptions.c.chat_id.in_(chat_db_ids)).values(
            active=False, paused_reason=reason[:500], next_due_at=None, updated_at=now))
        conn.execute(update(outbox).where(outbox.c.chat_id.in_(chat_db_ids), outbox.c.status == PENDING)
                     .values(status=CANCELLED, last_error=reason[:2000], claimed_until=None))
        return active

    def update_subscription(self, sub_id: int, now: datetime, *, schedule: Schedule | None = None,
                            max_stories: int | None = None, topics: Sequence[str] | None = None) -> Subscription:
        """Change settings; a new schedule recomputes the next due time."""
        values: dict[str, Any] = {"updated_at": now}
        if schedule is not None:
            values.update(timezone=schedule.timezone, times=list(schedule.times), every_hours=schedule.every_hours,
                          next_due_at=next_due(schedule, now))
        if max_stories is not None:
            values["max_stories"] = max_stories
        if topics is not None:
            values["topics"] = list(topics)
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
            # The claim succeeded, so the one before it had expired: clearing it is the same as restoring it.
            conn.execute(update(chats).where(
                chats.c.platform == ref.platform, chats.c.chat_ref == ref.chat_id,
                chats.c.thread_ref == ref.thread_id, chats.c.last_summary_at == claimed_at).values(
                last_summary_at=None))

    def request_digest(self, ref: ChatRef, now: datetime) -> bool:
        """Make an active subscription due now (its regular schedule resumes after this digest)."""
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
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
        with self.engine.connect() as conn:
            return [_subscription(r) for r in conn.execute(q)]

    def candidate_stories(self, since: datetime, until: datetime, limit: int = MAX_CANDIDATES
                          ) -> list[StoryCandidate]:
        """Stories with a major update in (since, until], with one link per member article (earliest first)."""
        q = (select(stories).where(stories.c.major_update_at > since, stories.c.major_update_at <= until)
             .order_by(stories.c.outlet_count.desc(), stories.c.major_update_at.desc()).limit(limit))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
            ids = [r.id for r in rows]
            links: dict[int, list[OutletLink]] = {i: [] for i in ids}
            if ids:
                # Imported here: story.py pulls numpy and scikit-learn, which most chat-store users never need.
                from bot.pipeline.story import is_core_member

                lq = (select(articles.c.story_id, articles.c.url, articles.c.canonical_url, articles.c.title,
                             articles.c.story_reason, articles.c.story_score, feeds.c.id.label("feed_id"),
                             feeds.c.name, feeds.c.title.label("feed_title"), feeds.c.url.label("feed_url"))
                      .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
                      .where(articles.c.story_id.in_(ids))
                      # The order of Store.story_members: the first core member is the lead everywhere.
                      .order_by(articles.c.story_id, func.coalesce(articles.c.published_at, articles.c.fetched_at),
                                articles.c.id))
                for r in conn.execute(lq):
                    url = r.url or r.canonical_url
                    got = links[r.story_id]
                    core = is_core_member(r.story_reason, r.story_score)
                    # Weak members travel too (the digest stage drops them) but never crowd out core ones.
                    if url and sum(lk.core for lk in got) < MAX_LINKS_PER_STORY and len(got) < 4 * MAX_LINKS_PER_STORY:
                        outlet = outlet_name(r.name, r.feed_title, r.feed_url) if r.feed_id is not None else ""
                        got.append(OutletLink(outlet=outlet, url=url, title=r.title or "", core=core))
        return [StoryCandidate(id=r.id, version=r.version, title=r.title or "", summary=r.summary or "",
                               major_update_at=r.major_update_at, outlet_count=r.outlet_count,
                               article_count=r.article_count, topic_score=r.topic_score or 0.0,
                               topics=_topic_names(r.topics), links=tuple(links[r.id]),
                               topic_scores=_topic_scores(r.topics)) for r in rows]

    def sent_versions(self, sub_id: int, story_ids: Sequence[int] | None = None) -> dict[int, int]:
        """story id -> version already sent to this subscription."""
        q = select(sent_stories.c.story_id, sent_stories.c.version).where(sent_stories.c.subscription_id == sub_id)
        if story_ids is not None:
            if not story_ids:
                return {}
            q = q.where(sent_stories.c.story_id.in_(list(story_ids)))
        with self.engine.connect() as conn:
            return {r.story_id: r.version for r in conn.execute(q)}

    # scheduling + outbox ------------------------------------------------------------------------------------

    def enqueue_digest(self, sub: Subscription, *, due_at: datetime, next_due_at: datetime, digest_key: str,
                       payloads: Sequence[dict[str, Any]], story_versions: dict[int, int], now: datetime) -> bool:
        """Queue a digest's parts, record its stories as sent and advance the schedule, all in one transaction.

        Idempotent: returns False (and changes nothing) when another worker already handled this due time.
        """
        with self.engine.begin() as conn:
            moved = conn.execute(update(subscriptions).where(
                subscriptions.c.id == sub.id, subscriptions.c.active.is_(True),
                subscriptions.c.next_due_at == due_at).values(
                next_due_at=next_due_at, last_digest_at=now if payloads else sub.last_digest_at, updated_at=now))
            if moved.rowcount != 1:
                return False
            for part, payload in enumerate(payloads):
                conn.execute(self._insert(outbox).values(
                    chat_id=sub.chat_db_id, subscription_id=sub.id, digest_key=digest_key, part=part,
                    payload=payload, story_ids=sorted(story_versions), status=PENDING, attempts=0,
                    next_attempt_at=now, created_at=now).on_conflict_do_nothing())
            for story_id, version in story_versions.items():
                stmt = self._insert(sent_stories).values(subscription_id=sub.id, story_id=story_id, version=version,
                                                         sent_at=now)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=[sent_stories.c.subscription_id, sent_stories.c.story_id],
                    set_={"version": version, "sent_at": now}))
        return True

    def enqueue_messages(self, chat_db_id: int, digest_key: str, payloads: Sequence[dict[str, Any]], now: datetime,
                         subscription_id: int | None = None) -> int:
        """Queue arbitrary message parts for a chat (idempotent by digest_key + part); returns rows added."""
        added = 0
        with self.engine.begin() as conn:
            for part, payload in enumerate(payloads):
                res = conn.execute(self._insert(outbox).values(
                    chat_id=chat_db_id, subscription_id=subscription_id, digest_key=digest_key, part=part,
                    payload=payload, status=PENDING, attempts=0, next_attempt_at=now, created_at=now)
                    .on_conflict_do_nothing().returning(outbox.c.id))
                added += len(res.all())
        return added

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
        with self.engine.begin() as conn:
            rows = conn.execute(q).all()
            if rows:
                conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows])).values(claimed_until=until))
        return [OutboxItem(id=r.id, chat_db_id=r.chat_id, chat=_chat_ref(r._mapping), subscription_id=r.subscription_id,
                           digest_key=r.digest_key, part=r.part, payload=r.payload, attempts=r.attempts) for r in rows]

    def mark_sent(self, item_id: int, message_ref: str, now: datetime) -> None:
        """Confirm a part as delivered; it is never sent again."""
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == item_id, outbox.c.status == PENDING).values(**values))

    def release(self, item_ids: Sequence[int]) -> None:
        """Give back claimed parts unsent (shutdown), so the next worker takes them at once."""
        if not item_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id.in_(list(item_ids)), outbox.c.status == PENDING)
                         .values(claimed_until=None))

    def mark_failed(self, item_id: int, error: str, now: datetime) -> None:
        """Give up on a part (permanent error or too many attempts); later parts of the chat go on."""
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == item_id).values(
                status=FAILED, last_error=error[:2000], claimed_until=None, attempts=outbox.c.attempts + 1))

    def outbox_counts(self) -> dict[str, int]:
        """Rows per status."""
        with self.engine.connect() as conn:
            return {r.status: r.n for r in conn.execute(
                select(outbox.c.status, func.count().label("n")).group_by(outbox.c.status))}

    def outbox_rows(self, chat_db_id: int | None = None) -> list[dict[str, Any]]:
        """Outbox rows (for tests and diagnostics), in id order."""
        q = select(outbox).order_by(outbox.c.id)
        if chat_db_id is not None:
            q = q.where(outbox.c.chat_id == chat_db_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

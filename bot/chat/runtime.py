"""ChatRuntime: the scheduler (due digests -> outbox) and the sender (outbox -> chat sinks, paced).

Both loops keep their state in the database, so a restart neither loses a due digest nor re-sends a part that
was confirmed sent. Adapters that receive commands (Telegram, Discord) are `services` started and stopped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot import metrics
from bot.chat.digests import DigestBuilder
from bot.clock import utcnow
from bot.errors import DeliveryError, RateLimitedError
from bot.pipeline import alerts as alert_stage
from bot.pipeline.delivery import Pacer, on_failure
from bot.pipeline.digest import StoryCandidate, digest_key, next_due
from bot.ports import AlertStore, ChatRef, ChatRuntimeStore, ChatSink, OutgoingMessage, Reply, bold, para
from bot.settings import DigestDefaults
from bot.storage.chats import Subscription
from bot.storage.outage import Backoff, describe, is_database_down
from bot.storage.outbox import OutboxItem

log = logging.getLogger(__name__)


class Clock(Protocol):
    """Time for the runtime: monotonic seconds for pacing, wall time for the database, and sleeping."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def now(self) -> datetime:
        """Aware UTC wall time."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def now(self) -> datetime:
        """utcnow()."""
        return utcnow()

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep."""
        await asyncio.sleep(seconds)


class Service(Protocol):
    """Something with a lifecycle the runtime owns (an adapter receiving updates)."""

    async def start(self) -> None:
        """Start receiving."""
        ...

    async def stop(self) -> None:
        """Stop receiving."""
        ...


@dataclass(frozen=True)
class RuntimeConfig:
    """Loop timings; defaults suit production, tests shorten them."""

    scheduler_tick_s: float = 30.0
    lease_s: float = 120.0
    claim_batch: int = 500
    claim_interval_s: float = 1.0
    max_in_flight: int = 16
    shutdown_grace_s: float = 10.0
    min_topic_score: float | None = None
    # While the database is unreachable each loop retries after waits doubling from the larger of its own
    # interval and db_retry_base_s, up to db_retry_max_s (jittered).
    db_retry_base_s: float = 1.0
    db_retry_max_s: float = 30.0


class ChatRuntime:
    """Scheduler + paced sender over the outbox, for every registered sink (each paced by its own `limits`)."""

    def __init__(self, chats: ChatRuntimeStore, defaults: DigestDefaults, sinks: Sequence[ChatSink], *,
                 services: Sequence[Service] = (), clock: Clock | None = None,
                 config: RuntimeConfig | None = None, owners: Sequence[str] = (),
                 alerts: AlertStore | None = None) -> None:
        self.chats = chats
        # Owner alerts (NEWSDIGEST_ADMINS) go to the owners' private chats through the outbox.
        self.owners = sorted(owners)
        self.alerts = alerts
        self._api_health: dict[str, alert_stage.ApiHealth] = {}
        self._unreachable_owners: set[str] = set()
        self.defaults = defaults
        self.sinks = {s.platform: s for s in sinks}
        self.services = list(services)
        self.clock = clock or SystemClock()
        self.config = config or RuntimeConfig()
        self.digests = DigestBuilder(chats, defaults, min_topic_score=self.config.min_topic_score)
        self.pacers = {p: Pacer(sink.limits) for p, sink in self.sinks.items()}
        self._stop = asyncio.Event()
        # One signal per loop: a send must not run the scheduler, and neither loop may clear the other's wake-up.
        self._wake_scheduler = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started: list[Service] = []  # services started and not yet stopped, in start order
        self._sending: set[asyncio.Task[None]] = set()
        self._buffer: dict[int, OutboxItem] = {}
        self._in_flight: set[int] = set()
        self._heap: list[tuple[float, int, int]] = []
        self._seq = 0
        self.stats = {"sent": 0, "retried": 0, "paused": 0, "failed": 0, "migrated": 0, "digests": 0}
        cfg = self.config
        self._scheduler_db = Backoff("chat scheduler", base_s=max(cfg.scheduler_tick_s, cfg.db_retry_base_s),
                                     max_s=cfg.db_retry_max_s, logger=log, clock=self.clock.monotonic)
        self._sender_db = Backoff("chat sender", base_s=max(cfg.claim_interval_s, cfg.db_retry_base_s),
                                  max_s=cfg.db_retry_max_s, logger=log, clock=self.clock.monotonic)

    # lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the services, then the scheduler and sender loops.

        When a service fails to start, the ones already started are stopped again and its error is raised (a
        Discord login failure must not leave the Telegram adapter polling).
        """
        for svc in self.services:
            try:
                await svc.start()
            except BaseException:
                await self._stop_services()
                raise
            self._started.append(svc)
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._scheduler_loop(), name="chat-scheduler"),
                       asyncio.create_task(self._sender_loop(), name="chat-sender")]

    async def stop(self) -> None:
        """Stop cleanly: no new sends, in-flight sends finish (or are abandoned after the grace period, their
        parts left for the next start), claimed-but-unsent parts released, then the services stop."""
        self._stop.set()
        self._wake_scheduler.set()
        self._wake_sender.set()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        await self._stop_services()

    async def _stop_services(self) -> None:
        """Stop the started services, last started first; one failing to stop does not keep the others up."""
        while self._started:
            svc = self._started.pop()
            try:
                await svc.stop()
            except Exception:
                log.exception("stopping %r failed", svc)

    def digest_now(self, ref: ChatRef) -> bool:
        """Make a chat's digest due now and wake the scheduler (the console shows news as soon as it arrives)."""
        if not self.chats.request_digest(ref, self.clock.now()):
            return False
        self._wake_scheduler.set()
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """start(), wait for `stop`, stop()."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # scheduler ----------------------------------------------------------------------------------------------

    async def _scheduler_loop(self) -> None:
        while not self._stop.is_set():
            wait_s = self.config.scheduler_tick_s
            try:
                n = await asyncio.to_thread(self.schedule_due, self.clock.now())
                n += await asyncio.to_thread(self.schedule_alerts, self.clock.now())
                self._scheduler_db.succeeded()
                if n:
                    self._wake_sender.set()
            except Exception as exc:
                delay = self._scheduler_db.failed(exc)
                if delay is None:
                    log.exception("scheduler step failed")
                else:
                    wait_s = delay
            await self._wait(wait_s, self._wake_scheduler)

    def schedule_due(self, now: datetime) -> int:
        """Enqueue every due digest (one transaction each); returns how many were handled."""
        done = 0
        # Many chats share a window (same schedule, same last digest): load its stories once per pass.
        cache: dict[datetime, list[StoryCandidate]] = {}
        while True:
            due = self.chats.due_subscriptions(now, platforms=list(self.sinks))
            before = done
            for sub in due:
                try:
                    if self.enqueue_digest(sub, now, cache):
                        done += 1
                except Exception as exc:
                    if is_database_down(exc):
                        raise  # every other chat would fail the same way: the loop backs off instead
                    log.exception("digest for %s failed", sub.chat.key)
            if len(due) < 500 or done == before or self._stop.is_set():
                return done

    def enqueue_digest(self, sub: Subscription, now: datetime,
                       cache: dict[datetime, list[StoryCandidate]] | None = None) -> bool:
        """Build, render and queue one subscription's due digest, and advance its schedule."""
        assert sub.next_due_at is not None
        digest = self.digests.scheduled(sub, now, cache)
        messages = self.sinks[sub.chat.platform].renderer.render_digest(digest)
        ok = self.chats.enqueue_digest(
            sub, due_at=sub.next_due_at, next_due_at=next_due(sub.schedule, max(now, sub.next_due_at)),
            digest_key=digest_key(sub.id, sub.next_due_at), payloads=[m.to_payload() for m in messages],
            story_versions=digest.story_versions if messages else {}, now=now,
            # Which stories each part carries, when the renderer says (a follow-up replies to that part).
            part_stories=[m.story_ids for m in messages] if any(m.story_ids for m in messages) else None,
            coverage=digest.story_coverage)
        if ok and messages:
            self.stats["digests"] += 1
            metrics.current().digests.labels(sub.chat.platform).inc()
            log.info("digest for %s: %d stories in %d parts", sub.chat.key, len(digest.stories), len(messages),
                     extra={"chat": sub.chat.key})
        return ok

    def schedule_alerts(self, now: datetime) -> int:
        """Queue the owner alerts due now (grouped, rate-limited: bot/pipeline/alerts.py); returns how many."""
        if self.alerts is None or not self.owners:
            return 0
        owner_chats = self.alerts.owner_chats(self.owners)
        reachable = []
        for owner in self.owners:
            if owner in owner_chats and owner.partition(":")[0] in self.sinks:
                reachable.append(owner)
            elif owner not in self._unreachable_owners:
                self._unreachable_owners.add(owner)
                log.warning("owner %s has no private chat with the bot here: no alerts for them (send /alerts "
                            "to the bot in a private chat)", owner)
        if not reachable:
            return 0
        states = self.alerts.alert_owner_states(reachable)
        since = min((s.last_summary_at or now) for s in states.values()) - alert_stage.SUMMARY_INTERVAL
        events = self.alerts.alert_events(min(s.cursor for s in states.values()), since)
        messages, changed = alert_stage.plan_alerts(events, list(states.values()), now)
        queued = 0
        for after in changed:
            owner = after.owner
            renderer = self.sinks[owner.partition(":")[0]].renderer
            mine = [(owner_chats[owner], m.key,
                     [o.to_payload() for o in renderer.render_reply(
                         Reply(blocks=(para(bold(m.heading)), *(para(line) for line in m.lines))))])
                    for m in messages if m.owner == owner]
            if self.alerts.save_alerts(states[owner], after, mine, now):
                queued += len(mine)
                if mine:
                    log.info("owner alert for %s: %d message(s)", owner, len(mine))
        return queued

    def _record_alert(self, kind: str, subject: str, detail: str) -> None:
        """Record an owner alert event (in a thread); a failure is logged, never raised."""
        if self.alerts is None:
            return
        try:
            self.alerts.record_alert(kind, subject, detail, self.clock.now())
        except Exception as exc:
            log.warning("could not record the %s alert for %s (%s)", kind, subject, describe(exc))

    async def _api_result(self, platform: str, ok: bool, reason: str = "") -> None:
        """Track a platform's sends failing in a row; record an alert when they fail for minutes, or recover."""
        health = self._api_health.get(platform, alert_stage.ApiHealth())
        new, kind = alert_stage.on_send_result(health, ok, self.clock.now())
        self._api_health[platform] = new
        if kind is not None:
            detail = reason if kind == alert_stage.API_FAILING else ""
            await asyncio.to_thread(self._record_alert, kind, platform, detail)

    # sender -------------------------------------------------------------------------------------------------

    async def _wait(self, seconds: float, wake: asyncio.Event) -> bool:
        """Sleep up to `seconds` of clock time, waking early on stop or when `wake` is set; True when woken.

        A wake-up given while the loop was busy is consumed here, not cleared away before sleeping.
        """
        if self._stop.is_set():
            return False
        if wake.is_set():
            wake.clear()
            return True
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        woken = wake.is_set()
        wake.clear()
        return woken

    def _push(self, item: OutboxItem) -> None:
        pacer = self.pacers[item.chat.platform]
        self._seq += 1
        heapq.heappush(self._heap, (pacer.chat_ready_at(item.chat.key, self.clock.monotonic()), self._seq,
                                    item.chat_db_id))

    async def _claim(self) -> None:
        exclude = list(self._buffer) + list(self._in_flight)
        limit = self.config.claim_batch - len(self._buffer)
        if limit <= 0:
            return
        items = await asyncio.to_thread(self.chats.claim_outbox, self.clock.now(), lease_s=self.config.lease_s,
                                        limit=limit, platforms=list(self.sinks), exclude_chats=exclude)
        for item in items:
            self._buffer[item.chat_db_id] = item
            self._push(item)

    async def _sender_loop(self) -> None:
        sem = asyncio.Semaphore(self.config.max_in_flight)
        last_claim = float("-inf")
        try:
            db = self._sender_db
            while not self._stop.is_set():
                mono = self.clock.monotonic()
                since_claim = mono - last_claim
                if (db.remaining() <= 0 if db.down else
                        since_claim >= self.config.claim_interval_s or (not self._heap and since_claim >= 0.05)):
                    try:
                        await self._claim()
                        db.succeeded()
                    except Exception as exc:
                        if db.failed(exc) is None:
                            log.exception("claiming outbox parts failed")
                    last_claim = self.clock.monotonic()
                if db.down:
                    # No send starts while the database is down: its confirmation could not be stored, so the
                    # part would go out again after its lease. Sends finishing wake this; it waits on.
                    await self._wait(max(db.remaining(), 0.01), self._wake_sender)
                    continue
                if not self._heap:
                    if await self._wait(self.config.claim_interval_s, self._wake_sender):
                        # New work was signalled: claim on the next turn, at most every 50 ms.
                        rest = last_claim + 0.05 - self.clock.monotonic()
                        if rest > 0:
                            await self.clock.sleep(rest)
                        last_claim = float("-inf")
                    continue
                _, _, chat_db_id = self._heap[0]
                item = self._buffer[chat_db_id]
                pacer = self.pacers[item.chat.platform]
                mono = self.clock.monotonic()
                chat_at = pacer.chat_ready_at(item.chat.key, mono)
                if chat_at > mono and chat_at > self._heap[0][0] + 1e-9:
                    # Blocked since it was queued (a 429): re-queue it at its new time.
                    heapq.heappop(self._heap)
                    self._seq += 1
                    heapq.heappush(self._heap, (chat_at, self._seq, chat_db_id))
                    continue
                at = max(chat_at, pacer.global_ready_at(mono))
                if at > mono:
                    await self._wait(min(at - mono, self.config.claim_interval_s), self._wake_sender)
                    continue
                await sem.acquire()
                if self._stop.is_set():
                    sem.release()
                    break
                heapq.heappop(self._heap)
                del self._buffer[chat_db_id]
                self._in_flight.add(chat_db_id)
                pacer.record(item.chat.key, item.chat.is_group, self.clock.monotonic())
                task = asyncio.create_task(self._send(item, sem))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
                if len(pacer) > 50_000:
                    pacer.prune(mono)
        finally:
            await self._shutdown_sender()

    async def _shutdown_sender(self) -> None:
        if self._sending:
            done, pending = await asyncio.wait(set(self._sending), timeout=self.config.shutdown_grace_s)
            for t in pending:
                t.cancel()
            if pending:
                log.warning("abandoned %d in-flight sends; their parts are retried after the lease", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        unsent = [i.id for i in self._buffer.values()]
        self._buffer.clear()
        self._heap.clear()
        if unsent:
            try:
                await asyncio.to_thread(self.chats.release, unsent)
            except Exception as exc:
                if not is_database_down(exc):
                    raise
                log.warning("could not release %d claimed parts (%s); they go after their lease", len(unsent),
                            describe(exc))

    async def _send(self, item: OutboxItem, sem: asyncio.Semaphore) -> None:
        sink = self.sinks[item.chat.platform]
        try:
            try:
                with metrics.timed(metrics.current().send_seconds.labels(item.chat.platform)):
                    ref = await sink.send(item.chat, OutgoingMessage.from_payload(item.payload))
            except DeliveryError as exc:
                await self._failed(item, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("sink %s raised an unexpected error", sink.platform)
                await self._failed(item, DeliveryError(f"{type(exc).__name__}: {exc}"))
            else:
                self.stats["sent"] += 1
                if self._api_health.get(item.chat.platform, alert_stage.ApiHealth()).failing_since is not None:
                    await self._api_result(item.chat.platform, True)
                metrics.current().outbox.labels(item.chat.platform, "sent").inc()
                await asyncio.to_thread(self.chats.mark_sent, item.id, ref, self.clock.now())
        except Exception as exc:
            # The database is down (confirming the send or recording the failure): the part stays claimed and
            # goes again after its lease (a sent one is the documented in-flight duplicate); the task must
            # not end with an error nobody logs. The sender holds further sends until a claim succeeds.
            if self._sender_db.failed(exc) is None:
                log.exception("outbox bookkeeping for %s failed; the part goes again after its lease",
                              item.chat.key)
            else:
                log.warning("outbox bookkeeping for %s failed (%s); the part goes again after its lease",
                            item.chat.key, describe(exc))
        finally:
            self._in_flight.discard(item.chat_db_id)
            sem.release()
            self._wake_sender.set()

    async def _failed(self, item: OutboxItem, exc: DeliveryError) -> None:
        action = on_failure(exc, item.attempts + 1, self.sinks[item.chat.platform].limits, item.id)
        now, mono = self.clock.now(), self.clock.monotonic()
        m, ids = metrics.current(), {"chat": item.chat.key, "outbox_id": item.id}
        pacer = self.pacers[item.chat.platform]
        if action.block_chat_s:
            pacer.block_chat(item.chat.key, mono + action.block_chat_s)
        if action.block_all_s:
            pacer.block_all(mono + action.block_all_s)
        if action.action == "retry":
            self.stats["retried"] += 1
            m.outbox.labels(item.chat.platform, "retried").inc()
            log.info("send to %s failed (%s); retry in %.1f s", item.chat.key, action.reason, action.delay_s,
                     extra=ids)
            await asyncio.to_thread(self.chats.retry_later, item.id, now + timedelta(seconds=action.delay_s),
                                    action.reason, count_attempt=action.counts)
            if not isinstance(exc, RateLimitedError):
                await self._api_result(item.chat.platform, False, action.reason)
        elif action.action == "pause":
            self.stats["paused"] += 1
            m.chats_paused.labels(item.chat.platform).inc()
            log.warning("chat %s blocked the bot (%s); its subscription is paused", item.chat.key, action.reason,
                        extra=ids)
            await asyncio.to_thread(self.chats.pause, item.chat_db_id, f"blocked: {action.reason}", now)
            if not item.digest_key.startswith("alerts"):  # an owner who blocked the bot is not told so
                where = item.chat.key + (f" ({item.chat.title})" if item.chat.title else "")
                await asyncio.to_thread(self._record_alert, alert_stage.CHAT_PAUSED, where, action.reason)
        elif action.action == "migrate":
            self.stats["migrated"] += 1
            m.outbox.labels(item.chat.platform, "migrated").inc()
            assert action.migrate_to is not None
            log.info("chat %s moved to %s", item.chat.key, action.migrate_to, extra=ids)
            await asyncio.to_thread(self.chats.migrate_chat, item.chat.platform, item.chat.chat_id, action.migrate_to)
            await asyncio.to_thread(self.chats.retry_later, item.id, now, None, count_attempt=False)
        else:
            self.stats["failed"] += 1
            m.outbox.labels(item.chat.platform, "failed").inc()
            log.warning("giving up on a part for %s: %s", item.chat.key, action.reason, extra=ids)
            await asyncio.to_thread(self.chats.mark_failed, item.id, action.reason, now)

    # tests and tools ----------------------------------------------------------------------------------------

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until nothing is pending, buffered or in flight (for tests, the bench and one-shot tools)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counts = await asyncio.to_thread(self.chats.outbox_counts)
            if not counts.get("pending") and not self._buffer and not self._in_flight:
                return
            self._wake_sender.set()
            await asyncio.sleep(0.02)
        raise TimeoutError(f"outbox not drained after {timeout_s} s: {counts}")


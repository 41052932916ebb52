"""Owner alerts, decided purely: recorded events and each owner's state in, messages and new states out.

Events (a feed paused, failing, recovered; a chat's delivery paused; a chat API unreachable or back) are stored
by the places they happen; the chat scheduler calls `plan_alerts` each tick and queues what it returns. Each owner
gets at most one grouped message per `min_interval` and one daily summary; a muted owner gets neither.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

FEED_PAUSED, FEED_FAILING, FEED_RECOVERED = "feed_paused", "feed_failing", "feed_recovered"
CHAT_PAUSED, API_FAILING, API_RECOVERED = "chat_paused", "api_failing", "api_recovered"
KINDS = (FEED_PAUSED, FEED_FAILING, FEED_RECOVERED, CHAT_PAUSED, API_FAILING, API_RECOVERED)

FAILING_AFTER = 3  # consecutive failures of a feed that make an alert
API_FAILING_AFTER = timedelta(minutes=5)  # sends failing this long (5xx, timeouts) make an alert
MIN_INTERVAL = timedelta(minutes=10)
SUMMARY_INTERVAL = timedelta(days=1)
MAX_LINES = 15

_LABELS = {FEED_PAUSED: "Feed paused", FEED_FAILING: "Feed failing", FEED_RECOVERED: "Feed recovered",
           CHAT_PAUSED: "Chat delivery paused", API_FAILING: "Chat API unreachable",
           API_RECOVERED: "Chat API reachable again"}


@dataclass(frozen=True)
class AlertEvent:
    """One recorded event: `subject` names the feed, chat or platform, `detail` says why."""

    id: int
    kind: str
    subject: str
    detail: str
    created_at: datetime


@dataclass(frozen=True)
class OwnerState:
    """What one owner was sent: events up to `cursor`, the last grouped message and summary, a mute."""

    owner: str
    cursor: int = 0
    last_sent_at: datetime | None = None
    last_summary_at: datetime | None = None
    muted_until: datetime | None = None

    def muted(self, now: datetime) -> bool:
        """Whether alerts to this owner are muted at `now`."""
        return self.muted_until is not None and self.muted_until > now


@dataclass(frozen=True)
class AlertMessage:
    """A message for one owner: a heading and its lines (plain text; the renderer escapes it)."""

    owner: str
    heading: str
    lines: tuple[str, ...]
    key: str  # unique per message, so that queuing it twice sends it once


def describe(event: AlertEvent) -> str:
    """One line for an event, e.g. 'Feed paused: https://x/feed (404 Not Found)'."""
    label = _LABELS.get(event.kind, event.kind)
    return f"{label}: {event.subject}" + (f" ({event.detail})" if event.detail else "")


def _grouped(events: Sequence[AlertEvent]) -> tuple[str, ...]:
    # The same kind for the same subject several times is one line with a count (a feed failing again).
    counts = Counter((e.kind, e.subject) for e in events)
    last = {(e.kind, e.subject): e for e in events}
    lines = [describe(e) + (f" ×{counts[k]}" if counts[k] > 1 else "") for k, e in last.items()]
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"… and {len(lines) - MAX_LINES} more"]
    return tuple(lines)


def plan_alerts(events: Iterable[AlertEvent], states: Sequence[OwnerState], now: datetime, *,
                min_interval: timedelta = MIN_INTERVAL, summary_interval: timedelta = SUMMARY_INTERVAL
                ) -> tuple[list[AlertMessage], list[OwnerState]]:
    """The messages due now and every owner's new state (only changed states are returned).

    An owner's pending events (id above its cursor) go out as one message when its last one is at least
    `min_interval` old; while muted they are passed over. The daily summary counts the events since the last one.
    """
    ordered = sorted(events, key=lambda e: e.id)
    messages: list[AlertMessage] = []
    changed: list[OwnerState] = []
    for state in states:
        new = state
        if new.last_summary_at is None:
            new = replace(new, last_summary_at=now)  # the first summary a day after alerts start
        pending = [e for e in ordered if e.id > new.cursor]
        if pending and new.muted(now):
            new = replace(new, cursor=pending[-1].id)
        elif pending and (new.last_sent_at is None or now - new.last_sent_at >= min_interval):
            messages.append(AlertMessage(new.owner, "newsdigest alerts", _grouped(pending),
                                         key=f"alerts:{new.owner}:{pending[-1].id}"))
            new = replace(new, cursor=pending[-1].id, last_sent_at=now)
        assert new.last_summary_at is not None
        if now - new.last_summary_at >= summary_interval:
            since = new.last_summary_at
            if not new.muted(now):
                day = Counter(e.kind for e in ordered if since < e.created_at <= now)
                lines = tuple(f"{_LABELS[k]}: {day[k]}" for k in KINDS if day[k]) or ("No alerts.",)
                messages.append(AlertMessage(new.owner, "newsdigest daily alert summary", lines,
                                             key=f"alerts-daily:{new.owner}:{now:%Y%m%dT%H%M}"))
            new = replace(new, last_summary_at=now)
        if new != state:
            changed.append(new)
    return messages, changed


@dataclass(frozen=True)
class ApiHealth:
    """A platform's send failures in a row: since when, and whether that was alerted."""

    failing_since: datetime | None = None
    alerted: bool = False


def on_send_result(health: ApiHealth, ok: bool, now: datetime, *, after: timedelta = API_FAILING_AFTER
                   ) -> tuple[ApiHealth, str | None]:
    """The platform's new health after a send (`ok`) or a transient failure, and the event kind to record."""
    if ok:
        return ApiHealth(), (API_RECOVERED if health.alerted else None)
    since = health.failing_since or now
    if not health.alerted and now - since >= after:
        return ApiHealth(since, True), API_FAILING
    return ApiHealth(since, health.alerted), None

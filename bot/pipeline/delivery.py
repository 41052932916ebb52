"""Delivery stage (pure): pacing within a platform's rate limits, and what to do after a failed send.

Times are plain floats from the caller's monotonic clock, so the same code runs on a real clock, a test clock
or the bench's time-scaled clock.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass

from bot.errors import ChatForbiddenError, DeliveryError, RateLimitedError


@dataclass(frozen=True)
class Limits:
    """A platform's send limits and the retry policy."""

    global_per_s: float = 30.0
    chat_interval_s: float = 1.0
    group_per_window: int = 20
    group_window_s: float = 60.0
    max_attempts: int = 10
    backoff_base_s: float = 2.0
    backoff_max_s: float = 900.0


# https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this
TELEGRAM_LIMITS = Limits()


class SlidingWindow:
    """At most `limit` events in any window of `window_s` seconds (exact: keeps the last `limit` times)."""

    __slots__ = ("limit", "window_s", "_times")

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._times: deque[float] = deque(maxlen=limit)

    def ready_at(self, now: float) -> float:
        """Earliest time >= now at which one more event keeps the limit."""
        if len(self._times) < self.limit:
            return now
        # A microsecond of margin so float rounding never puts limit + 1 events inside one window.
        return max(now, self._times[0] + self.window_s + 1e-6)

    def record(self, at: float) -> None:
        """Count an event at `at`."""
        self._times.append(at)

    def idle_since(self, now: float) -> bool:
        """True when no event lies within the window (the state can be dropped)."""
        return not self._times or self._times[-1] + self.window_s <= now


@dataclass
class _ChatState:
    last: float
    blocked_until: float = 0.0
    window: SlidingWindow | None = None


class Pacer:
    """Decides when the next message may go: overall rate, per-chat interval, per-group window, 429 blocks."""

    def __init__(self, limits: Limits = TELEGRAM_LIMITS) -> None:
        self.limits = limits
        self._spacing = 1.0 / limits.global_per_s
        self._global = SlidingWindow(max(1, int(limits.global_per_s)), 1.0)
        self._next_global = float("-inf")
        self._blocked_all_until = float("-inf")
        self._chats: dict[str, _ChatState] = {}

    def chat_ready_at(self, chat_key: str, now: float) -> float:
        """Earliest time the chat may get its next message, ignoring the global limit."""
        st = self._chats.get(chat_key)
        if st is None:
            return now
        t = max(now, st.last + self.limits.chat_interval_s, st.blocked_until)
        if st.window is not None:
            t = max(t, st.window.ready_at(now))
        return t

    def global_ready_at(self, now: float) -> float:
        """Earliest time any message may go."""
        return max(now, self._next_global, self._blocked_all_until, self._global.ready_at(now))

    def ready_at(self, chat_key: str, now: float) -> float:
        """Earliest time this chat's next message may go."""
        return max(self.chat_ready_at(chat_key, now), self.global_ready_at(now))

    def record(self, chat_key: str, is_group: bool, at: float) -> None:
        """Count a send started at `at`."""
        self._global.record(at)
        self._next_global = at + self._spacing
        st = self._chats.get(chat_key)
        if st is None:
            st = self._chats[chat_key] = _ChatState(last=at)
        st.last = at
        if is_group:
            if st.window is None:
                st.window = SlidingWindow(self.limits.group_per_window, self.limits.group_window_s)
            st.window.record(at)

    def block_chat(self, chat_key: str, until: float) -> None:
        """No message to this chat before `until` (after a 429)."""
        st = self._chats.setdefault(chat_key, _ChatState(last=float("-inf")))
        st.blocked_until = max(st.blocked_until, until)

    def block_all(self, until: float) -> None:
        """No message at all before `until` (flood control for the whole bot)."""
        self._blocked_all_until = max(self._blocked_all_until, until)

    def prune(self, now: float) -> int:
        """Drop state of chats that no longer constrain anything; returns how many were dropped."""
        horizon = max(self.limits.chat_interval_s, self.limits.group_window_s)
        stale = [k for k, st in self._chats.items()
                 if st.last + horizon <= now and st.blocked_until <= now
                 and (st.window is None or st.window.idle_since(now))]
        for k in stale:
            del self._chats[k]
        return len(stale)

    def __len__(self) -> int:
        return len(self._chats)


@dataclass(frozen=True)
class FailureAction:
    """What the sender does after a failed send.

    action: "retry" (after `delay_s`), "pause" (chat blocked us: pause its subscription), "migrate" (the chat has
    a new id: `migrate_to`, send again at once), "fail" (give up on this part).
    `block_chat_s` and `block_all_s` tell the pacer to hold back that chat / every send. `counts`: whether the
    try counts towards `max_attempts` (a rate-limit refusal says when to come back; it is no failure of the part).
    """

    action: str
    delay_s: float = 0.0
    reason: str = ""
    migrate_to: str | None = None
    block_chat_s: float = 0.0
    block_all_s: float = 0.0
    counts: bool = True


def backoff(attempts: int, limits: Limits, item_id: int) -> float:
    """Exponential backoff with a deterministic jitter (same item, same delay) of up to +25%."""
    base = min(limits.backoff_max_s, limits.backoff_base_s * (2.0 ** max(0, attempts - 1)))
    jitter = (zlib.crc32(f"{item_id}:{attempts}".encode()) % 1000) / 4000
    return min(limits.backoff_max_s, base * (1 + jitter))


def on_failure(error: DeliveryError, attempts: int, limits: Limits, item_id: int) -> FailureAction:
    """Decide after a failed send; `attempts` counts this one."""
    if isinstance(error, ChatForbiddenError):
        return FailureAction("pause", reason=error.reason)
    if error.migrate_to:
        return FailureAction("migrate", reason=error.reason, migrate_to=error.migrate_to)
    if isinstance(error, RateLimitedError) or error.retry_after:
        wait = max(0.0, float(error.retry_after or 0.0))
        # Telegram's flood control applies to the bot as a whole too; hold everything back for that long. A long
        # 429 storm must not use up the part's attempts: it is sent once the platform lets us.
        return FailureAction("retry", delay_s=wait, reason=error.reason, block_chat_s=wait, block_all_s=wait,
                             counts=False)
    if attempts >= limits.max_attempts:
        return FailureAction("fail", reason=f"gave up after {attempts} attempts: {error.reason}")
    if error.permanent:
        return FailureAction("fail", reason=error.reason)
    return FailureAction("retry", delay_s=backoff(attempts, limits, item_id), reason=error.reason)

"""Feed stage decisions: when to poll a feed next, and what a failure means (pure functions).

Shaped after miniflux: a failing feed is data, not a crash. It keeps an error count, its last error and a next
check time; one that keeps failing is paused with the reason, never dropped silently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.errors import BlockedURLError, FetchError, ParseError

MAX_DELAY_S = 24 * 3600.0
MIN_INTERVAL_S = 60.0


@dataclass(frozen=True)
class PollPolicy:
    """How polling reacts to success and failure."""

    pause_after_failures: int = 10
    max_delay_s: float = MAX_DELAY_S
    min_interval_s: float = MIN_INTERVAL_S


@dataclass(frozen=True)
class FailureDecision:
    """What to store after a failed poll."""

    error: str
    error_count: int
    next_check_at: datetime
    paused_reason: str | None


def next_check_after_success(now: datetime, interval_s: float, max_age_s: float | None,
                             policy: PollPolicy = PollPolicy()) -> datetime:
    """Next poll time after a 200/304: the feed's interval, stretched when Cache-Control asks for longer."""
    delay = max(float(interval_s), policy.min_interval_s)
    if max_age_s is not None and max_age_s > delay:
        delay = max_age_s
    return now + timedelta(seconds=min(delay, policy.max_delay_s))


def backoff_delay(error_count: int, interval_s: float, rng: random.Random | None = None,
                  policy: PollPolicy = PollPolicy()) -> float:
    """Exponential backoff with jitter: interval * 2^(n-1), capped, scaled by a random factor in [0.5, 1]."""
    rng = rng or random.Random()
    base = max(float(interval_s), policy.min_interval_s) * (2.0 ** max(0, error_count - 1))
    return min(base, policy.max_delay_s) * rng.uniform(0.5, 1.0)


def permanent_reason(exc: Exception) -> str | None:
    """A reason to pause at once, for failures that retrying cannot fix."""
    if isinstance(exc, BlockedURLError):
        return f"blocked URL: {exc.reason}"
    if isinstance(exc, FetchError) and exc.status == 410:
        return "feed is gone (HTTP 410)"
    return None


def after_failure(exc: Exception, *, previous_errors: int, interval_s: float, now: datetime,
                  rng: random.Random | None = None, policy: PollPolicy = PollPolicy()) -> FailureDecision:
    """Decide the next check and whether to pause, after a poll failed with `exc`."""
    count = previous_errors + 1
    message = describe_error(exc)
    delay = backoff_delay(count, interval_s, rng, policy)
    if isinstance(exc, FetchError) and exc.retry_after is not None:
        # The server told us when to come back; never earlier than that.
        delay = min(max(delay, exc.retry_after), policy.max_delay_s)
    paused = permanent_reason(exc)
    if paused is None and count >= policy.pause_after_failures:
        paused = f"paused after {count} consecutive failures; last: {message}"
    return FailureDecision(error=message, error_count=count, next_check_at=now + timedelta(seconds=delay),
                           paused_reason=paused)


def describe_error(exc: Exception) -> str:
    """A one-line, human-readable error for logs, the CLI and the feeds table."""
    if isinstance(exc, FetchError):
        return exc.reason
    if isinstance(exc, ParseError):
        return f"not a usable feed: {exc}"
    return f"{type(exc).__name__}: {exc}"

"""Pure polling decisions: schedule after success, backoff with jitter, pausing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from bot.errors import BlockedURLError, FetchError, ParseError
from bot.pipeline.feed import PollPolicy, after_failure, backoff_delay, next_check_after_success

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_success_uses_interval_or_longer_cache_max_age() -> None:
    assert next_check_after_success(NOW, 900, None) == NOW + timedelta(seconds=900)
    assert next_check_after_success(NOW, 900, 60) == NOW + timedelta(seconds=900)
    assert next_check_after_success(NOW, 900, 3600) == NOW + timedelta(seconds=3600)
    assert next_check_after_success(NOW, 900, 10 ** 9) == NOW + timedelta(days=1)


def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 600, rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        base = min(600 * 2 ** (n - 1), 86400)
        assert base * 0.5 <= d <= base
    assert len({round(backoff_delay(3, 600, random.Random(s))) for s in range(5)}) > 1, "jitter"


def test_retry_after_is_honoured() -> None:
    exc = FetchError("u", "HTTP 429", retry_after=7200, status=429)
    d = after_failure(exc, previous_errors=0, interval_s=300, now=NOW, rng=random.Random(0))
    assert d.next_check_at >= NOW + timedelta(seconds=7200) and d.paused_reason is None and d.error_count == 1


def test_pause_after_repeated_failures_keeps_reason() -> None:
    policy = PollPolicy(pause_after_failures=3)
    exc = ParseError("HTML page where a feed was expected")
    d2 = after_failure(exc, previous_errors=1, interval_s=300, now=NOW, policy=policy)
    d3 = after_failure(exc, previous_errors=2, interval_s=300, now=NOW, policy=policy)
    assert d2.paused_reason is None
    assert d3.paused_reason and "3 consecutive failures" in d3.paused_reason and "HTML page" in d3.paused_reason


def test_permanent_errors_pause_at_once() -> None:
    assert after_failure(BlockedURLError("u", "resolves to 10.0.0.1"), previous_errors=0, interval_s=60,
                         now=NOW).paused_reason.startswith("blocked URL")
    assert "410" in after_failure(FetchError("u", "HTTP 410", transient=False, status=410), previous_errors=0,
                                  interval_s=60, now=NOW).paused_reason

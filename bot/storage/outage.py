"""Riding out a database outage: which errors mean "the database is unreachable", and a retry pace for a loop
while it is (bounded, jittered exponential backoff; one traceback per outage, one line per retry, one line when
the database is back)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from bot.errors import StorageError


def is_database_down(exc: BaseException | None) -> bool:
    """True for errors that say the database cannot be reached or used right now (connection refused, reset or
    lost, "database is locked", pool exhausted), not for a bad statement or bad data: a StorageError with
    `unavailable` set (storage translates the driver's errors, bot.storage.db), here or among its causes."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, StorageError) and exc.unavailable:
            return True
        seen.add(id(exc))
        exc = exc.__cause__
    return False


def describe(exc: BaseException) -> str:
    """The error in one short line (the driver's message, without SQLAlchemy's statement and link)."""
    inner = getattr(exc, "orig", None) or exc
    text = " ".join(str(inner).split()) or type(inner).__name__
    return text[:200]


class Backoff:
    """The retry pace of one loop while the database is down.

    Waits grow base_s, 2·base_s, 4·base_s ... up to max_s, each shortened by up to a quarter at random (so that
    loops and processes that failed together do not retry in step) but never below base_s. Failures reported
    while a wait is still running (other tasks of the same loop failing on the same outage) do not lengthen it.
    """

    def __init__(self, what: str, *, base_s: float, max_s: float, logger: logging.Logger,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.what = what
        self.base_s = base_s
        self.max_s = max(base_s, max_s)
        self.log = logger
        self.clock = clock
        self.rng = rng or random.Random()
        self.down_since: float | None = None
        self.attempts = 0  # failed attempts in the current outage
        self.next_at = float("-inf")
        self.outages = 0

    @property
    def down(self) -> bool:
        """Whether the last attempt found the database down."""
        return self.down_since is not None

    def remaining(self) -> float:
        """Seconds until the next attempt is due (0 when it is)."""
        return max(0.0, self.next_at - self.clock())

    def failed(self, exc: BaseException) -> float | None:
        """Record a failure: the wait before the next attempt when `exc` means the database is down, else None
        (the caller handles other errors as before)."""
        if not is_database_down(exc):
            return None
        now = self.clock()
        if self.down_since is not None and now < self.next_at:
            return self.next_at - now
        self.attempts += 1
        step = min(self.max_s, self.base_s * 2.0 ** min(self.attempts - 1, 32))
        delay = max(self.base_s, step * self.rng.uniform(0.75, 1.0))
        self.next_at = now + delay
        if self.down_since is None:
            self.down_since = now
            self.outages += 1
            self.log.warning("%s: the database is unavailable (%s); retrying in %.1f s, backing off up to %.0f s",
                             self.what, describe(exc), delay, self.max_s, exc_info=exc)
        else:
            self.log.warning("%s: the database is still unavailable after %.0f s and %d attempts (%s); next try "
                             "in %.1f s", self.what, now - self.down_since, self.attempts, describe(exc), delay)
        return delay

    def succeeded(self) -> None:
        """Record a success: ends the outage (logged with its length)."""
        if self.down_since is not None:
            self.log.warning("%s: the database is back after %.1f s and %d failed attempts", self.what,
                             self.clock() - self.down_since, self.attempts)
        self.down_since, self.attempts, self.next_at = None, 0, float("-inf")

"""A clock for chat-runtime tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.chat.runtime import SystemClock
from bot.clock import utcnow


class ShiftClock(SystemClock):
    """Real time, except that wall time can jump ahead (the schedule firing without waiting hours)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        """utcnow() plus the offset."""
        return utcnow() + self.offset

"""Log formats: the human one (the default) and JSON lines (NEWSDIGEST_LOG_FORMAT=json) for log collectors.

A JSON line holds time, level, logger and message, the ids a log call passes with `extra={"feed_id": ...}`
(feed, article, story, chat), and the traceback when there is one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
TEXT_DATEFMT = "%H:%M:%S"
# The ids a log call may carry in `extra`; each becomes a key of the JSON line.
ID_FIELDS = ("feed_id", "feed_url", "article_id", "story_id", "chat", "outbox_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with ms), level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(kind: str) -> logging.Formatter:
    """The formatter for NEWSDIGEST_LOG_FORMAT (`text` or `json`)."""
    if kind == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT, datefmt=TEXT_DATEFMT)


__all__ = ["ID_FIELDS", "JsonFormatter", "formatter"]

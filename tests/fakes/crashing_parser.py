"""A parse-pool initializer that makes a worker die (as on a crash in C code or an OOM kill) on marked feeds.

`install` runs in each spawned worker and wraps the real `bot.pipeline.entry.parse_to_articles` (the function
the pool runs): a feed body containing
CRASH_MARKER ends the worker process with `os._exit`, every other body is parsed as usual.
"""

from __future__ import annotations

import os

CRASH_MARKER = b"<!-- kill the parser -->"


def install() -> None:
    """Patch the worker's parse function so that marked bodies kill the process."""
    import bot.pipeline.entry as entry

    real = entry.parse_to_articles

    def parse(body: bytes, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if CRASH_MARKER in body:
            os._exit(70)
        return real(body, *args, **kwargs)

    entry.parse_to_articles = parse

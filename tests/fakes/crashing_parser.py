"""A parse-pool initializer that makes a worker die (as on a crash in C code or an OOM kill) on marked feeds and
pages.

`install` runs in each spawned worker and wraps the real functions the pool runs
(`bot.pipeline.entry.parse_to_articles`, `bot.pipeline.article.extract_article` and `read_page`): a feed or page
body containing CRASH_MARKER ends the worker process with `os._exit`, every other body is parsed as usual.
"""

from __future__ import annotations

import os

CRASH_MARKER = b"<!-- kill the parser -->"


def install() -> None:
    """Patch the worker's parse functions so that marked bodies kill the process."""
    import bot.pipeline.article as article
    import bot.pipeline.entry as entry

    def crashing(real):  # noqa: ANN001, ANN202
        def parse(body: bytes, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if CRASH_MARKER in body:
                os._exit(70)
            return real(body, *args, **kwargs)
        return parse

    entry.parse_to_articles = crashing(entry.parse_to_articles)
    article.extract_article = crashing(article.extract_article)
    article.read_page = crashing(article.read_page)

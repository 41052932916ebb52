"""A feed probe for chat tests whose feed URLs (example.com) are not reachable: it answers as a feed with a title
would. The real probe (fetch and parse) is tested against the local feed server in tests/test_commands.py."""

from __future__ import annotations

from urllib.parse import urlsplit

from bot.feedlist import FeedProbe


async def reachable_feed(url: str) -> FeedProbe:
    """Every URL is a feed titled after its host."""
    return FeedProbe(title=f"News from {urlsplit(url).hostname}", entries=3, final_url=url)

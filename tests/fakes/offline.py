"""A Fetcher for tests whose fixture feeds link to the real web: only loopback URLs are fetched."""

from __future__ import annotations

from typing import Any

from bot.errors import FetchError
from bot.models import FetchResult
from bot.net import Fetcher


class LoopbackFetcher(Fetcher):
    """A Fetcher that refuses any host but 127.0.0.1 at once: the fixture feeds link to article pages on the
    real web, which (offline) would each take a DNS timeout in every cycle's page fetching."""

    async def get(self, url: str, **kwargs: Any) -> FetchResult:
        """Fetcher.get for loopback URLs; a permanent FetchError for any other."""
        if not url.startswith("http://127.0.0.1:"):
            raise FetchError(url, "not fetched in this test (offline)", transient=False)
        return await super().get(url, **kwargs)

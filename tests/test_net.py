"""The fetcher over real sockets: SSRF guard, limits, conditional GET, errors."""

from __future__ import annotations

import pytest

from bot.errors import BlockedURLError, FetchError, TooLargeError
from bot.net import Fetcher, FetchLimits
from bot.urls import address_is_public, check_url


@pytest.mark.parametrize("ip,public", [
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("224.0.0.1", False), ("::1", False), ("fe80::1", False), ("fc00::1", False),
    ("::ffff:127.0.0.1", False), ("0.0.0.0", False), ("100.64.0.1", False), ("8.8.8.8", True),
    ("2606:4700::1111", True),
])
def test_address_classification(ip: str, public: bool) -> None:
    assert address_is_public(ip) is public


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/feed", "gopher://x", "http:///nohost",
                                 "javascript:alert(1)"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(BlockedURLError):
        check_url(url)


async def test_loopback_blocked_unless_allowed(feed_server) -> None:  # noqa: ANN001
    url = feed_server.url("/feeds/wsj_2020-04-27T2107Z.xml")
    async with Fetcher(FetchLimits(allow_private=False)) as f:
        with pytest.raises(BlockedURLError, match="non-public"):
            await f.get(url)
    assert sum(feed_server.hits.values()) == 0, "no request may reach a blocked address"
    async with Fetcher(FetchLimits(allow_private=True)) as f:
        res = await f.get(url)
    assert res.status == 200 and res.body.startswith(b"<?xml")


async def test_localhost_name_blocked(feed_server) -> None:  # noqa: ANN001
    port = feed_server.httpd.server_address[1]
    async with Fetcher(FetchLimits(allow_private=False)) as f:
        with pytest.raises(BlockedURLError):
            await f.get(f"http://localhost:{port}/feeds/wsj_2020-04-27T2107Z.xml")
    assert sum(feed_server.hits.values()) == 0


async def test_redirect_to_non_http_scheme_blocked(feed_server) -> None:  # noqa: ANN001
    async with Fetcher(FetchLimits(allow_private=True)) as f:
        with pytest.raises(BlockedURLError, match="http"):
            await f.get(feed_server.url("/redirect-to?to=file:///etc/passwd"))


async def test_conditional_get_gives_304(feed_server) -> None:  # noqa: ANN001
    url = feed_server.url("/feeds/wsj_2020-04-27T2107Z.xml")
    async with Fetcher(FetchLimits(allow_private=True)) as f:
        first = await f.get(url)
        again = await f.get(url, etag=first.etag, last_modified=first.last_modified)
    assert first.etag and first.last_modified
    assert again.not_modified and again.body == b""


async def test_size_cap_without_content_length(feed_server) -> None:  # noqa: ANN001
    async with Fetcher(FetchLimits(allow_private=True, max_bytes=100_000)) as f:
        with pytest.raises(TooLargeError):
            await f.get(feed_server.url("/huge"))


async def test_size_cap_counts_decompressed_bytes(feed_server) -> None:  # noqa: ANN001
    async with Fetcher(FetchLimits(allow_private=True, max_bytes=1_000_000)) as f:
        with pytest.raises(TooLargeError):
            await f.get(feed_server.url("/gzip-bomb"))


async def test_redirect_loop_stops_after_five(feed_server) -> None:  # noqa: ANN001
    async with Fetcher(FetchLimits(allow_private=True)) as f:
        with pytest.raises(FetchError, match="redirects"):
            await f.get(feed_server.url("/loop/0"))
    assert feed_server.hits["/loop/0"] == 1 and sum(v for k, v in feed_server.hits.items() if k.startswith("/loop")) == 6


async def test_total_timeout(feed_server) -> None:  # noqa: ANN001
    async with Fetcher(FetchLimits(allow_private=True, timeout_s=0.5)) as f:
        with pytest.raises(FetchError, match="timed out") as info:
            await f.get(feed_server.url("/slow?s=3"))
    assert info.value.transient


async def test_http_errors_and_retry_after(feed_server) -> None:  # noqa: ANN001
    async with Fetcher(FetchLimits(allow_private=True)) as f:
        with pytest.raises(FetchError) as e429:
            await f.get(feed_server.url("/status/429?retry_after=120"))
        with pytest.raises(FetchError) as e404:
            await f.get(feed_server.url("/status/404"))
        with pytest.raises(FetchError) as e500:
            await f.get(feed_server.url("/status/500"))
    assert e429.value.retry_after == 120 and e429.value.transient
    assert e404.value.status == 404 and not e404.value.transient
    assert e500.value.transient


async def test_a_burst_from_one_host_does_not_starve_another(feed_server) -> None:  # noqa: ANN001
    import asyncio
    import time

    # Six slow pages from 127.0.0.1 with 4 connections overall and 1 per host: a request to another host
    # (localhost, the same server) must start at once, not after the burst has drained.
    port = feed_server.httpd.server_address[1]
    async with Fetcher(FetchLimits(allow_private=True, max_connections=4, per_host=1, timeout_s=30)) as f:
        burst = [asyncio.create_task(f.get(feed_server.url("/slow?s=1.5"))) for _ in range(6)]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        other = await f.get(f"http://localhost:{port}/feeds/wsj_2020-04-27T2107Z.xml")
        took = time.monotonic() - started
        assert other.status == 200
        assert took < 1.0, f"the other host waited {took:.1f} s for the burst"
        assert sum(t.done() for t in burst) <= 1
        for t in burst:
            t.cancel()
        await asyncio.gather(*burst, return_exceptions=True)

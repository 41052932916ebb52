"""HTTP fetching with limits and SSRF protection (the I/O edge for feeds and article pages).

Every TCP connection goes through `GuardedBackend`, which resolves the host itself, refuses private, loopback,
link-local, multicast and reserved addresses (unless allowed) and then connects to the address it checked. So the
check applies to the address actually connected to, on redirects too, and DNS rebinding cannot slip past it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpcore
import httpx

from bot import __version__
from bot.errors import BlockedURLError, FetchError, TooLargeError
from bot.models import FetchResult
from bot.urls import address_is_public, check_url

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = f"newsdigest/{__version__} (+https://github.com/newsdigest/newsdigest; RSS reader)"
FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


@dataclass(frozen=True)
class FetchLimits:
    """Per-request limits."""

    timeout_s: float = 20.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    max_connections: int = 32
    per_host: int = 2
    allow_private: bool = False

    @classmethod
    def from_settings(cls, s: Settings) -> FetchLimits:
        """HTTP limits from the settings."""
        return cls(timeout_s=s.request_timeout_s, max_bytes=s.max_response_bytes, max_connections=s.max_connections,
                   per_host=s.per_host_connections, allow_private=s.allow_private_urls)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Network backend that resolves and vets every address before connecting to it."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        # An IPv4 or IPv6 sockaddr starts with the address as text (typeshed also allows the int of AF_PACKET).
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in addresses if self.allow_private or address_is_public(a)]
        if not allowed:
            raise _Blocked(f"{host} resolves to a non-public address ({', '.join(addresses)})")
        last: Exception | None = None
        for addr in allowed:
            try:
                return await self._inner.connect_tcp(addr, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise _Blocked("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Blocked(httpcore.ConnectError):
    """Raised inside httpcore so the request fails; translated to BlockedURLError."""


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose connection pool uses GuardedBackend."""

    def __init__(self, *, allow_private: bool, max_connections: int) -> None:
        super().__init__(trust_env=False)
        # httpx has no public hook for the network backend, so we swap in a pool built with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=max_connections,
            max_keepalive_connections=max_connections, keepalive_expiry=30.0,
            network_backend=GuardedBackend(allow_private))


def _parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _parse_max_age(cache_control: str | None) -> float | None:
    if not cache_control:
        return None
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    return None


class Fetcher:
    """Shared HTTP client with global and per-host concurrency limits; use as an async context manager."""

    def __init__(self, limits: FetchLimits | None = None, *, user_agent: str = USER_AGENT) -> None:
        self.limits = limits or FetchLimits()
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(allow_private=self.limits.allow_private,
                                       max_connections=self.limits.max_connections),
            follow_redirects=True, max_redirects=self.limits.max_redirects,
            headers={"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"},
            event_hooks={"request": [self._check_request]}, trust_env=False)
        self._global = asyncio.Semaphore(self.limits.max_connections)
        self._hosts: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(self.limits.per_host))

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()

    @staticmethod
    async def _check_request(request: httpx.Request) -> None:
        # Runs for the first request and for every redirect hop.
        check_url(str(request.url))

    async def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
                  timeout_s: float | None = None, accept: str = FEED_ACCEPT) -> FetchResult:
        """GET a URL within the limits; returns a FetchResult (304 included) or raises FetchError."""
        check_url(url)
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        host = (urlsplit(url).hostname or "").lower()
        total = timeout_s or self.limits.timeout_s
        # Per host first: a request queued behind its host's limit must not sit on one of the global slots.
        async with self._hosts[host], self._global:
            try:
                async with asyncio.timeout(total):
                    return await self._get(url, headers, total)
            except TimeoutError as exc:
                raise FetchError(url, f"timed out after {total:g} s") from exc
            except httpx.TooManyRedirects as exc:
                raise FetchError(url, f"more than {self.limits.max_redirects} redirects", transient=False) from exc
            except _Blocked as exc:
                raise BlockedURLError(url, str(exc)) from exc
            except httpx.HTTPError as exc:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, _Blocked):
                    raise BlockedURLError(url, str(cause)) from exc
                raise FetchError(url, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc

    async def _get(self, url: str, headers: dict[str, str], total: float) -> FetchResult:
        timeout = httpx.Timeout(total)
        async with self._client.stream("GET", url, headers=headers, timeout=timeout) as resp:
            now = time.time()
            retry_after = _parse_retry_after(resp.headers.get("Retry-After"), now)
            if resp.status_code == 304:
                return FetchResult(url=url, status=304, etag=resp.headers.get("ETag"),
                                   last_modified=resp.headers.get("Last-Modified"), final_url=str(resp.url),
                                   max_age_s=_parse_max_age(resp.headers.get("Cache-Control")))
            if resp.status_code >= 400:
                transient = resp.status_code in (408, 425, 429) or resp.status_code >= 500
                raise FetchError(url, f"HTTP {resp.status_code}", transient=transient,
                                 retry_after=retry_after, status=resp.status_code)
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.limits.max_bytes:
                raise TooLargeError(url, self.limits.max_bytes)
            chunks: list[bytes] = []
            size = 0
            # Inflated here in bounded steps and counted after decompression, so a gzip bomb is cut off at the
            # cap: httpx would inflate each network chunk whole (a 64 kB chunk of a two-layer bomb is gigabytes).
            inflater = _Inflater(url, resp.headers.get("Content-Encoding"))
            async for raw in resp.aiter_raw():
                for chunk in inflater.feed(raw, self.limits.max_bytes - size + 1):
                    size += len(chunk)
                    if size > self.limits.max_bytes:
                        raise TooLargeError(url, self.limits.max_bytes)
                    chunks.append(chunk)
            return FetchResult(
                url=url, status=resp.status_code, body=b"".join(chunks), etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"), content_type=resp.headers.get("Content-Type"),
                final_url=str(resp.url), max_age_s=_parse_max_age(resp.headers.get("Cache-Control")),
                retry_after_s=retry_after)


class _Inflater:
    """Content-Encoding decoding (gzip or deflate, one layer) that never yields more than asked per step."""

    _STEP = 256 * 1024

    def __init__(self, url: str, encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip().lower() not in ("", "identity")]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise FetchError(url, f"unsupported Content-Encoding {encoding!r}", transient=False)
        self.url = url
        self.coding = codings[0] if codings else None
        # gzip: header required; deflate: zlib-wrapped per the RFC, raw deflate (what some servers send) as fallback
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS if self.coding in ("gzip", "x-gzip") else zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes, budget: int) -> Iterator[bytes]:
        """Decoded pieces of `data`, in steps of at most 256 kB; stops once `budget` bytes came out."""
        if self.coding is None:
            yield data
            return
        out = 0
        while data and out < budget and not self._z.eof:
            try:
                piece = self._z.decompress(data, min(self._STEP, budget - out))
            except zlib.error as exc:
                if self.coding == "deflate" and not self._started:
                    self._z, self._started = zlib.decompressobj(-zlib.MAX_WBITS), True
                    continue
                raise FetchError(self.url, f"corrupt {self.coding} body: {exc}", transient=False) from exc
            self._started = True
            data = self._z.unconsumed_tail
            out += len(piece)
            if piece:
                yield piece

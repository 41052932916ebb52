"""A TCP proxy the test controls, between the service and a server (PostgreSQL in the fault campaign).

It runs its own event loop in a thread, so it keeps forwarding while the caller's loop or thread is blocked in a
synchronous database call. `cut()` drops every open connection with a TCP reset and then either resets each new
one as soon as it is accepted ("reset": the client's connect succeeds, its first read fails) or stops listening
("refuse": connection refused); `restore()` forwards again on the same port.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from typing import Any


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0) rather than a FIN: the peer sees 'connection reset', as when a
    network path or a server dies."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; counts connections, and those it reset or refused while cut."""

    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self.mode: str | None = None  # None (forwarding), "reset" or "refuse"
        self.accepted = 0  # connections forwarded
        self.reset_on_accept = 0  # connections accepted and reset while cut ("reset" mode)
        self.dropped = 0  # open connections reset by cut()
        self.cut_at: float | None = None
        self.restored_at: float | None = None
        self.first_forward_after_restore: float | None = None  # monotonic time of the first forwarded connection
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)

    # control (from any thread) --------------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        """Start listening (on a free port the first time)."""
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """Close everything and end the proxy's thread."""
        self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self, mode: str = "reset") -> None:
        """Drop every open connection (RST) and reset ("reset") or refuse ("refuse") new ones until restore()."""
        if mode not in ("reset", "refuse"):
            raise ValueError(mode)
        self._call(self._cut(mode))

    def restore(self) -> None:
        """Forward again, on the same port."""
        self._call(self._restore())

    @property
    def is_cut(self) -> bool:
        """Whether the proxy is cut now."""
        return self.mode is not None

    @property
    def url_netloc(self) -> tuple[str, int]:
        """The (host, port) clients connect to."""
        return self.host, self.port

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # the proxy's loop ---------------------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self, mode: str) -> None:
        self.mode = mode
        self.cut_at, self.restored_at, self.first_forward_after_restore = time.monotonic(), None, None
        if mode == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
        for client, server in list(self._conns):
            self.dropped += 1
            _reset(client)
            _reset(server)
        self._conns.clear()

    async def _restore(self) -> None:
        if self._server is None:
            await self._listen()
        self.mode = None
        self.restored_at = time.monotonic()

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for client, server in list(self._conns):
            client.transport.abort()
            server.transport.abort()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode is not None:
            self.reset_on_accept += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        if self.mode is not None:  # cut while connecting upstream
            _reset(writer)
            _reset(up_writer)
            return
        self.accepted += 1
        if self.restored_at is not None and self.first_forward_after_restore is None:
            self.first_forward_after_restore = time.monotonic()
        pair = (writer, up_writer)
        self._conns.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._conns.discard(pair)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

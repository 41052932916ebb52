"""The observability endpoints: /metrics (Prometheus text), /healthz (the process is alive) and /readyz (what it
depends on answers: the database, a broker once there is one), served by a small aiohttp app on the running
event loop.

Scrapes and readiness checks touch the database, so they run in a thread: a slow database delays the answer,
never the service's loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from bot.metrics import DatabaseCollector, Metrics

log = logging.getLogger("newsdigest.observability")

# A check raises when its dependency is not reachable; it runs in a thread.
Check = Callable[[], object]


class ObservabilityServer:
    """/metrics, /healthz and /readyz on host:port; start() and stop() on the service's event loop."""

    def __init__(self, metrics: Metrics, *, host: str = "127.0.0.1", port: int = 0,
                 checks: Mapping[str, Check] | None = None, collector: DatabaseCollector | None = None,
                 check_timeout_s: float = 5.0) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.checks = dict(checks or {})
        self.collector = collector
        self.check_timeout_s = check_timeout_s
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The aiohttp application (three GET routes)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> None:
        """Listen; `port` 0 picks a free port, read back into `self.port`."""
        if self.collector is not None:
            self.metrics.registry.register(self.collector)
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            self._unregister()
            raise
        self._runner = runner
        if runner.addresses:  # the port picked for 0
            self.port = int(runner.addresses[0][1])
        log.info("metrics and health checks on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._unregister()

    def _unregister(self) -> None:
        if self.collector is not None:
            try:
                self.metrics.registry.unregister(self.collector)
            except KeyError:
                pass

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await asyncio.to_thread(encoder, self.metrics.registry)
        # aiohttp wants the charset apart from the content type.
        mime, _, params = content_type.partition(";")
        return web.Response(body=body, headers={"Content-Type": content_type} if params else None,
                            content_type=None if params else mime)

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        results: dict[str, str] = {}
        ready = True
        for name, check in self.checks.items():
            try:
                await asyncio.wait_for(asyncio.to_thread(check), timeout=self.check_timeout_s)
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure of a dependency means not ready
                ready = False
                detail = " ".join(str(exc).split())[:300] or type(exc).__name__
                results[name] = f"unavailable: {detail}"
        return web.json_response({"status": "ready" if ready else "not ready", "checks": results},
                                 status=200 if ready else 503)


__all__ = ["Check", "ObservabilityServer"]

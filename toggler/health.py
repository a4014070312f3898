"""The health server (aiohttp): `/healthz`, `/readyz`, `/metrics`.

`/healthz` answers while the event loop runs. `/readyz` asks a `Readiness` seam (logged in, a recent
successful sync, watches running) and lists what is missing. `/metrics` renders `toggler.metrics.Metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from toggler.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One readiness condition."""

    name: str
    ok: bool
    detail: str = ""


class HealthServer:
    """Serves the three endpoints on `host:port` until `stop()`."""

    def __init__(self, *, host: str, port: int, metrics: Metrics, readiness: Callable[[], list[Check]]) -> None:
        self.host = host
        self.port = port
        self._metrics = metrics
        self._readiness = readiness
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_view)
        return app

    async def start(self) -> None:
        """Bind and serve; with port 0, `self.port` becomes the bound port."""
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        log.info("health server on http://%s:%d (/healthz /readyz /metrics)", self.host, self.port)

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        checks = self._readiness()
        lines = [f"{'ok' if c.ok else 'FAIL'} {c.name}{': ' + c.detail if c.detail else ''}" for c in checks]
        status = 200 if all(c.ok for c in checks) else 503
        return web.Response(text="\n".join(lines) + "\n", status=status)

    async def _metrics_view(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), content_type="text/plain", charset="utf-8")

"""The health server over real HTTP on 127.0.0.1: liveness, readiness from checks, Prometheus metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from toggler.commands import UsageError
from toggler.health import Check, HealthServer
from toggler.metrics import Metrics
from toggler.outcomes import Refused, Stopped, Usage
from toggler.ports import State, TargetRef, TargetStatus


@pytest.fixture
async def served() -> AsyncIterator[tuple[HealthServer, Metrics, list[Check]]]:
    metrics = Metrics()
    checks = [Check("logged in", True), Check("sync", True)]
    server = HealthServer(host="127.0.0.1", port=0, metrics=metrics, readiness=lambda: list(checks))
    await server.start()
    try:
        yield server, metrics, checks
    finally:
        await server.stop()


async def _get(server: HealthServer, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}{path}") as resp:
        return resp.status, await resp.text()


async def test_healthz_and_readyz(served: tuple[HealthServer, Metrics, list[Check]]) -> None:
    server, _, checks = served
    assert server.port > 0
    assert await _get(server, "/healthz") == (200, "ok\n")
    status, text = await _get(server, "/readyz")
    assert status == 200 and "ok sync" in text
    checks[1] = Check("sync", False, "last sync 90 s ago")
    status, text = await _get(server, "/readyz")
    assert status == 503
    assert "FAIL sync: last sync 90 s ago" in text


async def test_metrics_move(served: tuple[HealthServer, Metrics, list[Check]]) -> None:
    server, metrics, _ = served
    ref = TargetRef("web", "Deployment", "apps", "web")
    metrics.command("start", "web", Stopped("web", 1))
    metrics.command("start", "web", Refused())
    metrics.command("frob", None, Usage(UsageError("no")))
    metrics.target(TargetStatus(ref, State.ON, desired=2, stop_at=datetime(2026, 12, 3, 18, 40, tzinfo=UTC)))
    metrics.notified(Stopped("web", 2, reason="deadline"))
    metrics.notified(Stopped("web", 0, already_off=True, reason="deadline"))
    metrics.synced(1_700_000_000.0)
    status, text = await _get(server, "/metrics")
    assert status == 200
    assert 'toggler_commands_total{action="start",outcome="ok",target="web"} 1.0' in text
    assert 'toggler_commands_total{action="start",outcome="refused",target="web"} 1.0' in text
    assert 'toggler_commands_total{action="frob",outcome="usage",target=""} 1.0' in text
    assert 'toggler_target_replicas{target="web"} 2.0' in text
    assert 'toggler_target_stop_deadline_seconds{target="web"} 1.7963232e+09' in text
    assert 'toggler_auto_stops_total{reason="deadline",target="web"} 1.0' in text
    assert "toggler_last_sync_timestamp_seconds 1.7e+09" in text

"""Composition root: build every part from a `Config`, run them, shut them down cleanly.

Wiring: `KubeCluster` (watch cache) → `Service` ← `SchedulerTimers`; `MatrixBot` is the service's
notifier and the only caller of `Service.execute`; `HealthServer` reads readiness from the bot and the
cluster; `Metrics` counts commands and auto-stops. The cluster's `on_change` runs `Service.reconcile`,
which re-arms deadlines at start-up and adopts targets scaled outside toggler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from toggler.cluster import KubeCluster
from toggler.commands import Command
from toggler.config import Config
from toggler.health import Check, HealthServer
from toggler.matrix.bot import MatrixBot
from toggler.metrics import Metrics
from toggler.outcomes import Outcome
from toggler.policy import Policy
from toggler.service import Service
from toggler.timers import SchedulerTimers

log = logging.getLogger(__name__)
WARM_TIMEOUT = 30.0
SHUTDOWN_BUDGET = 4.0


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class MeteredNotifier:
    """Counts auto-stops as they are told to rooms, then hands the news to the bot."""

    def __init__(self, bot: MatrixBot, metrics: Metrics) -> None:
        self._bot = bot
        self._metrics = metrics

    async def notify(self, room: str | None, outcome: Outcome) -> None:
        self._metrics.notified(outcome)
        await self._bot.notify(room, outcome)


class App:
    """toggler, assembled. `await run()` until `stop()` (or SIGTERM/SIGINT with `install_signals`)."""

    def __init__(self, config: Config, *, dry_run: bool | None = None, kube_configuration: Any = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.timers = SchedulerTimers(config)
        self.cluster = KubeCluster.from_config(config, on_change=self._changed, configuration=kube_configuration)
        self.service = Service(config, cluster=self.cluster, timers=self.timers, clock=SystemClock(),
                               policy=Policy(config), dry_run=dry_run)
        self.service.observers.append(self._count)
        self.timers.bind(self.service)
        sync_ms = int(config.matrix.sync_timeout.total_seconds() * 1000)
        self.bot = MatrixBot(config, service=self.service, sync_timeout_ms=sync_ms)
        self.service.notifier = MeteredNotifier(self.bot, self.metrics)
        self.metrics.last_sync.set_function(self._last_sync_wall)
        health = config.health
        self.health = HealthServer(host=health.host, port=health.port, metrics=self.metrics,
                                   readiness=self.readiness) if health.enabled else None
        self._stop = asyncio.Event()

    # --- wiring callbacks ------------------------------------------------------------------------------
    def _changed(self, target: str) -> Awaitable[None]:
        self.metrics.target(self.service.status(target))
        return self.service.reconcile(target)

    def _count(self, command: Command, outcome: Outcome) -> None:
        self.metrics.command(command.action, command.target, outcome)

    def _last_sync_wall(self) -> float:
        last = self.bot.last_sync_ok
        return 0.0 if last is None else time.time() - (time.monotonic() - last)

    def readiness(self) -> list[Check]:
        """Logged in, a sync younger than twice the long-poll timeout, every watch running."""
        last = self.bot.last_sync_ok
        age = None if last is None else time.monotonic() - last
        limit = 2 * self.bot.sync_timeout_ms / 1000
        problems = self.cluster.watch_problems()
        return [
            Check("matrix login", self.bot.logged_in),
            Check("matrix sync", age is not None and age < limit,
                  "never synced" if age is None else f"last good sync {age:.0f} s ago"),
            Check("kubernetes watches", self.cluster.watches_healthy(),
                  "; ".join(f"{key}: {why}" for key, why in problems.items())),
        ]

    # --- lifecycle ---------------------------------------------------------------------------------------
    def install_signals(self) -> None:
        """SIGTERM and SIGINT ask for a clean shutdown."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def stop(self) -> None:
        """Ask `run()` to finish."""
        self._stop.set()

    async def start(self) -> None:
        """Health server, scheduler, watches (warm), then timers rebuilt from the cluster's annotations."""
        if self.health is not None:
            await self.health.start()
        self.timers.start()
        await self.cluster.start()
        if not await self.cluster.wait_warm(WARM_TIMEOUT):
            log.warning("the watch cache is not warm after %.0f s; statuses say `unknown` until it is", WARM_TIMEOUT)
        for name in self.config.targets:
            await self.service.reconcile(name)
            self.metrics.target(self.service.status(name))
        log.info("toggler started: %d target(s), %d room rule(s)%s", len(self.config.targets),
                 len(self.config.rooms), " [dry-run]" if self.service.dry_run else "")

    async def run(self) -> None:
        """Start everything, serve until `stop()` or the bot fails for good, then shut down."""
        await self.start()
        bot = asyncio.create_task(self.bot.run(), name="matrix-bot")
        stop = asyncio.create_task(self._stop.wait(), name="app-stop")
        try:
            await asyncio.wait({bot, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            await self.shutdown(bot)

    async def shutdown(self, bot: asyncio.Task[None] | None = None) -> None:
        """Stop syncing (finishing the command in flight), then scheduler, watches and health server."""
        begun = time.monotonic()
        await self.bot.close()
        if bot is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(bot), timeout=SHUTDOWN_BUDGET)
        await self.timers.shutdown()
        await self.cluster.stop()
        if self.health is not None:
            await self.health.stop()
        log.info("toggler stopped in %.1f s", time.monotonic() - begun)
        if bot is not None and bot.done() and not bot.cancelled() and bot.exception() is not None:
            raise bot.exception()  # type: ignore[misc]

"""Deadlines survive a restart: the real cluster adapter (official client → kmock over HTTP), the real
SchedulerTimers and Service. Killing and re-creating adapter + scheduler between `start web for …` and its
deadline loses nothing; a deadline that passed while toggler was down fires at once and says it was
overdue; targets scaled by another client are adopted (deadline armed and annotated) or released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client

from tests.fakes import RecordingNotifier
from tests.support.kube import KubeServer, workload
from toggler.cluster import KubeCluster
from toggler.commands import Command
from toggler.config import Config, Defaults
from toggler.outcomes import Started, StartedOutside, Stopped, StoppedOutside
from toggler.policy import Policy
from toggler.ports import RESTORE_REPLICAS, STARTED_BY, STARTED_IN, STOP_AT
from toggler.service import Context, Service, rfc3339
from toggler.timers import SchedulerTimers

ROOM = "!dev:example.org"
OPS = "!ops:example.org"
ALICE = "@alice:example.org"
CTX = Context(ALICE, ROOM, "$event")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def make_config() -> Config:
    return Config(
        matrix={"homeserver": "http://127.0.0.1:1", "user_id": "@toggler:example.org", "password": "x"},
        defaults=Defaults(warn_before="1s"),
        targets={
            "web": {"namespace": "apps", "replicas": 2},
            "api": {"namespace": "apps", "auto_stop_after": "3s", "notify_room": OPS},
        },
        rooms={ROOM: {"users": [ALICE], "targets": ["*"]}, OPS: {}},
    )


class Toggler:
    """One toggler process, as far as timers go: cluster adapter + scheduler + service."""

    def __init__(self, config: Config, kube: KubeServer) -> None:
        self.config = config
        self.notifier = RecordingNotifier()
        self.timers = SchedulerTimers(config, retry_first=timedelta(seconds=0.2), retry_max=timedelta(seconds=0.5))
        self.cluster = KubeCluster.from_config(config, configuration=kube.configuration(), on_change=self._changed)
        self.service = Service(config, cluster=self.cluster, timers=self.timers, clock=SystemClock(),
                               policy=Policy(config), notifier=self.notifier)
        self.timers.bind(self.service)

    def _changed(self, target: str) -> Any:
        return self.service.reconcile(target)

    async def __aenter__(self) -> Toggler:
        self.timers.start()
        await self.cluster.start()
        assert await self.cluster.wait_warm(20), self.cluster.watch_problems()
        for name in self.config.targets:
            await self.service.reconcile(name)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.timers.shutdown()
        await self.cluster.stop()

    def of(self, kind: type) -> list[tuple[str | None, Any]]:
        return [(room, outcome) for room, outcome in self.notifier.sent if isinstance(outcome, kind)]


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll `predicate` every 20 ms; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def seed(kube: KubeServer, **replicas: int) -> None:
    kube.put_objects([workload("Deployment", "apps", name, replicas=replicas.get(name, 0)) for name in ("web", "api")])


def spec_replicas(kube: KubeServer, name: str) -> int:
    return int(kube.get("Deployment", "apps", name)["spec"]["replicas"])


def notes(kube: KubeServer, name: str) -> dict[str, str]:
    return dict(kube.get("Deployment", "apps", name)["metadata"].get("annotations") or {})


async def test_restart_between_start_and_deadline_loses_nothing(kube: KubeServer) -> None:
    seed(kube)
    config = make_config()
    async with Toggler(config, kube) as first:
        started = await first.service.execute(Command("start", "web", duration=timedelta(seconds=4)), CTX)
        assert isinstance(started, Started) and started.deadline is not None
        assert spec_replicas(kube, "web") == 2
        assert notes(kube, "web")[STOP_AT] == rfc3339(started.deadline)
        assert (notes(kube, "web")[STARTED_BY], notes(kube, "web")[STARTED_IN]) == (ALICE, ROOM)
    assert not first.timers.running  # killed well before the deadline

    async with Toggler(config, kube) as second:
        assert second.timers.deadline("web") == started.deadline.replace(microsecond=0)
        assert second.timers.deadline("api") is None
        await until(lambda: second.of(Stopped))
        [(room, stopped)] = second.of(Stopped)
        assert (room, stopped.target, stopped.reason, stopped.overdue_by) == (ROOM, "web", "deadline", None)
        assert spec_replicas(kube, "web") == 0
        assert STOP_AT not in notes(kube, "web")
        assert notes(kube, "web")[RESTORE_REPLICAS] == "2"
        assert second.timers.deadline("web") is None
    assert first.of(Stopped) == []


async def test_deadline_passed_while_down_fires_at_once_as_overdue(kube: KubeServer) -> None:
    seed(kube)
    config = make_config()
    async with Toggler(config, kube) as first:
        started = await first.service.execute(Command("start", "web", duration=timedelta(minutes=2)), CTX)
        assert isinstance(started, Started)
    # toggler stays down past the deadline: move the stored deadline into the past while nothing watches
    passed = datetime.now(UTC) - timedelta(minutes=3)
    kube.edit("Deployment", "apps", "web", {"metadata": {"annotations": {STOP_AT: rfc3339(passed)}}})

    async with Toggler(config, kube) as second:
        await until(lambda: second.of(Stopped))
        [(room, stopped)] = second.of(Stopped)
        assert (room, stopped.reason) == (ROOM, "deadline")
        assert stopped.overdue_by is not None and stopped.overdue_by >= timedelta(minutes=2, seconds=59)
        assert spec_replicas(kube, "web") == 0
        assert STOP_AT not in notes(kube, "web")


async def test_outside_start_gets_a_deadline_that_fires(kube: KubeServer, other_apps: client.AppsV1Api) -> None:
    seed(kube)
    async with Toggler(make_config(), kube) as toggler:
        await asyncio.to_thread(other_apps.patch_namespaced_deployment_scale, "api", "apps", {"spec": {"replicas": 1}})

        await until(lambda: toggler.of(StartedOutside))
        [(room, adopted)] = toggler.of(StartedOutside)
        assert (room, adopted.target, adopted.replicas) == (OPS, "api", 1)
        assert adopted.deadline is not None
        assert toggler.timers.deadline("api") is not None
        await until(lambda: STOP_AT in notes(kube, "api"))
        assert notes(kube, "api")[STOP_AT] == rfc3339(adopted.deadline)

        await until(lambda: toggler.of(Stopped))
        [(room, stopped)] = toggler.of(Stopped)
        assert (room, stopped.target, stopped.reason) == (OPS, "api", "deadline")
        assert spec_replicas(kube, "api") == 0
        assert len(toggler.of(StartedOutside)) == 1


async def test_outside_stop_cancels_the_deadline(kube: KubeServer, other_apps: client.AppsV1Api) -> None:
    seed(kube)
    async with Toggler(make_config(), kube) as toggler:
        started = await toggler.service.execute(Command("start", "web", duration=timedelta(minutes=2)), CTX)
        assert isinstance(started, Started)
        assert toggler.timers.deadline("web") is not None

        await asyncio.to_thread(other_apps.patch_namespaced_deployment_scale, "web", "apps", {"spec": {"replicas": 0}})

        await until(lambda: toggler.of(StoppedOutside))
        assert toggler.of(StoppedOutside) == [(ROOM, StoppedOutside("web"))]
        assert toggler.timers.deadline("web") is None
        assert toggler.timers.scheduler.get_jobs() == []
        await until(lambda: STOP_AT not in notes(kube, "web"))
        assert toggler.of(Stopped) == []

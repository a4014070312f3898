"""Fixtures around `toggler.devenv.kube.KubeServer` (the kmock emulator + a tiny status controller).

`KubeServer` runs kmock's `KubernetesEmulator` + `Server` on 127.0.0.1 (a free port) in its own thread and
event loop, so the sync `kubernetes` client can talk to it from anywhere without deadlocks. On top of kmock:

- a status "controller": after `controller_delay` seconds, copies `spec.replicas` into
  `status.{replicas,readyReplicas,availableReplicas,updatedReplicas}` and `observedGeneration`
  (the emulator has no controllers); `hold(name)` keeps one workload un-ready;
- `metadata.generation` bumps when a write changes `spec.replicas` (as a real API server does);
- faults: `fail(status, …)` answers 403/404/409/500/410… (a Kubernetes `Status` body with a secret marker
  that must never reach chat) and `hang(…)` never answers, for the requests that match, before any state
  changes;
- `api_requests()`: kmock's request log without the emulator's own bookkeeping requests;
- `stop_server()` / `start_server()`: take the HTTP server down and up again on the same port, state kept.

Fixtures: `kube` (a started `KubeServer`, closed after the test), `kube_configuration` (a client
`Configuration` pointing at it), `other_apps` (a second, independent `AppsV1Api` client), `make_cluster`
(started, warmed `KubeCluster`s on `kube` with short test timeouts, stopped after the test).
Helpers: `ref()`, `eventually()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, Literal, Protocol, TypeVar

import pytest
from kubernetes import client

from toggler.cluster import KubeCluster
from toggler.config import KubernetesConfig
from toggler.devenv.kube import PLURALS, SECRET_BODY, Fault, KubeServer, resource_of, workload
from toggler.ports import TargetRef

__all__ = ["PLURALS", "SECRET_BODY", "Fault", "KubeServer", "resource_of", "workload"]
T = TypeVar("T")


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    """A running emulator (controller delay 0.2 s), closed after the test."""
    server = KubeServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def kube_configuration(kube: KubeServer) -> client.Configuration:
    """A client `Configuration` pointing at `kube`."""
    return kube.configuration()


@pytest.fixture
def other_apps(kube: KubeServer) -> Iterator[client.AppsV1Api]:
    """Another client (like kubectl or a GitOps tool) on the same emulator."""
    api_client = client.ApiClient(kube.configuration())
    try:
        yield client.AppsV1Api(api_client)
    finally:
        api_client.close()  # type: ignore[no-untyped-call]


def ref(name: str, kind: str = "Deployment", namespace: str = "apps", *, target: str | None = None) -> TargetRef:
    """A target reference; the target is called like the object unless told otherwise."""
    return TargetRef(target or name, kind, namespace, name)


async def eventually(
    check: Callable[[], T | Literal[False] | None], *, timeout: float = 15.0, what: str = "condition"
) -> T:
    """Poll `check` (every 20 ms) until it returns something truthy; fail with the last value after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s; last value: {value!r}")
        await asyncio.sleep(0.02)


class MakeCluster(Protocol):
    def __call__(self, *refs: TargetRef, warm: bool = True, **kwargs: Any) -> Awaitable[KubeCluster]: ...


TEST_TIMEOUT = timedelta(seconds=1)


@pytest.fixture
async def make_cluster(kube: KubeServer) -> AsyncIterator[MakeCluster]:
    """Build, start (and by default warm) `KubeCluster`s on `kube`; 1 s request timeout, quick retries."""
    made: list[KubeCluster] = []

    async def make(*refs: TargetRef, warm: bool = True, **kwargs: Any) -> KubeCluster:
        options: dict[str, Any] = {
            "configuration": kube.configuration(), "settings": KubernetesConfig(request_timeout=TEST_TIMEOUT),
            "retries": 2, "backoff": 0.05, "watch_backoff": (0.05, 0.5), "settle_timeout": 5.0,
        }
        options.update(kwargs)
        cluster = KubeCluster(refs, **options)
        made.append(cluster)
        await cluster.start()
        if warm:
            assert await cluster.wait_warm(20), cluster.watch_problems()
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            await cluster.stop()

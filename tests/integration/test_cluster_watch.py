"""The watch cache: zero-call reads, following other clients, reconnects, 410 re-lists, callbacks, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from kubernetes import client

from tests.support.kube import KubeServer, MakeCluster, eventually, ref, workload
from toggler.ports import STARTED_BY, STOP_AT, State

WEB = ref("web")


def lists(kube: KubeServer, namespace: str = "apps") -> int:
    return sum(1 for r in kube.api_requests()
               if r.action and r.action.value.lower() == "list" and r.namespace == namespace)


async def test_status_makes_no_api_calls(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.put_objects([workload("Deployment", "apps", f"w{i}", replicas=i % 3) for i in range(50)])
    refs = [ref(f"w{i}") for i in range(50)]
    cluster = await make_cluster(*refs)
    await eventually(lambda: any(r.action and r.action.value.lower() == "watch" for r in kube.api_requests()),
                     what="watch opened")  # the list warms the cache; the watch request follows it
    before = len(kube.api_requests())
    states = [cluster.status(r).state for _ in range(20) for r in refs]
    assert len(kube.api_requests()) == before
    assert states.count(State.OFF) == 20 * 17 and states.count(State.ON) == 20 * 33


async def test_cache_follows_changes_made_by_another_client(
    kube: KubeServer, make_cluster: MakeCluster, other_apps: client.AppsV1Api
) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    changed: list[str] = []
    cluster = await make_cluster(WEB, on_change=changed.append)
    changed.clear()

    await asyncio.to_thread(other_apps.patch_namespaced_deployment_scale, "web", "apps", {"spec": {"replicas": 3}})
    await eventually(lambda: cluster.status(WEB).desired == 3, what="outside scale seen")
    on = await eventually(lambda: cluster.status(WEB).state is State.ON and cluster.status(WEB))
    assert (on.ready, on.available, on.updated) == (3, 3, 3)

    await asyncio.to_thread(other_apps.patch_namespaced_deployment, "web", "apps",
                            {"metadata": {"annotations": {STARTED_BY: "@carol:example.org", "other/x": "1"}}})
    await eventually(lambda: cluster.status(WEB).started_by == "@carol:example.org", what="outside annotation")
    assert set(changed) == {"web"} and len(changed) >= 3


async def test_objects_appear_and_disappear(
    kube: KubeServer, make_cluster: MakeCluster, other_apps: client.AppsV1Api
) -> None:
    kube.seed("Deployment", "apps", "unrelated", replicas=1)
    cluster = await make_cluster(WEB)
    assert cluster.status(WEB).state is State.MISSING
    await asyncio.to_thread(other_apps.create_namespaced_deployment, "apps",
                            workload("Deployment", "apps", "web", replicas=1))  # type: ignore[arg-type]
    await eventually(lambda: cluster.status(WEB).state is State.ON, what="created object seen")
    await asyncio.to_thread(other_apps.delete_namespaced_deployment, "web", "apps")
    await eventually(lambda: cluster.status(WEB).state is State.MISSING, what="deleted object seen")
    assert cluster.status(ref("unrelated")).state is State.UNKNOWN, "objects that are not targets are not kept"


async def test_watch_reconnects_after_the_api_server_restarts(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=1)
    changed: list[str] = []
    cluster = await make_cluster(WEB, on_change=changed.append)
    assert cluster.watches_healthy()

    kube.stop_server()
    unknown = await eventually(lambda: cluster.status(WEB).state is State.UNKNOWN and cluster.status(WEB))
    assert unknown.reason is not None and unknown.reason.startswith("watch of namespace apps is down (")
    assert unknown.desired == 1, "the last seen numbers are kept, the state says unknown"
    assert not cluster.watches_healthy() and "Deployment/apps" in cluster.watch_problems()
    assert "web" in changed

    kube.edit("Deployment", "apps", "web", {"spec": {"replicas": 4}, "status": {"readyReplicas": 4}})
    kube.start_server()
    back = await eventually(lambda: cluster.status(WEB).state is not State.UNKNOWN and cluster.status(WEB),
                            what="watch back after restart")
    assert back.desired == 4 and back.reason is None
    assert cluster.watches_healthy() and cluster.watch_problems() == {}

    await cluster.scale(WEB, 0, annotations={STOP_AT: None})
    assert (await cluster.wait_ready(WEB, timeout=20)).state is State.OFF, "the new watch delivers events"


async def test_gone_watch_lists_again(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    gone = kube.fail(410, action="watch", times=1)
    cluster = await make_cluster(WEB)
    await eventually(lambda: lists(kube) >= 2 and gone.hits == 1, what="re-list after 410")
    assert cluster.watches_healthy()
    await cluster.scale(WEB, 2, annotations={})
    assert (await cluster.wait_ready(WEB, timeout=20)).state is State.ON


async def test_forbidden_watch_is_unknown_with_the_missing_permission(
    kube: KubeServer, make_cluster: MakeCluster
) -> None:
    kube.seed("Deployment", "apps", "web", replicas=1)
    kube.fail(403, action="list")
    cluster = await make_cluster(WEB, warm=False)
    reason = await eventually(lambda: (cluster.status(WEB).reason or "").startswith("watch of") and
                              cluster.status(WEB).reason)
    assert reason == "watch of namespace apps is down (toggler may not list and watch deployments in namespace `apps`)"
    assert not cluster.warmed
    kube.clear_faults()
    assert await cluster.wait_warm(20)
    await eventually(lambda: cluster.status(WEB).state is State.ON)


async def test_async_on_change_callbacks_are_owned_and_failures_logged(
    kube: KubeServer, make_cluster: MakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    seen: list[str] = []

    async def react(target: str) -> None:
        seen.append(target)
        raise RuntimeError("reaction failed")

    cluster = await make_cluster(WEB, on_change=react)
    await cluster.scale(WEB, 1, annotations={})
    await eventually(lambda: len(seen) >= 2, what="callbacks ran")
    await eventually(lambda: "on_change callback failed" in caplog.text, what="failure logged")


async def test_stop_is_quick_with_many_open_watches(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.put_objects([workload(kind, f"ns{i}", f"w{i}", replicas=1)
                      for i in range(6) for kind in ("Deployment", "StatefulSet")])
    refs = [ref(f"w{i}", kind, f"ns{i}") for i in range(6) for kind in ("Deployment", "StatefulSet")]
    cluster = await make_cluster(*refs)
    assert all(cluster.status(r).state is State.ON for r in refs)
    began = time.monotonic()
    await cluster.stop()
    assert time.monotonic() - began < 3
    watchers = [t for t in threading.enumerate() if t.name.startswith("watch-")]
    assert watchers == []

"""Cluster errors become toggler's one-line errors; retries are bounded; the event loop never blocks."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import timedelta

import pytest

from tests.support.kube import SECRET_BODY, KubeServer, MakeCluster, ref
from toggler.cluster import LoopBlockingError, run_blocking
from toggler.config import KubernetesConfig
from toggler.ports import STOP_AT, ClusterError, Conflict, Forbidden, NotFound, State, Unavailable

WEB = ref("web")


def scale_attempts(kube: KubeServer) -> int:
    return sum(1 for r in kube.writes() if r.subresource == "scale")


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and SECRET_BODY not in text and "Traceback" not in text, text
    assert "Injected" not in text and "{" not in text, text
    return text


async def test_missing_object_is_not_found(kube: KubeServer, make_cluster: MakeCluster) -> None:
    ghost = ref("ghost", target="web")
    cluster = await make_cluster(ghost)
    assert cluster.status(ghost).state is State.MISSING
    with pytest.raises(NotFound) as caught:
        await cluster.scale(ghost, 1, annotations={STOP_AT: "2026-12-03T18:40:00Z"})
    assert one_line(caught.value) == "`web` (Deployment apps/ghost) does not exist"
    with pytest.raises(NotFound):
        await cluster.wait_ready(ghost, timeout=5)
    assert len(kube.writes()) == 1, "404 is not retried"


async def test_forbidden_names_verb_resource_and_namespace(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    kube.fail(403, subresource="scale")
    cluster = await make_cluster(WEB)
    with pytest.raises(Forbidden) as caught:
        await cluster.scale(WEB, 2, annotations={})
    assert one_line(caught.value) == "toggler may not patch deployments/scale in namespace `apps`"
    assert scale_attempts(kube) == 1, "403 is not retried"
    assert kube.get("Deployment", "apps", "web")["spec"]["replicas"] == 0

    kube.clear_faults()
    kube.fail(403, method="patch")
    with pytest.raises(Forbidden, match=r"^toggler may not patch deployments in namespace `apps`$"):
        await cluster.annotate(WEB, {STOP_AT: None})


async def test_a_failed_scale_takes_its_annotations_back(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0, annotations={"toggler/restore-replicas": "3"})
    kube.fail(403, subresource="scale")
    cluster = await make_cluster(WEB)
    with pytest.raises(Forbidden):
        await cluster.scale(WEB, 3, annotations={STOP_AT: "2026-12-03T18:40:00Z", "toggler/restore-replicas": None,
                                                 "toggler/started-by": "@alice:x"})
    assert cluster.status(WEB).stop_at is None and cluster.status(WEB).restore_replicas == 3, "the cache too"
    obj = kube.get("Deployment", "apps", "web")
    assert obj["spec"]["replicas"] == 0
    assert {k: v for k, v in (obj["metadata"].get("annotations") or {}).items() if k.startswith("toggler/")} == {
        "toggler/restore-replicas": "3"}
    patches = [r for r in kube.writes() if r.subresource != "scale"]
    assert len(patches) == 2, "the annotations, then taking them back"


async def test_conflict_is_retried_then_succeeds(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    kube.fail(409, subresource="scale", times=2)
    cluster = await make_cluster(WEB)
    status = await cluster.scale(WEB, 2, annotations={})
    assert status.desired == 2
    assert scale_attempts(kube) == 3


async def test_conflict_that_persists_becomes_conflict(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    kube.fail(409, subresource="scale")
    cluster = await make_cluster(WEB, retries=3)
    with pytest.raises(Conflict) as caught:
        await cluster.scale(WEB, 2, annotations={})
    assert one_line(caught.value) == "`web` (Deployment apps/web) kept changing while toggler wrote to it; try again"
    assert scale_attempts(kube) == 4


async def test_server_errors_are_retried_then_unavailable(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    kube.fail(500, subresource="scale", times=1)
    cluster = await make_cluster(WEB, retries=2)
    assert (await cluster.scale(WEB, 1, annotations={})).desired == 1
    assert scale_attempts(kube) == 2

    kube.fail(503, method="patch")
    with pytest.raises(Unavailable) as caught:
        await cluster.scale(WEB, 0, annotations={STOP_AT: None})
    assert one_line(caught.value) == "cluster unreachable (HTTP 503)"
    assert sum(1 for r in kube.writes() if r.subresource is None) == 3, "1 try + 2 retries, then stop"
    assert kube.get("Deployment", "apps", "web")["spec"]["replicas"] == 1


async def test_unprocessable_is_a_plain_error_without_retry(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    kube.fail(422, subresource="scale")
    cluster = await make_cluster(WEB)
    with pytest.raises(ClusterError) as caught:
        await cluster.scale(WEB, 1, annotations={})
    assert one_line(caught.value) == (
        "the cluster refused to patch deployments/scale of `web` (Deployment apps/web) (HTTP 422)")
    assert scale_attempts(kube) == 1


async def test_hanging_api_becomes_unavailable_within_the_bound(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    settings = KubernetesConfig(request_timeout=timedelta(seconds=0.5))
    cluster = await make_cluster(WEB, settings=settings, retries=1, backoff=0.1)
    kube.hang(subresource="scale")
    began = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await cluster.scale(WEB, 1, annotations={})
    elapsed = time.monotonic() - began
    assert one_line(caught.value) == "cluster unreachable (no answer within 0.5 s)"
    assert 0.9 < elapsed < 6, elapsed  # 2 × 0.5 s + 0.1 s backoff, plus a generous margin for a busy machine
    assert scale_attempts(kube) == 2


async def test_connection_refused_becomes_unavailable(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=1)
    cluster = await make_cluster(WEB)
    kube.stop_server()
    with pytest.raises(Unavailable) as caught:
        await cluster.annotate(WEB, {STOP_AT: None})
    assert one_line(caught.value) == "cluster unreachable (connection refused)"


# --- the event loop is never blocked -----------------------------------------------------------------------
async def test_client_calls_refuse_to_run_on_the_event_loop() -> None:
    with pytest.raises(LoopBlockingError):
        run_blocking(lambda: "never called")
    assert await asyncio.to_thread(run_blocking, threading.get_ident) != threading.get_ident()


async def test_loop_keeps_ticking_while_the_api_hangs(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    cluster = await make_cluster(WEB, settings=KubernetesConfig(request_timeout=timedelta(seconds=1.5)), retries=1)
    kube.hang(subresource="scale")
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        with pytest.raises(Unavailable):
            await cluster.scale(WEB, 1, annotations={})
    finally:
        task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert ticks[-1] - ticks[0] > 2.5, "the API really hung for two request timeouts"
    assert max(gaps) < 0.75, f"the loop stalled for {max(gaps):.2f} s (a request would stall it ≥ 1.5 s)"

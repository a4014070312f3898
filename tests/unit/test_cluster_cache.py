"""Pure pieces of the cluster adapter: observing objects, state rules, error wording, pod reasons, watch events."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from tests.support.kube import ref, workload
from toggler.cluster_cache import Observed, StreamHealth, WatchCache, build_status, observe, state_of
from toggler.k8s_errors import Op, map_error
from toggler.pods import waiting_reason
from toggler.ports import STOP_AT, Conflict, Forbidden, NotFound, State, Unavailable
from toggler.watch import Gone, NamespaceWatch, WatchError

WEB = ref("web")
UP = StreamHealth(up=True, warmed=True, reason=None)


def test_observe_keeps_only_what_toggler_needs() -> None:
    obj = workload("Deployment", "apps", "web", replicas=2, ready=1,
                   annotations={STOP_AT: "2026-12-03T18:40:00Z", "kubectl/last-applied": "{...}"})
    seen = observe(obj)
    assert seen == Observed(desired=2, ready=1, available=1, updated=1, pods=1, generation=1,
                            observed_generation=1, notes=((STOP_AT, "2026-12-03T18:40:00Z"),),
                            match_labels=(("app", "web"),))
    assert observe({"metadata": {"name": "bare"}}).desired == 1, "spec.replicas defaults to 1"


@pytest.mark.parametrize(("desired", "ready", "pods", "generation", "observed", "state"), [
    (0, 0, 0, 1, 1, State.OFF),
    (0, 0, 2, 2, 1, State.STOPPING),
    (2, 1, 1, 1, 1, State.STARTING),
    (2, 2, 2, 2, 1, State.STARTING),
    (2, 2, 2, 2, 2, State.ON),
    (2, 3, 3, None, None, State.ON),
])
def test_state_rules(desired: int, ready: int, pods: int, generation: int | None, observed: int | None,
                     state: State) -> None:
    seen = Observed(desired, ready=ready, pods=pods, generation=generation, observed_generation=observed)
    assert state_of(seen) is state


def test_status_while_the_stream_is_down_is_unknown_with_last_numbers() -> None:
    seen = Observed(3, ready=3, pods=3, notes=((STOP_AT, "2026-12-03T18:40:00+00:00"),))
    down = StreamHealth(up=False, warmed=True, reason="watch of namespace apps is down (HTTP 500)")
    status = build_status(WEB, seen, down)
    assert (status.state, status.desired, status.reason) == (State.UNKNOWN, 3, down.reason)
    assert status.stop_at == datetime(2026, 12, 3, 18, 40, tzinfo=UTC)
    assert build_status(WEB, None, UP).state is State.MISSING
    assert build_status(WEB, None, down).state is State.UNKNOWN


def test_unreadable_annotations_are_ignored() -> None:
    seen = Observed(1, ready=1, notes=((STOP_AT, "tomorrow"), ("toggler/restore-replicas", "many")))
    status = build_status(WEB, seen, UP)
    assert (status.stop_at, status.restore_replicas, status.state) == (None, None, State.ON)


def test_reflects_and_with_changes() -> None:
    seen = Observed(0, notes=(("toggler/a", "1"), ("toggler/b", "2")))
    assert seen.reflects(replicas=0, notes={"toggler/a": "1", "toggler/c": None})
    assert not seen.reflects(replicas=1, notes={})
    assert not seen.reflects(replicas=None, notes={"toggler/b": None})
    changed = seen.with_changes(replicas=2, notes={"toggler/b": None, "toggler/c": "3"})
    assert changed.desired == 2 and changed.notes == (("toggler/a", "1"), ("toggler/c", "3"))


async def test_cache_notifies_only_real_changes() -> None:
    changed: list[str] = []
    cache = WatchCache([WEB, ref("web", target="site")], on_change=changed.append)
    assert cache.status(WEB).reason == "watch not started yet"
    cache.reset(("Deployment", "apps"), {"web": Observed(1, ready=1, pods=1)})
    assert changed == ["web", "site"] and cache.warmed and cache.healthy()
    cache.upsert(("Deployment", "apps"), "web", Observed(1, ready=1, pods=1))
    assert changed == ["web", "site"], "an identical observation is no change"
    waiter = asyncio.ensure_future(cache.wait_change(5))
    await asyncio.sleep(0)
    cache.remove(("Deployment", "apps"), "web")
    assert await waiter and cache.status(WEB).state is State.MISSING
    cache.down(("Deployment", "apps"), "connection refused")
    assert cache.problems() == {"Deployment/apps": "watch of namespace apps is down (connection refused)"}
    assert not await cache.wait_change(0.01)


@pytest.mark.parametrize(("exc", "kind", "text", "retry"), [
    (ApiException(status=404, reason="secret"), NotFound, "`web` (Deployment apps/web) does not exist", False),
    (ApiException(status=403), Forbidden, "toggler may not patch deployments/scale in namespace `apps`", False),
    (ApiException(status=401), Forbidden, "the cluster rejected toggler's credentials (HTTP 401)", False),
    (ApiException(status=409), Conflict,
     "`web` (Deployment apps/web) kept changing while toggler wrote to it; try again", True),
    (ApiException(status=502), Unavailable, "cluster unreachable (HTTP 502)", True),
    (ApiException(status=429), Unavailable, "cluster unreachable (HTTP 429)", True),
    (urllib3.exceptions.NewConnectionError(None, "[Errno 111] Connection refused"), Unavailable,
     "cluster unreachable (connection refused)", True),
    (urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out"), Unavailable,
     "cluster unreachable (no answer within 2 s)", True),
    (urllib3.exceptions.ProtocolError("Connection aborted."), Unavailable, "cluster unreachable (connection lost)",
     True),
    (socket.gaierror(-2, "Name or service not known"), Unavailable, "cluster unreachable (host not found)", True),
    (urllib3.exceptions.MaxRetryError(None, "/x", urllib3.exceptions.ConnectTimeoutError()), Unavailable,
     "cluster unreachable (no answer within 2 s)", True),
])
def test_error_mapping(exc: BaseException, kind: type[Exception], text: str, retry: bool) -> None:
    mapped = map_error(exc, Op("patch", "deployments/scale", "apps", WEB), timeout=2)
    assert type(mapped.error) is kind
    assert (str(mapped.error), mapped.retryable) == (text, retry)


def test_pod_reasons() -> None:
    def pod(name: str, status: dict[str, Any], app: str = "web") -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": {"app": app}}, "status": status}

    creating = {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}
    unscheduled = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    crash = {"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
    pods = [pod("other-1", crash, app="other"), pod("web-1", creating), pod("web-2", unscheduled)]
    assert waiting_reason(pods, {"app": "web"}) == "pod web-2: Unschedulable"
    assert waiting_reason(pods[:2], {"app": "web"}) is None


async def test_watch_error_events() -> None:
    watch = NamespaceWatch(("Deployment", "apps"), frozenset({"web"}), plural="deployments",
                           list_call=lambda *a, **k: None, call=lambda fn: fn(), loop=asyncio.get_running_loop(),
                           sink=WatchCache([]), request_timeout=1)
    with pytest.raises(Gone):
        watch._apply({"type": "ERROR", "object": {"kind": "Status", "code": 410}})
    with pytest.raises(WatchError, match="HTTP 500"):
        watch._apply({"type": "ERROR", "object": {"kind": "Status", "code": 500}})
    assert watch._apply({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}}) == "42"

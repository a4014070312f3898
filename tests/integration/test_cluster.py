"""The cluster adapter through the official client against kmock: writes, states, readiness, dry-run, config.

Errors and the event-loop guard are in test_cluster_errors.py; the watch cache in test_cluster_watch.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes import FakeTimers, RecordingNotifier, names
from tests.support.kube import PLURALS, KubeServer, MakeCluster, eventually, ref, workload
from toggler.cluster import KubeCluster
from toggler.commands import Command
from toggler.config import Config, KubernetesConfig
from toggler.policy import Policy
from toggler.ports import (
    RESTORE_REPLICAS,
    STARTED_BY,
    STARTED_IN,
    STOP_AT,
    ClusterError,
    ReadyTimeout,
    State,
)
from toggler.service import Context, Service

WEB = ref("web")
NOTES = {STOP_AT: "2026-12-03T18:40:00Z", STARTED_BY: "@alice:example.org", STARTED_IN: "!ops:example.org"}


def scale_patches(kube: KubeServer, name: str, plural: str = "deployments") -> list[int]:
    """Replica counts sent to `…/<plural>/<name>/scale`, in order."""
    return [r.data["spec"]["replicas"] for r in kube.writes()
            if r.subresource == "scale" and r.name == name and r.resource and r.resource.plural == plural]


def notes_of(kube: KubeServer, name: str, kind: str = "Deployment") -> dict[str, str]:
    return dict(kube.get(kind, "apps", name)["metadata"].get("annotations") or {})


# --- writes -----------------------------------------------------------------------------------------------
async def test_scale_up_and_down_goes_through_the_scale_subresource(
    kube: KubeServer, make_cluster: MakeCluster
) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    cluster = await make_cluster(WEB)
    assert cluster.status(WEB).state is State.OFF

    up = await cluster.scale(WEB, 2, annotations=NOTES)
    assert (up.desired, up.state) == (2, State.STARTING)
    assert cluster.status(WEB).desired == 2, "scale returns once the watch cache shows the change"
    assert up.stop_at == datetime(2026, 12, 3, 18, 40, tzinfo=UTC)
    assert (up.started_by, up.started_in) == ("@alice:example.org", "!ops:example.org")
    assert kube.get("Deployment", "apps", "web")["spec"]["replicas"] == 2

    down = await cluster.scale(WEB, 0, annotations={STOP_AT: None, RESTORE_REPLICAS: "2"})
    assert down.desired == 0 and down.state in (State.STOPPING, State.OFF)
    assert down.stop_at is None and down.restore_replicas == 2
    assert scale_patches(kube, "web") == [2, 0]
    patches = [r for r in kube.writes() if r.subresource is None]
    assert [r.data for r in patches] == [{"metadata": {"annotations": NOTES}},
                                         {"metadata": {"annotations": {STOP_AT: None, RESTORE_REPLICAS: "2"}}}]
    assert all(r.headers["Content-Type"] == "application/merge-patch+json" for r in kube.writes())
    assert all("replicas" not in (r.data.get("spec") or {}) for r in patches), "replicas only via /scale"


async def test_annotations_are_written_and_none_deletes_them(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=1, annotations={"other/keep": "yes"})
    cluster = await make_cluster(WEB)

    status = await cluster.annotate(WEB, NOTES)
    assert notes_of(kube, "web") == {"other/keep": "yes", **NOTES}
    assert status.stop_at is not None and status.started_by == "@alice:example.org"

    status = await cluster.annotate(WEB, {STOP_AT: None, STARTED_BY: None})
    assert notes_of(kube, "web") == {"other/keep": "yes", STARTED_IN: "!ops:example.org"}
    assert status.stop_at is None and status.started_by is None
    assert cluster.status(WEB).started_in == "!ops:example.org"
    assert scale_patches(kube, "web") == [], "annotate never scales"


async def test_writes_are_idempotent(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    cluster = await make_cluster(WEB)
    first = await cluster.scale(WEB, 2, annotations=NOTES)
    second = await cluster.scale(WEB, 2, annotations=NOTES)
    assert (first.desired, second.desired) == (2, 2)
    assert notes_of(kube, "web") == NOTES
    ready = await cluster.wait_ready(WEB, timeout=20)
    assert (ready.state, ready.desired, ready.ready) == (State.ON, 2, 2)
    again = await cluster.annotate(WEB, {STOP_AT: None})
    again = await cluster.annotate(WEB, {STOP_AT: None})
    assert again.stop_at is None and again.state is State.ON


async def test_statefulsets_are_scaled_through_their_scale_subresource(
    kube: KubeServer, make_cluster: MakeCluster
) -> None:
    db = ref("db", "StatefulSet")
    kube.seed("StatefulSet", "apps", "db", replicas=0)
    cluster = await make_cluster(db)
    assert cluster.status(db).state is State.OFF

    await cluster.scale(db, 3, annotations={STARTED_BY: "@bob:example.org"})
    ready = await cluster.wait_ready(db, timeout=20)
    assert (ready.state, ready.ready, ready.started_by) == (State.ON, 3, "@bob:example.org")
    assert scale_patches(kube, "db", PLURALS["StatefulSet"]) == [3]
    assert notes_of(kube, "db", "StatefulSet") == {STARTED_BY: "@bob:example.org"}


# --- states and readiness -----------------------------------------------------------------------------------
async def test_states_off_starting_on_stopping_missing_unknown(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.hold("starting")
    kube.put_objects([
        workload("Deployment", "apps", "off", replicas=0),
        workload("Deployment", "apps", "on", replicas=2),
        workload("Deployment", "apps", "starting", replicas=2, ready=1),
        workload("Deployment", "apps", "stopping", replicas=0, ready=1),
        workload("Deployment", "elsewhere", "blind", replicas=1),
    ])
    kube.fail(500, action="list", namespace="elsewhere")
    names = ("off", "on", "starting", "stopping", "missing")
    cluster = await make_cluster(*(ref(name) for name in names), ref("blind", namespace="elsewhere"), warm=False)
    await eventually(lambda: all(cluster.status(ref(name)).state is not State.UNKNOWN for name in names),
                     what="apps namespace listed")

    assert {name: cluster.status(ref(name)).state for name in names} == {
        "off": State.OFF, "on": State.ON, "starting": State.STARTING, "stopping": State.STOPPING,
        "missing": State.MISSING,
    }
    blind = await eventually(lambda: cluster.status(ref("blind", namespace="elsewhere")).reason)
    assert cluster.status(ref("blind", namespace="elsewhere")).state is State.UNKNOWN
    assert blind == "watch of namespace elsewhere is down (HTTP 500)"
    assert not cluster.watches_healthy() and not cluster.warmed
    assert cluster.watch_problems() == {"Deployment/elsewhere": blind}
    assert cluster.status(ref("nobody")).state is State.UNKNOWN, "not a configured target"


async def test_generation_must_be_observed_before_on(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.put_objects([workload("Deployment", "apps", "web", replicas=1, generation=3)])
    kube.edit("Deployment", "apps", "web", {"status": {"observedGeneration": 2}})
    cluster = await make_cluster(WEB)
    status = cluster.status(WEB)
    assert (status.state, status.ready, status.generation_current) == (State.STARTING, 1, False)


async def test_wait_ready_returns_once_ready_matches_desired(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    kube.call(lambda: setattr(kube.emulator, "controller_delay", 0.5))
    cluster = await make_cluster(WEB)
    started = await cluster.scale(WEB, 2, annotations={})
    assert started.state is State.STARTING and not started.generation_current
    ready = await cluster.wait_ready(WEB, timeout=30)
    assert (ready.state, ready.desired, ready.ready, ready.available, ready.updated) == (State.ON, 2, 2, 2, 2)
    assert ready.generation_current


async def test_ready_timeout_carries_the_last_status_and_the_pod_reason(
    kube: KubeServer, make_cluster: MakeCluster
) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    kube.hold("web")
    kube.put_objects([{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7c9", "namespace": "apps", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "example.org/web:1"}]},
        "status": {"phase": "Pending", "containerStatuses": [
            {"name": "main", "ready": False, "restartCount": 0, "image": "example.org/web:1", "imageID": "",
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "secret registry detail"}}}]},
    }])
    cluster = await make_cluster(WEB)
    await cluster.scale(WEB, 1, annotations={})

    with pytest.raises(ReadyTimeout) as caught:
        await cluster.wait_ready(WEB, timeout=1)
    assert str(caught.value) == "`web` not ready after 1 s: 0/1 ready (pod web-7c9: ImagePullBackOff)"
    assert caught.value.status.state is State.STARTING
    assert caught.value.status.reason == "pod web-7c9: ImagePullBackOff"

    kube.release("Deployment", "apps", "web")
    assert (await cluster.wait_ready(WEB, timeout=20)).state is State.ON


async def test_ready_timeout_without_pod_access_just_counts(kube: KubeServer, make_cluster: MakeCluster) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    kube.hold("web")
    kube.fail(403, plural="pods")
    cluster = await make_cluster(WEB)
    await cluster.scale(WEB, 2, annotations={})
    with pytest.raises(ReadyTimeout, match=r"^`web` not ready after 1 s: 0/2 ready$"):
        await cluster.wait_ready(WEB, timeout=1)


# --- dry-run -----------------------------------------------------------------------------------------------
def dry_config() -> Config:
    return Config.model_validate({
        "matrix": {"homeserver": "https://matrix.example.org", "user_id": "@toggler:example.org", "password": "x"},
        "defaults": {"dry_run": True, "auto_stop_after": "1h"},
        "targets": {"web": {"namespace": "apps", "replicas": 2}, "api": {"namespace": "apps"},
                    "worker": {"namespace": "apps"}},
        "rooms": {"!ops:example.org": {"users": ["@alice:example.org"], "targets": ["*"]}},
    })


async def test_dry_run_service_over_the_real_adapter_writes_nothing(kube: KubeServer) -> None:
    later = "2099-01-01T00:00:00Z"
    kube.put_objects([
        workload("Deployment", "apps", "web", replicas=0),
        workload("Deployment", "apps", "api", replicas=1, annotations={STOP_AT: later}),
        workload("Deployment", "apps", "worker", replicas=1),
    ])
    config = dry_config()
    notifier = RecordingNotifier()
    holder: list[Service] = []
    cluster = KubeCluster.from_config(config, configuration=kube.configuration(),
                                      on_change=lambda target: holder[0].reconcile(target) if holder else None)
    timers = FakeTimers()
    service = Service(config, cluster=cluster, timers=timers, clock=SystemClock(), policy=Policy(config),
                      notifier=notifier)
    holder.append(service)
    await cluster.start()
    try:
        assert await cluster.wait_warm(20)
        for name in ("web", "api", "worker"):  # an outside start without deadline (worker) is not adopted
            await service.reconcile(name)
        ctx = Context("@alice:example.org", "!ops:example.org", "$event")
        outcomes = [
            await service.execute(Command("start", "web", duration=timedelta(minutes=30)), ctx),
            await service.execute(Command("extend", "api", duration=timedelta(hours=1)), ctx),
            await service.execute(Command("start", "api", duration=timedelta(hours=2)), ctx),
            await service.execute(Command("stop", "api"), ctx),
            await service.execute(Command("stop", all_targets=True), ctx),
        ]
        assert names(outcomes) == ["Started", "Extended", "Started", "Stopped", "StoppedMany"], outcomes
        assert all(getattr(outcome, "dry_run", True) for outcome in outcomes), outcomes
        assert await service.auto_stop("api")
    finally:
        await cluster.stop()
    assert kube.writes() == [], [(r.method, r.url) for r in kube.writes()]
    assert kube.get("Deployment", "apps", "web")["spec"]["replicas"] == 0
    assert notes_of(kube, "api") == {STOP_AT: later}


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# --- client configuration -----------------------------------------------------------------------------------
async def test_kubeconfig_file_and_context_are_used(
    kube: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters:
- name: wrong
  cluster: {{server: "http://127.0.0.1:9"}}
- name: emulator
  cluster: {{server: "{kube.url}"}}
users:
- name: bot
  user: {{token: not-a-real-token}}
contexts:
- name: default
  context: {{cluster: wrong, user: bot}}
- name: emulator
  context: {{cluster: emulator, user: bot}}
current-context: default
""")
    kube.seed("Deployment", "apps", "web", replicas=1)
    settings = KubernetesConfig(kubeconfig=kubeconfig, context="emulator", request_timeout=timedelta(seconds=2))
    cluster = KubeCluster([WEB], settings=settings)
    await cluster.start()
    try:
        assert await cluster.wait_warm(20), cluster.watch_problems()
        assert cluster.status(WEB).state is State.ON
    finally:
        await cluster.stop()
    assert all(r.headers.get("Authorization") == "Bearer not-a-real-token" for r in kube.api_requests())


async def test_missing_kubeconfig_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cluster = KubeCluster([WEB], settings=KubernetesConfig(kubeconfig=tmp_path / "absent"))
    with pytest.raises(ClusterError, match="no usable Kubernetes configuration") as caught:
        await cluster.start()
    assert "\n" not in str(caught.value)
    await cluster.stop()

"""A local Kubernetes API for the demo and the tests: kmock's emulator served on 127.0.0.1.

`KubeServer` runs kmock's `KubernetesEmulator` + `Server` on a free loopback port in its own thread and
loop (never call the sync client on the loop that serves it), with a tiny controller that makes status
follow spec after a delay (the emulator has none), fault injection for tests and a request log.
Needs the `test` extra (kmock); only `toggler demo` and the tests import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.test_utils
import aiohttp.web
import aiohttp.web_runner
import aiohttp.web_server
import kmock
from kubernetes import client

T = TypeVar("T")
PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}
WORKLOADS = set(PLURALS.values())
SECRET_BODY = "SECRET-API-BODY-TEXT"
"""Put in every injected error body; tests assert it never shows up in toggler's messages."""
OWN_AGENT = "kmock/"
WRITE_METHODS = {"PATCH", "POST", "PUT", "DELETE"}


def resource_of(kind: str) -> str:
    """`apps/v1/deployments` for `Deployment`."""
    return f"apps/v1/{PLURALS[kind]}"


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig (JSON is YAML) for the emulator at `server`, private; kmock checks no token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "kmock", "user": {"token": "not-checked-by-kmock"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
    }))
    path.chmod(0o600)
    return path


def workload(kind: str, namespace: str, name: str, *, replicas: int = 0, ready: int | None = None,
             annotations: dict[str, str] | None = None, generation: int = 1) -> dict[str, Any]:
    """A schema-valid Deployment/StatefulSet (selector + template) whose status matches `ready`."""
    labels = {"app": name}
    ready = replicas if ready is None else ready
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels},
                     "spec": {"containers": [{"name": "main", "image": f"example.org/{name}:1"}]}},
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "generation": generation,
                     "labels": labels, "annotations": dict(annotations or {})},
        "spec": spec,
        "status": {"replicas": ready, "readyReplicas": ready, "availableReplicas": ready,
                   "updatedReplicas": ready, "observedGeneration": generation},
    }


@dataclass
class Fault:
    """Answer matching requests with `status` (None = hang) `times` times (None = until cleared)."""

    status: int | None
    method: str | None = None
    action: str | None = None
    plural: str | None = None
    subresource: str | None = None
    name: str | None = None
    namespace: str | None = None
    times: int | None = None
    hits: int = 0

    def matches(self, request: kmock.Request) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if _agent(request).startswith(OWN_AGENT):
            return False
        checks = (
            (self.method, request.method.value if request.method else None),
            (self.action, request.action.value if request.action else None),
            (self.plural, request.resource.plural if request.resource else None),
            (self.subresource, request.subresource),
            (self.name, request.name),
            (self.namespace, request.namespace),
        )
        return all(want is None or str(want).lower() == str(got).lower() for want, got in checks)


def _agent(request: kmock.Request) -> str:
    return str(request.headers.get("User-Agent", ""))


class _QuickServer(aiohttp.test_utils.RawTestServer):
    """kmock's default server waits 60 s for open watch streams on shutdown; this one 0.2 s."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web_runner.ServerRunner:
        server = aiohttp.web_server.Server(self._handler, loop=self._loop, debug=debug, **kwargs)
        return aiohttp.web_runner.ServerRunner(server, debug=debug, shutdown_timeout=0.2, **kwargs)


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator plus faults, generation bumps and a status controller (runs on its own loop)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Known resources: listing an empty namespace answers 200 [] (as a real API server does), not 404.
        for resource in ("apps/v1/deployments", "apps/v1/statefulsets", "v1/pods"):
            self.resources[resource] = kmock.ResourceInfo(namespaced=True)
        self.faults: list[Fault] = []
        self.controller_delay = 0.2
        self.held: set[str] = set()
        self.release_hangs = asyncio.Event()
        self.pending: set[asyncio.Task[None]] = set()

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        for fault in self.faults:
            if fault.matches(request):
                fault.hits += 1
                return await self._fail(fault)
        self._bump_generation(request)
        response = await super()._handle(request)
        self._after(request)
        return response

    async def _fail(self, fault: Fault) -> aiohttp.web.StreamResponse:
        status = fault.status
        if status is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release_hangs.wait(), 60)
            status = 504
        body = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": status,
                "reason": f"Injected{status}", "message": f"{SECRET_BODY}: injected failure {status}", "details": {}}
        return aiohttp.web.json_response(body, status=status)

    def _key(self, request: kmock.Request) -> tuple[Any, str | None, str]:
        return (request.resource, request.namespace, request.name or "")

    def _bump_generation(self, request: kmock.Request) -> None:
        if request.resource is None or request.resource.plural not in WORKLOADS:
            return
        data = request.data if isinstance(request.data, dict) else None
        if data is None:
            return
        meta = data.setdefault("metadata", {}) if request.action == kmock.action.CREATE else None
        if meta is not None:
            meta.setdefault("generation", 1)
            return
        spec = data.get("spec")
        if request.action != kmock.action.UPDATE or request.subresource not in (None, "scale"):
            return
        if not isinstance(spec, dict) or "replicas" not in spec:
            return
        try:
            current = self.objects[self._key(request)]
        except KeyError:
            return
        if current.deleted or (current.get("spec") or {}).get("replicas") == spec["replicas"]:
            return
        generation = (current.get("metadata") or {}).get("generation") or 1
        data.setdefault("metadata", {})["generation"] = generation + 1

    def _after(self, request: kmock.Request) -> None:
        if request.resource is None or request.resource.plural not in WORKLOADS:
            return
        if request.action not in (kmock.action.UPDATE, kmock.action.CREATE) or request.subresource == "status":
            return
        name = request.name or ((request.data or {}).get("metadata") or {}).get("name")
        namespace = request.namespace or ((request.data or {}).get("metadata") or {}).get("namespace")
        self.schedule_sync(request.resource.plural, namespace, name)

    def schedule_sync(self, plural: str, namespace: str | None, name: str | None, delay: float | None = None) -> None:
        """Let the controller look at one workload after `delay` (default `controller_delay`)."""
        if namespace is None or name is None:
            return
        wait = self.controller_delay if delay is None else delay
        task = asyncio.get_running_loop().create_task(self._sync(plural, namespace, name, wait))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _sync(self, plural: str, namespace: str, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        if name in self.held:
            return
        try:
            obj = self.objects[f"apps/v1/{plural}", namespace, name]
        except KeyError:
            return
        if obj.deleted:
            return
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        status = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                  "updatedReplicas": replicas, "observedGeneration": (obj.get("metadata") or {}).get("generation", 1)}
        if plural == "statefulsets":
            status["currentReplicas"] = replicas
        if all((obj.get("status") or {}).get(key) == value for key, value in status.items()):
            return
        try:
            url = f"/apis/apps/v1/namespaces/{namespace}/{plural}/{name}/status"
            async with self.patch(url, json={"status": status}) as response:
                await response.read()
        except (RuntimeError, aiohttp.ClientError):  # the server is down for a restart test
            return


class KubeServer:
    """A kmock Kubernetes emulator served over HTTP from its own thread and loop."""

    def __init__(self, *, controller_delay: float = 0.2) -> None:
        self.emulator = Emulator()
        self.emulator.controller_delay = controller_delay
        self.port: int | None = None
        self._server: kmock.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kmock", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> KubeServer:
        self._thread.start()
        self.run(self.emulator.__aenter__())
        self.start_server()
        return self

    def start_server(self) -> None:
        """Serve HTTP (again) on the same port; the emulator's objects are kept."""
        async def up() -> None:
            server = kmock.Server(self.emulator, port=self.port, server_cls=_QuickServer)
            await server.__aenter__()
            self._server = server
            self.port = server.port
        self.run(up())

    def stop_server(self) -> None:
        """Stop serving HTTP (open watches are cut); the emulator keeps its state."""
        async def down() -> None:
            if self._server is not None:
                server, self._server = self._server, None
                await server.__aexit__(None, None, None)
        self.run(down())

    def close(self) -> None:
        """Stop everything this server started."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            self.emulator.release_hangs.set()
            for task in list(self.emulator.pending):
                task.cancel()
            await asyncio.gather(*self.emulator.pending, return_exceptions=True)
            if self._server is not None:
                server, self._server = self._server, None
                await server.__aexit__(None, None, None)
            await self.emulator.__aexit__(None, None, None)
        try:
            self.run(shutdown(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configuration(self) -> client.Configuration:
        """A fresh client configuration pointing at this server."""
        cfg = client.Configuration()
        cfg.host = self.url
        return cfg

    # --- running things on the emulator's loop ----------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()
        return self.run(wrapper())

    # --- objects --------------------------------------------------------------------------------------
    def seed(self, kind: str, namespace: str, name: str, **fields: Any) -> None:
        """Create a workload over HTTP (watchers see ADDED); see `workload()` for the fields."""
        body = workload(kind, namespace, name, **fields)

        async def post() -> None:
            async with self.emulator.post(f"/apis/apps/v1/namespaces/{namespace}/{PLURALS[kind]}", json=body) as r:
                assert r.status == 200, await r.text()
        self.run(post())

    def put_objects(self, objects: list[dict[str, Any]]) -> None:
        """Store objects directly (fast; no watch events): for seeding before anything watches."""
        def store() -> None:
            for obj in objects:
                meta = obj["metadata"]
                plural = "pods" if obj["kind"] == "Pod" else PLURALS[obj["kind"]]
                group = "v1" if obj["kind"] == "Pod" else "apps/v1"
                self.emulator.objects[f"{group}/{plural}", meta["namespace"], meta["name"]] = obj
        self.call(store)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A copy of the stored object."""
        return self.call(lambda: copy.deepcopy(self.emulator.objects[resource_of(kind), namespace, name].raw))

    def edit(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the stored object directly (no watch event; e.g. while the server is down)."""
        self.call(lambda: self.emulator.objects[resource_of(kind), namespace, name].patch(patch))

    def hold(self, name: str) -> None:
        """The controller leaves `name` alone (it never becomes ready)."""
        self.call(lambda: self.emulator.held.add(name))

    def release(self, kind: str, namespace: str, name: str) -> None:
        """Undo `hold` and let the controller catch up now."""
        def go() -> None:
            self.emulator.held.discard(name)
            self.emulator.schedule_sync(PLURALS[kind], namespace, name, delay=0)
        self.call(go)

    # --- faults -------------------------------------------------------------------------------------------
    def fail(self, status: int | None, **match: Any) -> Fault:
        """Answer matching requests with `status` (None: hang). Match on method/action/plural/…/times."""
        fault = Fault(status, **match)
        self.call(lambda: self.emulator.faults.append(fault))
        return fault

    def hang(self, **match: Any) -> Fault:
        """Never answer matching requests (until `close`)."""
        return self.fail(None, **match)

    def clear_faults(self) -> None:
        self.call(self.emulator.faults.clear)

    # --- the request log ------------------------------------------------------------------------------------
    def api_requests(self) -> list[kmock.Request]:
        """Every request from clients under test (the emulator's own bookkeeping excluded)."""
        return self.call(lambda: [r for r in self.emulator if not _agent(r).startswith(OWN_AGENT)])

    def writes(self) -> list[kmock.Request]:
        """PATCH/POST/PUT/DELETE requests from clients under test."""
        return [r for r in self.api_requests() if r.method and r.method.value.upper() in WRITE_METHODS]



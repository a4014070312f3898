"""The `Cluster` seam on the official `kubernetes` client: cached reads, scale/annotate writes, readiness.

Owns client configuration (explicit client/configuration, else the configured kubeconfig/context, else
in-cluster, else `$KUBECONFIG`/`~/.kube/config`), the write path (merge patch of `toggler/…` annotations,
then `PATCH …/scale`; bounded retries with backoff; errors mapped by `toggler.k8s_errors`), the lifecycle
of the watch threads (`toggler.watch`) and the cache (`toggler.cluster_cache`) they fill.
Every client call runs in a worker thread through `run_blocking`, which refuses to run on an event loop.
Adapter module: may import kubernetes; must not import nio, apscheduler or aiohttp.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from kubernetes import client
from kubernetes import config as kube_config

from toggler.cluster_cache import WatchCache, is_ready
from toggler.config import Config, KubernetesConfig
from toggler.durations import humanize
from toggler.k8s_errors import Op, map_error
from toggler.kube_rest import KubeRest
from toggler.pods import waiting_reason
from toggler.ports import Annotations, ClusterError, NotFound, ReadyTimeout, State, TargetRef, TargetStatus
from toggler.watch import NamespaceWatch

log = logging.getLogger(__name__)
T = TypeVar("T")
_load_incluster: Callable[..., None] = kube_config.load_incluster_config
_load_kubeconfig: Callable[..., None] = kube_config.load_kube_config


class LoopBlockingError(RuntimeError):
    """A kubernetes client call was about to run on an event-loop thread (a bug in toggler)."""


def run_blocking(fn: Callable[[], T]) -> T:
    """Run a blocking client call; raises `LoopBlockingError` when called on an event-loop thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    raise LoopBlockingError("kubernetes client call on the event-loop thread; use a worker thread")


PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}


def load_configuration(settings: KubernetesConfig) -> client.Configuration:
    """Configured kubeconfig/context, else in-cluster, else `$KUBECONFIG` or `~/.kube/config`. Blocking."""
    cfg = client.Configuration()
    explicit = settings.kubeconfig is not None or settings.context is not None
    if not explicit and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            _load_incluster(client_configuration=cfg)
            return cfg
        except kube_config.ConfigException as exc:
            log.info("in-cluster configuration unusable (%s); trying kubeconfig", exc)
    path = str(settings.kubeconfig) if settings.kubeconfig else os.environ.get("KUBECONFIG", "~/.kube/config")
    try:
        _load_kubeconfig(config_file=path, context=settings.context, client_configuration=cfg, persist_config=False)
    except (kube_config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise ClusterError(f"no usable Kubernetes configuration (not in a cluster; kubeconfig {path}: "
                           f"{type(exc).__name__})") from exc
    return cfg


def _read_json(response: Any) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(response.data or b"{}")
        return data
    finally:
        response.release_conn()


class KubeCluster:
    """Implements `toggler.ports.Cluster`. Create, `await start()`, use, `await stop()` (all on one loop)."""

    def __init__(
        self,
        targets: Iterable[TargetRef],
        *,
        settings: KubernetesConfig | None = None,
        configuration: client.Configuration | None = None,
        api_client: client.ApiClient | None = None,
        on_change: Callable[[str], object] | None = None,
        retries: int = 3,
        backoff: float = 0.25,
        settle_timeout: float = 5.0,
        watch_backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self._settings = settings or KubernetesConfig()
        self._timeout = self._settings.request_timeout.total_seconds()
        self._configuration = configuration
        self._api_client = api_client
        self._owns_client = api_client is None
        self._on_change = on_change
        self._retries = retries
        self._backoff = backoff
        self._settle_timeout = settle_timeout
        self._watch_backoff = watch_backoff
        self._cache = WatchCache(targets, on_change=self._changed)
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kube-api")
        self._watches: list[NamespaceWatch] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self._rest: KubeRest | None = None

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> KubeCluster:
        """An adapter for every target of `config` (kwargs as for the constructor)."""
        refs = [TargetRef(name, spec.kind, spec.namespace, config.object_name(name))
                for name, spec in config.targets.items()]
        return cls(refs, settings=config.kubernetes, **kwargs)

    # --- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Configure the client and start one watch thread per (kind, namespace). Returns at once."""
        if self._rest is not None:
            raise RuntimeError("KubeCluster.start() called twice")
        loop = asyncio.get_running_loop()
        streams = self._cache.streams()
        await loop.run_in_executor(self._executor, self._build_client, len(streams))
        for (kind, namespace), names in streams.items():
            watch = NamespaceWatch(
                (kind, namespace), names, plural=PLURALS[kind], list_call=self._api().lister(kind, PLURALS[kind]),
                call=run_blocking, loop=loop, sink=self._cache, request_timeout=self._timeout,
                backoff=self._watch_backoff)
            self._watches.append(watch)
            watch.start()
        log.info("watching %d target(s) in %d stream(s)", sum(map(len, streams.values())), len(streams))

    def _build_client(self, streams: int) -> None:
        """Blocking (reads kubeconfig, may run an exec credential plugin): runs in a worker thread."""
        if self._api_client is None:
            cfg = self._configuration if self._configuration is not None else load_configuration(self._settings)
            self._api_client = client.ApiClient(self._prepared(cfg, streams))
        self._rest = KubeRest(self._api_client)

    def _api(self) -> KubeRest:
        if self._rest is None:
            raise ClusterError("the cluster adapter is not started")
        return self._rest

    @staticmethod
    def _prepared(cfg: client.Configuration, streams: int) -> client.Configuration:
        cfg = copy.deepcopy(cfg)
        cfg.retries = False  # toggler retries itself, with backoff and a bound
        cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, streams + 8)
        return cfg

    async def stop(self) -> None:
        """Stop the watch threads and callbacks, release the client. Quick (about a second at most)."""
        for watch in self._watches:
            watch.stop()
        watches, self._watches = self._watches, []
        await asyncio.to_thread(lambda: [watch.join(2.0) for watch in watches])
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._api_client is not None and self._owns_client:
            await asyncio.to_thread(self._api_client.close)

    @property
    def warmed(self) -> bool:
        """Every watch stream has listed once: `status` answers from real data."""
        return self._cache.warmed

    async def wait_warm(self, timeout: float) -> bool:
        """Wait until `warmed` (False after `timeout` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._cache.warmed:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._cache.wait_change(remaining):
                return self._cache.warmed
        return True

    def watches_healthy(self) -> bool:
        """Every watch stream is live (for /readyz)."""
        return self._cache.healthy()

    def watch_problems(self) -> dict[str, str]:
        """`Deployment/apps` → reason, for every stream that is down."""
        return self._cache.problems()

    def _changed(self, target: str) -> None:
        if self._on_change is None:
            return
        try:
            result = self._on_change(target)
        except Exception:
            log.exception("on_change(%s) failed", target)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("on_change callback failed", exc_info=task.exception())

    # --- reads --------------------------------------------------------------------------------------------
    def status(self, ref: TargetRef) -> TargetStatus:
        """The cached status: no API call."""
        return self._cache.status(ref)

    async def wait_ready(self, ref: TargetRef, *, timeout: float) -> TargetStatus:
        """Wait for ready == desired with a current generation; `ReadyTimeout` with the last status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = self.status(ref)
            if is_ready(status):
                return status
            if status.state is State.MISSING:
                raise NotFound(f"`{ref.target}` ({ref.describe()}) does not exist")
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self._cache.wait_change(remaining)
        reason = status.reason or await self._pod_reason(ref)
        detail = f" ({reason})" if reason else ""
        raise ReadyTimeout(
            f"`{ref.target}` not ready after {humanize(timedelta(seconds=timeout))}: "
            f"{status.ready}/{status.desired} ready{detail}", replace(status, reason=reason))

    async def _pod_reason(self, ref: TargetRef) -> str | None:
        seen = self._cache.observed(ref)
        if seen is None or not seen.match_labels or self._rest is None:
            return None
        selector = ",".join(f"{k}={v}" for k, v in seen.match_labels)
        list_pods = self._rest.lister("Pod", "pods")
        op = Op("list", "pods", ref.namespace)
        try:
            pods = await self._call(op, lambda: _read_json(list_pods(
                ref.namespace, {"labelSelector": selector}, timeout=self._timeout)), retries=0, quiet=True)
        except ClusterError as exc:
            log.debug("no pod details for %s: %s", ref.describe(), exc)
            return None
        return waiting_reason(pods.get("items") or (), dict(seen.match_labels))

    # --- writes -------------------------------------------------------------------------------------------
    async def scale(self, ref: TargetRef, replicas: int, *, annotations: Annotations) -> TargetStatus:
        """Merge-patch `annotations` (None deletes), then scale via `/scale`; returns once cached (≤ grace)."""
        self._check_kind(ref)
        before, seen = self.status(ref), self._cache.observed(ref)
        notes = dict(annotations)
        if notes:
            await self._patch(ref, {"metadata": {"annotations": notes}})
        try:
            await self._patch(ref, {"spec": {"replicas": replicas}}, subresource="scale")
        except ClusterError:
            if notes:  # the scale failed: take back what the annotations promised (a deadline, a starter)
                await self._undo_notes(ref, notes, dict(seen.notes) if seen else {})
            raise
        log.info("scaled %s: replicas %d -> %d", ref.describe(), before.desired, replicas)
        return await self._settled(ref, replicas=replicas, notes=notes)

    async def annotate(self, ref: TargetRef, annotations: Annotations) -> TargetStatus:
        """Merge-patch toggler annotations only (None deletes)."""
        notes = dict(annotations)
        if not notes:
            return self.status(ref)
        self._check_kind(ref)
        await self._patch(ref, {"metadata": {"annotations": notes}})
        log.info("annotated %s: %s", ref.describe(),
                 ", ".join(f"{key}={'(removed)' if value is None else value}" for key, value in notes.items()))
        return await self._settled(ref, replicas=None, notes=notes)

    async def _undo_notes(self, ref: TargetRef, written: Mapping[str, str | None], old: Mapping[str, str]) -> None:
        """Best effort: put toggler's annotations back as they were before a failed scale."""
        undo = {key: old.get(key) for key in written}
        try:
            await self._patch(ref, {"metadata": {"annotations": undo}})
        except ClusterError as exc:
            log.warning("could not take back the annotations of %s after the failed scale: %s", ref.describe(), exc)
            return
        await self._settled(ref, replicas=None, notes=undo)  # so no one reads the half-done write from the cache

    def _check_kind(self, ref: TargetRef) -> None:
        if ref.kind not in PLURALS:
            raise ClusterError(f"toggler cannot scale a {ref.kind}")
        self._api()

    async def _patch(self, ref: TargetRef, body: dict[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        rest, plural, timeout = self._api(), PLURALS[ref.kind], self._timeout
        resource = f"{plural}/{subresource}" if subresource else plural
        return await self._call(Op("patch", resource, ref.namespace, ref), lambda: _read_json(rest.merge_patch(
            ref.kind, plural, ref.namespace, ref.name, body, subresource=subresource, timeout=timeout)))

    async def _settled(self, ref: TargetRef, *, replicas: int | None, notes: Mapping[str, str | None]) -> TargetStatus:
        """The cached status once it shows our write; after the grace period, the status we expect."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settle_timeout
        while self._cache.stream_up(ref):
            seen = self._cache.observed(ref)
            if seen is not None and seen.reflects(replicas=replicas, notes=notes):
                return self.status(ref)
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.info("watch has not shown the write to %s yet; answering from the API", ref.describe())
                break
            await self._cache.wait_change(remaining)
        return self._cache.projected(ref, replicas=replicas, notes=notes)

    async def _call(self, op: Op, fn: Callable[[], T], *, retries: int | None = None, quiet: bool = False) -> T:
        """Run `fn` in a worker thread; retry what `map_error` calls retryable, with backoff."""
        loop = asyncio.get_running_loop()
        limit = self._retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return await loop.run_in_executor(self._executor, partial(run_blocking, fn))
            except LoopBlockingError:
                raise
            except Exception as exc:
                mapped = map_error(exc, op, timeout=self._timeout)
                if not mapped.retryable or attempt >= limit:
                    level = logging.DEBUG if quiet else logging.WARNING
                    log.log(level, "%s %s in %s failed: %s", op.verb, op.resource, op.namespace, mapped.error)
                    raise mapped.error from exc
                delay = self._backoff * 2**attempt
                attempt += 1
                log.info("%s %s in %s failed (%s); retry %d/%d in %.2f s", op.verb, op.resource, op.namespace,
                         mapped.error, attempt, limit, delay)
                await asyncio.sleep(delay)

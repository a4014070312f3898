"""One list+watch stream per (kind, namespace), each in its own thread, feeding the `WatchCache` on the loop.

Owns the stream protocol: list (paged) → watch from the listed resourceVersion → re-watch when the server
ends the stream → re-list on 410 Gone or after a broken stream → back off and report the stream `down`
while the API cannot be listed. Only objects whose names are configured targets are handed over (kmock and
some proxies ignore selectors, so the filter is by name here). `stop()` shuts the socket of the open watch
so a thread ends within moments. Raw JSON is parsed straight into `Observed`; no client models are built.
Adapter module: may import kubernetes; must not import nio, apscheduler or aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Protocol

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from toggler.cluster_cache import Observed, StreamKey, observe
from toggler.k8s_errors import network_reason
from toggler.kube_rest import ListCall

log = logging.getLogger(__name__)
_iter_lines: Callable[[Any], Iterator[str]] = iter_resp_lines
PAGE_SIZE = 500
QUICK_FAILURE = 1.0
"""A watch that breaks sooner than this (seconds) after it opened counts as a failure, not an interruption."""


class Sink(Protocol):
    """Where a stream's findings go (the `WatchCache`); called on the event loop."""

    def reset(self, stream: StreamKey, items: dict[str, Observed]) -> None:
        """A complete listing."""

    def upsert(self, stream: StreamKey, name: str, seen: Observed) -> None:
        """ADDED or MODIFIED."""

    def remove(self, stream: StreamKey, name: str) -> None:
        """DELETED."""

    def down(self, stream: StreamKey, reason: str) -> None:
        """The stream cannot list."""


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class WatchError(Exception):
    """The server sent an ERROR event other than 410."""


class NamespaceWatch:
    """A daemon thread that keeps one stream of the cache up to date."""

    def __init__(
        self,
        stream: StreamKey,
        names: frozenset[str],
        *,
        plural: str,
        list_call: ListCall,
        call: Callable[[Callable[[], Any]], Any],
        loop: asyncio.AbstractEventLoop,
        sink: Sink,
        request_timeout: float,
        backoff: tuple[float, float] = (0.5, 30.0),
        watch_seconds: int = 300,
    ) -> None:
        self.stream = stream
        self.names = names
        self.plural = plural
        self._list_call = list_call
        self._call = call
        self._loop = loop
        self._sink = sink
        self._timeout = request_timeout
        self._backoff = backoff
        self._watch_seconds = watch_seconds
        self._stopping = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{stream[0]}-{stream[1]}", daemon=True)

    # --- lifecycle (any thread) ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and unblock its open watch."""
        self._stopping.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # already released or closed: nothing to unblock
                log.debug("watch %s: response already closed", self.stream)

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True when it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the loop --------------------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            try:
                version = self._list()
            except Exception as exc:
                if self._stopping.is_set():
                    break
                self._post(self._sink.down, self.stream, self._describe(exc))
                self._stopping.wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            opened = time.monotonic()
            try:
                self._watch(version)
                delay = self._backoff[0]
            except Exception as exc:
                if self._stopping.is_set():
                    break
                quick = time.monotonic() - opened < QUICK_FAILURE
                log.info("watch of %ss in %s interrupted (%s); listing again", *self.stream, self._describe(exc))
                self._stopping.wait(delay if quick else 0.05)
                delay = min(delay * 2, self._backoff[1]) if quick else self._backoff[0]
        log.debug("watch of %ss in %s stopped", *self.stream)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stopping.set()

    def _list(self) -> str | None:
        items: dict[str, Observed] = {}
        token: str | None = None
        version: str | None = None
        while True:
            page = self._call(partial(self._page, token))
            version = (page.get("metadata") or {}).get("resourceVersion")
            for obj in page.get("items") or ():
                name = (obj.get("metadata") or {}).get("name")
                if name in self.names:
                    items[name] = observe(obj)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
        self._post(self._sink.reset, self.stream, items)
        return version

    def _page(self, token: str | None) -> dict[str, Any]:
        return self._read(self._list_call(
            self.stream[1], {"limit": PAGE_SIZE, "continue": token, **self._selector()}, timeout=self._timeout))

    def _selector(self) -> dict[str, str]:
        if len(self.names) == 1:
            return {"fieldSelector": f"metadata.name={next(iter(self.names))}"}
        return {}

    @staticmethod
    def _read(response: Any) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(response.data or b"{}")
            return data
        finally:
            response.release_conn()

    def _watch(self, version: str | None) -> None:
        """Watch (and re-watch when the server ends the stream) until 410 Gone or an error."""
        while not self._stopping.is_set():
            try:
                for event in self._events(version):
                    version = self._apply(event) or version
            except ApiException as exc:
                if exc.status != 410:
                    raise
                log.info("watch of %ss in %s: HTTP 410 Gone, listing again", *self.stream)
                return
            except Gone:
                log.info("watch of %ss in %s: resourceVersion expired, listing again", *self.stream)
                return
            except urllib3.exceptions.ReadTimeoutError:
                continue  # an idle watch outlived its read timeout (servers that ignore timeoutSeconds)

    def _events(self, version: str | None) -> Iterator[dict[str, Any]]:
        query = {"watch": True, "allowWatchBookmarks": True, "timeoutSeconds": self._watch_seconds,
                 "resourceVersion": version, **self._selector()}
        response = self._call(lambda: self._list_call(
            self.stream[1], query, timeout=(self._timeout, self._watch_seconds + 30)))
        self._response = response
        try:
            if self._stopping.is_set():
                return
            for line in _iter_lines(response):
                if line:
                    yield json.loads(line)
        finally:
            self._response = None
            response.release_conn()

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone()
            raise WatchError(f"HTTP {code}")
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        name = meta.get("name")
        if kind in ("ADDED", "MODIFIED") and name in self.names:
            self._post(self._sink.upsert, self.stream, name, observe(obj))
        elif kind == "DELETED" and name in self.names:
            self._post(self._sink.remove, self.stream, name)
        return version if isinstance(version, str) else None


    def _describe(self, exc: BaseException) -> str:
        """Short reason for a stream failure (never an API body)."""
        if isinstance(exc, ApiException):
            if exc.status == 403:
                return f"toggler may not list and watch {self.plural} in namespace `{self.stream[1]}`"
            return f"HTTP {exc.status}"
        if isinstance(exc, WatchError):
            return str(exc)
        return network_reason(exc, timeout=self._timeout) or type(exc).__name__

"""The seams between the pure core and the adapters: value types, errors and `Protocol`s.

`Cluster` is implemented by `toggler.cluster` (kubernetes client), `Timers` by `toggler.timers`
(APScheduler), `Notifier` by the Matrix adapter; tests use small fakes of these.
Pure module; must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from toggler.outcomes import Outcome

ANNOTATION_PREFIX = "toggler/"
STOP_AT = ANNOTATION_PREFIX + "stop-at"
STARTED_BY = ANNOTATION_PREFIX + "started-by"
STARTED_IN = ANNOTATION_PREFIX + "started-in"
STARTED_AT = ANNOTATION_PREFIX + "started-at"
RESTORE_REPLICAS = ANNOTATION_PREFIX + "restore-replicas"


class State(StrEnum):
    """What a target is doing, as seen by the watch cache."""

    OFF = "off"
    STARTING = "starting"
    ON = "on"
    STOPPING = "stopping"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TargetRef:
    """Where a target lives in the cluster."""

    target: str
    kind: str
    namespace: str
    name: str

    def describe(self) -> str:
        """`Deployment apps/web`."""
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class TargetStatus:
    """A target's observed state and toggler's annotations on it."""

    ref: TargetRef
    state: State
    desired: int = 0
    ready: int = 0
    available: int = 0
    updated: int = 0
    generation_current: bool = True
    stop_at: datetime | None = None
    started_by: str | None = None
    started_in: str | None = None
    started_at: datetime | None = None
    restore_replicas: int | None = None
    reason: str | None = None
    """Why it is not ready (e.g. `ImagePullBackOff`) or why the state is unknown, when known."""


class ClusterError(Exception):
    """A cluster failure; `str(exc)` is one line fit for chat."""


class NotFound(ClusterError):
    """The target object does not exist."""


class Forbidden(ClusterError):
    """RBAC denies the request."""


class Conflict(ClusterError):
    """The object changed under us and retries ran out."""


class Unavailable(ClusterError):
    """The API server is unreachable, timing out or failing."""


class ReadyTimeout(ClusterError):
    """The target did not become ready in time; carries the last status."""

    def __init__(self, message: str, status: TargetStatus) -> None:
        super().__init__(message)
        self.status = status


Annotations = Mapping[str, str | None]


class Cluster(Protocol):
    """Reads come from a watch cache (no API call); writes go to the API."""

    def status(self, ref: TargetRef) -> TargetStatus:
        """The cached status (state `unknown` while the watch is down)."""
        ...

    async def scale(self, ref: TargetRef, replicas: int, *, annotations: Annotations) -> TargetStatus:
        """Merge-patch `annotations` (None deletes) then scale through `/scale`; returns once cached."""
        ...

    async def annotate(self, ref: TargetRef, annotations: Annotations) -> TargetStatus:
        """Merge-patch annotations only (None deletes)."""
        ...

    async def wait_ready(self, ref: TargetRef, *, timeout: float) -> TargetStatus:
        """Wait until ready == desired with a current generation, or raise `ReadyTimeout`."""
        ...


class Timers(Protocol):
    """Auto-stop deadlines and their warnings."""

    def arm(self, target: str, deadline: datetime) -> None:
        """Schedule (or move) the auto-stop of `target`, and its warning."""
        ...

    def cancel(self, target: str) -> None:
        """Drop the auto-stop and warning of `target` (no error if none)."""
        ...

    def deadline(self, target: str) -> datetime | None:
        """The armed deadline of `target`, if any."""
        ...


class Clock(Protocol):
    """Current time (UTC, timezone-aware)."""

    def now(self) -> datetime:
        """Now."""
        ...


class Notifier(Protocol):
    """Tells a room about something nobody asked for right now (timers, external changes)."""

    async def notify(self, room: str | None, outcome: Outcome) -> None:
        """Send `outcome` to `room` (a room id or alias); None means nowhere to send it."""
        ...

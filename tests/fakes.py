"""Small fakes of toggler's own seams (Cluster, Timers, Clock, Notifier) for unit tests of the core."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from toggler import ports
from toggler.outcomes import Outcome
from toggler.ports import Annotations, State, TargetRef, TargetStatus


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 12, 3, 16, 40, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def _parse(value: str | None) -> datetime | None:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if value else None


@dataclass
class FakeObject:
    """One workload in the fake cluster."""

    replicas: int = 0
    ready: int = 0
    annotations: dict[str, str] = field(default_factory=dict)


class FakeCluster:
    """In-memory cluster: objects keyed by (namespace, name); readiness follows spec when `auto_ready`."""

    def __init__(self, *, auto_ready: bool = True) -> None:
        self.objects: dict[tuple[str, str], FakeObject] = {}
        self.writes: list[tuple[str, TargetRef, object]] = []
        self.auto_ready = auto_ready
        self.fail_with: ports.ClusterError | None = None
        self.watch_down = False

    def add(self, namespace: str, name: str, *, replicas: int = 0, annotations: dict[str, str] | None = None) -> None:
        self.objects[(namespace, name)] = FakeObject(replicas, replicas, dict(annotations or {}))

    def status(self, ref: TargetRef) -> TargetStatus:
        if self.watch_down:
            return TargetStatus(ref, State.UNKNOWN, reason="watch down")
        obj = self.objects.get((ref.namespace, ref.name))
        if obj is None:
            return TargetStatus(ref, State.MISSING)
        notes = obj.annotations
        restore = notes.get(ports.RESTORE_REPLICAS)
        return TargetStatus(
            ref, _state(obj), desired=obj.replicas, ready=obj.ready, available=obj.ready, updated=obj.ready,
            stop_at=_parse(notes.get(ports.STOP_AT)), started_by=notes.get(ports.STARTED_BY),
            started_in=notes.get(ports.STARTED_IN), started_at=_parse(notes.get(ports.STARTED_AT)),
            restore_replicas=int(restore) if restore else None,
        )

    def _get(self, ref: TargetRef) -> FakeObject:
        if self.fail_with is not None:
            raise self.fail_with
        obj = self.objects.get((ref.namespace, ref.name))
        if obj is None:
            raise ports.NotFound(f"`{ref.target}` ({ref.describe()}) does not exist")
        return obj

    async def annotate(self, ref: TargetRef, annotations: Annotations) -> TargetStatus:
        obj = self._get(ref)
        self.writes.append(("annotate", ref, dict(annotations)))
        for key, value in annotations.items():
            if value is None:
                obj.annotations.pop(key, None)
            else:
                obj.annotations[key] = value
        return self.status(ref)

    async def scale(self, ref: TargetRef, replicas: int, *, annotations: Annotations) -> TargetStatus:
        await self.annotate(ref, annotations)
        obj = self._get(ref)
        self.writes.append(("scale", ref, replicas))
        obj.replicas = replicas
        if self.auto_ready or replicas == 0:
            obj.ready = replicas
        return self.status(ref)

    async def wait_ready(self, ref: TargetRef, *, timeout: float) -> TargetStatus:
        status = self.status(ref)
        if status.ready < status.desired:
            raise ports.ReadyTimeout(f"`{ref.target}` not ready after {timeout:.0f} s", replace(status))
        return status


def _state(obj: FakeObject) -> State:
    if obj.replicas == 0:
        return State.STOPPING if obj.ready else State.OFF
    return State.ON if obj.ready >= obj.replicas else State.STARTING


class FakeTimers:
    """Records armed deadlines."""

    def __init__(self) -> None:
        self.armed: dict[str, datetime] = {}
        self.history: list[tuple[str, str, datetime | None]] = []

    def arm(self, target: str, deadline: datetime) -> None:
        self.armed[target] = deadline
        self.history.append(("arm", target, deadline))

    def cancel(self, target: str) -> None:
        self.armed.pop(target, None)
        self.history.append(("cancel", target, None))

    def deadline(self, target: str) -> datetime | None:
        return self.armed.get(target)


class RecordingNotifier:
    """Collects what would be told to rooms."""

    def __init__(self) -> None:
        self.sent: list[tuple[str | None, Outcome]] = []

    async def notify(self, room: str | None, outcome: Outcome) -> None:
        self.sent.append((room, outcome))

    def kinds(self) -> list[str]:
        return [type(outcome).__name__ for _, outcome in self.sent]


def names(items: Iterable[object]) -> list[str]:
    """Type names, for compact assertions."""
    return [type(item).__name__ for item in items]

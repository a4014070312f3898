"""The watch cache: what the list+watch streams last saw of every target, and the statuses derived from it.

Owns `Observed` (the few fields kept per object), the state rules (off/starting/on/stopping/missing/unknown),
per-stream health (one stream per namespace and kind), change notification (an `asyncio.Event` that waiters
await, and an `on_change(target)` callback) and the "does the cache reflect my write yet?" question.
Everything here runs on the event loop; the watch threads hand their findings over with
`loop.call_soon_threadsafe`. Pure module: must not import kubernetes, nio, apscheduler or aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from toggler.ports import (
    ANNOTATION_PREFIX,
    RESTORE_REPLICAS,
    STARTED_AT,
    STARTED_BY,
    STARTED_IN,
    STOP_AT,
    State,
    TargetRef,
    TargetStatus,
)

log = logging.getLogger(__name__)

StreamKey = tuple[str, str]
"""(kind, namespace): one list+watch stream."""
ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)."""


@dataclass(frozen=True, slots=True)
class Observed:
    """The fields toggler keeps of one Deployment or StatefulSet."""

    desired: int
    ready: int = 0
    available: int = 0
    updated: int = 0
    pods: int = 0
    generation: int | None = None
    observed_generation: int | None = None
    notes: tuple[tuple[str, str], ...] = ()
    """toggler's own annotations (`toggler/…`), sorted."""
    match_labels: tuple[tuple[str, str], ...] = ()
    """The workload's `spec.selector.matchLabels`, to find its pods."""

    @property
    def generation_current(self) -> bool:
        """The controller has seen the latest spec."""
        if self.generation is None:
            return True
        return self.observed_generation is not None and self.observed_generation >= self.generation

    def with_changes(self, *, replicas: int | None, notes: Mapping[str, str | None]) -> Observed:
        """What the object should look like after our write (for when the watch is slow)."""
        merged = dict(self.notes)
        for key, value in notes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        desired = self.desired if replicas is None else replicas
        return Observed(desired, self.ready, self.available, self.updated, self.pods, self.generation,
                        self.observed_generation, tuple(sorted(merged.items())), self.match_labels)

    def reflects(self, *, replicas: int | None, notes: Mapping[str, str | None]) -> bool:
        """True when this state already shows `replicas` and `notes` (None = key absent)."""
        if replicas is not None and self.desired != replicas:
            return False
        mine = dict(self.notes)
        return all(mine.get(key) == value for key, value in notes.items())


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def observe(obj: Mapping[str, Any]) -> Observed:
    """Extract `Observed` from a raw (JSON) Deployment or StatefulSet."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    notes = meta.get("annotations") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    generation = meta.get("generation")
    observed_generation = status.get("observedGeneration")
    ready = _int(status.get("readyReplicas"))
    available = _int(status.get("availableReplicas"))
    updated = _int(status.get("updatedReplicas"))
    return Observed(
        desired=_int(spec.get("replicas"), 1),
        ready=ready,
        available=available,
        updated=updated,
        pods=max(_int(status.get("replicas")), ready, available),
        generation=generation if isinstance(generation, int) else None,
        observed_generation=observed_generation if isinstance(observed_generation, int) else None,
        notes=tuple(sorted((k, str(v)) for k, v in notes.items() if k.startswith(ANNOTATION_PREFIX))),
        match_labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
    )


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        log.warning("ignoring unreadable timestamp annotation %r", value)
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        log.warning("ignoring unreadable %s annotation %r", RESTORE_REPLICAS, value)
        return None


def state_of(seen: Observed) -> State:
    """off / starting / on / stopping, from one observation."""
    if seen.desired == 0:
        return State.STOPPING if seen.pods > 0 else State.OFF
    if seen.ready >= seen.desired and seen.generation_current:
        return State.ON
    return State.STARTING


def build_status(ref: TargetRef, seen: Observed | None, stream: StreamHealth) -> TargetStatus:
    """The `TargetStatus` of `ref`; `unknown` (with the last seen numbers) while its stream is down."""
    if seen is None:
        if stream.up:
            return TargetStatus(ref, State.MISSING)
        return TargetStatus(ref, State.UNKNOWN, reason=stream.reason)
    notes = dict(seen.notes)
    return TargetStatus(
        ref,
        state_of(seen) if stream.up else State.UNKNOWN,
        desired=seen.desired,
        ready=seen.ready,
        available=seen.available,
        updated=seen.updated,
        generation_current=seen.generation_current,
        stop_at=_time(notes.get(STOP_AT)),
        started_by=notes.get(STARTED_BY),
        started_in=notes.get(STARTED_IN),
        started_at=_time(notes.get(STARTED_AT)),
        restore_replicas=_count(notes.get(RESTORE_REPLICAS)),
        reason=None if stream.up else stream.reason,
    )


def is_ready(status: TargetStatus) -> bool:
    """ready == desired with a current generation (on, or fully off)."""
    return status.state in (State.ON, State.OFF)


@dataclass(slots=True)
class StreamHealth:
    """Is one list+watch stream live, and has it ever listed?"""

    up: bool = False
    warmed: bool = False
    reason: str | None = "watch not started yet"


@dataclass(slots=True)
class _Stream:
    health: StreamHealth = field(default_factory=StreamHealth)
    names: set[str] = field(default_factory=set)


class WatchCache:
    """Targets' last observations and statuses; mutated only on the event loop."""

    def __init__(self, refs: Iterable[TargetRef], *, on_change: Callable[[str], None] | None = None) -> None:
        self._on_change = on_change
        self._refs: dict[ObjectKey, list[TargetRef]] = {}
        self._streams: dict[StreamKey, _Stream] = {}
        self._observed: dict[ObjectKey, Observed] = {}
        self._status: dict[TargetRef, TargetStatus] = {}
        self._changed = asyncio.Event()
        for ref in refs:
            self._refs.setdefault((ref.kind, ref.namespace, ref.name), []).append(ref)
            self._streams.setdefault((ref.kind, ref.namespace), _Stream()).names.add(ref.name)
        for key in self._refs:
            self._refresh(key, notify=False)

    # --- reads ---------------------------------------------------------------------------------------
    def status(self, ref: TargetRef) -> TargetStatus:
        """The cached status; `unknown` for a ref that is not a configured target."""
        found = self._status.get(ref)
        return found if found is not None else TargetStatus(ref, State.UNKNOWN, reason="not a configured target")

    def observed(self, ref: TargetRef) -> Observed | None:
        """The raw observation behind `ref`'s status."""
        return self._observed.get((ref.kind, ref.namespace, ref.name))

    def stream_up(self, ref: TargetRef) -> bool:
        """Is the stream that watches `ref` live?"""
        stream = self._streams.get((ref.kind, ref.namespace))
        return stream is not None and stream.health.up

    def streams(self) -> dict[StreamKey, frozenset[str]]:
        """Every stream and the object names it keeps."""
        return {key: frozenset(stream.names) for key, stream in self._streams.items()}

    @property
    def warmed(self) -> bool:
        """Every stream has listed at least once."""
        return all(stream.health.warmed for stream in self._streams.values())

    def healthy(self) -> bool:
        """Every stream is live now."""
        return all(stream.health.up for stream in self._streams.values())

    def problems(self) -> dict[str, str]:
        """`Deployment/apps` → why that stream is down, for every stream that is."""
        return {f"{kind}/{ns}": stream.health.reason or "down"
                for (kind, ns), stream in self._streams.items() if not stream.health.up}

    def projected(self, ref: TargetRef, *, replicas: int | None, notes: Mapping[str, str | None]) -> TargetStatus:
        """What the status will be once our write shows up (used when the watch lags)."""
        seen = self.observed(ref) or Observed(desired=replicas or 0)
        stream = self._streams.get((ref.kind, ref.namespace))
        health = stream.health if stream is not None else StreamHealth()
        return build_status(ref, seen.with_changes(replicas=replicas, notes=notes), health)

    async def wait_change(self, timeout: float) -> bool:
        """Wait until anything in the cache changes (or `timeout`); False on timeout."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- writes from the watch threads (on the loop) -------------------------------------------------
    def reset(self, stream: StreamKey, items: Mapping[str, Observed]) -> None:
        """A fresh listing of one stream: replaces everything it knew."""
        kind, namespace = stream
        state = self._streams[stream]
        state.health = StreamHealth(up=True, warmed=True, reason=None)
        for name in state.names:
            key = (kind, namespace, name)
            if name in items:
                self._observed[key] = items[name]
            else:
                self._observed.pop(key, None)
        self._refresh_stream(stream)

    def upsert(self, stream: StreamKey, name: str, seen: Observed) -> None:
        """ADDED or MODIFIED."""
        key = (*stream, name)
        if key in self._refs and self._observed.get(key) != seen:
            self._observed[key] = seen
            self._refresh(key)

    def remove(self, stream: StreamKey, name: str) -> None:
        """DELETED."""
        key = (*stream, name)
        if self._observed.pop(key, None) is not None:
            self._refresh(key)

    def down(self, stream: StreamKey, reason: str) -> None:
        """The stream failed; its targets are `unknown` until the next listing."""
        health = self._streams[stream].health
        text = f"watch of namespace {stream[1]} is down ({reason})"
        if health.up or health.reason != text:
            log.warning("watch of %ss in namespace %s is down: %s", stream[0], stream[1], reason)
        health.up = False
        health.reason = text
        self._refresh_stream(stream)

    # --- change propagation -----------------------------------------------------------------------
    def _refresh_stream(self, stream: StreamKey) -> None:
        kind, namespace = stream
        changed = False
        for name in self._streams[stream].names:
            changed |= self._refresh((kind, namespace, name), wake=False)
        if changed:
            self._wake()

    def _refresh(self, key: ObjectKey, *, notify: bool = True, wake: bool = True) -> bool:
        health = self._streams[(key[0], key[1])].health
        seen = self._observed.get(key)
        changed = False
        for ref in self._refs.get(key, ()):
            new = build_status(ref, seen, health)
            if self._status.get(ref) != new:
                self._status[ref] = new
                changed = True
                if notify and self._on_change is not None:
                    self._on_change(ref.target)
        if changed and wake:
            self._wake()
        return changed

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

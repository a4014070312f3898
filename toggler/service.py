"""Use cases: execute a parsed command for a sender in a room, and react to timers and the cluster.

Drives the `Cluster`, `Timers`, `Clock` and `Notifier` seams; one lock per target serialises commands,
timer firings and reactions to external changes. Every cluster error becomes a one-line `Failed`.
Must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from toggler.commands import Command
from toggler.config import Config
from toggler.outcomes import (
    Extended,
    Failed,
    HelpText,
    Listing,
    NothingToExtend,
    NotReady,
    Outcome,
    Ready,
    Refused,
    ScheduledStart,
    Started,
    StartedOutside,
    StatusReport,
    Stopped,
    StoppedMany,
    StoppedOutside,
    StopWarning,
    TargetInfo,
)
from toggler.policy import Policy
from toggler.ports import (
    RESTORE_REPLICAS,
    STARTED_AT,
    STARTED_BY,
    STARTED_IN,
    STOP_AT,
    Annotations,
    Clock,
    Cluster,
    ClusterError,
    NotFound,
    Notifier,
    ReadyTimeout,
    State,
    TargetRef,
    TargetStatus,
    Timers,
    Unavailable,
)

log = logging.getLogger(__name__)
OVERDUE_GRACE = timedelta(seconds=30)


def rfc3339(moment: datetime) -> str:
    """UTC timestamp as written into annotations: `2026-12-03T18:40:00Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Context:
    """Who asked, where, and which event (for logs)."""

    sender: str
    room_id: str
    event_id: str | None = None


class Service:
    """The use cases behind every chat command and every timer."""

    def __init__(
        self,
        config: Config,
        *,
        cluster: Cluster,
        timers: Timers,
        clock: Clock,
        policy: Policy,
        notifier: Notifier | None = None,
        dry_run: bool | None = None,
    ) -> None:
        self.config = config
        self.cluster = cluster
        self.timers = timers
        self.clock = clock
        self.policy = policy
        self.notifier = notifier
        self.dry_run = config.defaults.dry_run if dry_run is None else dry_run
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.observers: list[Callable[[Command, Outcome], None]] = []
        """Called with every executed command and its outcome (metrics)."""

    # --- lookups -------------------------------------------------------------------------------
    def ref(self, target: str) -> TargetRef:
        """Where `target` lives."""
        spec = self.config.targets[target]
        return TargetRef(target, spec.kind, spec.namespace, self.config.object_name(target))

    def status(self, target: str) -> TargetStatus:
        """Cached status of `target` (no API call)."""
        return self.cluster.status(self.ref(target))

    def _writable(self, target: str) -> TargetStatus:
        """The status to act on; never guess from a watch that is down or an object that is gone."""
        status = self.status(target)
        if status.state is State.UNKNOWN:
            raise Unavailable(f"cannot see `{target}` right now (the cluster watch is down); try again shortly")
        if status.state is State.MISSING:
            raise NotFound(f"`{target}` ({status.ref.describe()}) does not exist")
        return status

    def notify_room(self, status: TargetStatus) -> str | None:
        """Where unsolicited news about a target goes: the room that started it, else `notify_room`."""
        return status.started_in or self.config.targets[status.ref.target].notify_room

    # --- the command dispatcher -------------------------------------------------------------------
    async def execute(self, command: Command, ctx: Context) -> Outcome:
        """Run one parsed command; exactly one outcome, never an exception for cluster errors."""
        outcome = await self._execute(command, ctx)
        for observe in self.observers:
            observe(command, outcome)
        return outcome

    async def _execute(self, command: Command, ctx: Context) -> Outcome:
        if not self.policy.allowed(ctx.sender, ctx.room_id, command.action, command.target):
            return Refused()
        usable = self.policy.usable_targets(ctx.sender, ctx.room_id)
        if command.action == "help":
            return HelpText(command.topic, usable)
        if command.action == "list":
            return Listing(tuple(self._info(name) for name in usable))
        if command.action == "status":
            names = (command.target,) if command.target else usable
            return StatusReport(tuple(self.status(name) for name in names))
        if command.action == "stop" and command.all_targets:
            return await self._stop_all(usable, ctx)
        assert command.target is not None, "the parser always resolves a target"
        try:
            async with self._locks[command.target]:
                return await self._mutate(command, command.target, ctx)
        except ClusterError as exc:
            log.warning("%s %s failed for %s in %s (event %s): %s",
                        command.action, command.target, ctx.sender, ctx.room_id, ctx.event_id, exc)
            return Failed(command.target, str(exc))

    async def _mutate(self, command: Command, target: str, ctx: Context) -> Outcome:
        if command.action == "start":
            return await self._start(target, command.duration, ctx)
        if command.action == "stop":
            return await self._stop(target, ctx)
        assert command.duration is not None
        return await self._extend(target, command.duration, ctx)

    def _info(self, name: str) -> TargetInfo:
        spec = self.config.targets[name]
        return TargetInfo(name, spec.aliases, spec.kind, spec.namespace, spec.description,
                          self.config.auto_stop_after(name))

    def _capped(self, target: str, wanted: timedelta) -> tuple[timedelta, timedelta | None]:
        cap = self.config.max_duration(target)
        return (cap, cap) if wanted > cap else (wanted, None)

    # --- start ---------------------------------------------------------------------------------------
    async def _start(self, target: str, duration: timedelta | None, ctx: Context) -> Outcome:
        current = self._writable(target)
        now = self.clock.now()
        wanted = duration if duration is not None else self.config.auto_stop_after(target)
        length, capped = self._capped(target, wanted) if wanted is not None else (None, None)
        deadline = now + length if length is not None else None
        if current.desired > 0:
            return await self._already_on(current, duration, deadline, capped)
        replicas = current.restore_replicas or self.config.targets[target].replicas
        notes: dict[str, str | None] = {
            STOP_AT: rfc3339(deadline) if deadline else None,
            STARTED_BY: ctx.sender, STARTED_IN: ctx.room_id, STARTED_AT: rfc3339(now),
        }
        status = await self._scale(current, replicas, notes, who=ctx.sender, room=ctx.room_id, deadline=deadline)
        self._arm(target, deadline)
        return Started(status, replicas, deadline, capped_to=capped, dry_run=self.dry_run)

    async def _already_on(
        self, current: TargetStatus, duration: timedelta | None, deadline: datetime | None, capped: timedelta | None
    ) -> Outcome:
        if duration is None or deadline is None:
            return Started(current, current.desired, current.stop_at, already_on=True)
        await self._annotate(current, {STOP_AT: rfc3339(deadline)})
        self._arm(current.ref.target, deadline)
        return Started(current, current.desired, deadline, already_on=True, capped_to=capped, dry_run=self.dry_run)

    # --- stop ----------------------------------------------------------------------------------------
    async def _stop(self, target: str, ctx: Context | None, reason: str | None = None) -> Stopped:
        current = self._writable(target)
        if current.desired == 0:
            if current.stop_at is not None:
                await self._annotate(current, {STOP_AT: None})
            self._disarm(target)
            return Stopped(target, 0, already_off=True, reason=reason)
        notes = {STOP_AT: None, RESTORE_REPLICAS: str(current.desired)}
        who = ctx.sender if ctx else f"toggler ({reason})"
        await self._scale(current, 0, notes, who=who, room=ctx.room_id if ctx else None, deadline=None)
        self._disarm(target)
        overdue = self._overdue(current.stop_at) if reason == "deadline" else None
        return Stopped(target, current.desired, reason=reason, overdue_by=overdue, dry_run=self.dry_run)

    def _overdue(self, deadline: datetime | None) -> timedelta | None:
        if deadline is None:
            return None
        late = self.clock.now() - deadline
        return late if late > OVERDUE_GRACE else None

    async def _stop_all(self, usable: tuple[str, ...], ctx: Context) -> StoppedMany:
        results: list[Stopped | Failed] = []
        for name in usable:
            if not self.policy.allowed(ctx.sender, ctx.room_id, "stop", name):
                continue
            try:
                async with self._locks[name]:
                    results.append(await self._stop(name, ctx))
            except ClusterError as exc:
                results.append(Failed(name, str(exc)))
        return StoppedMany(tuple(results))

    # --- extend --------------------------------------------------------------------------------------
    async def _extend(self, target: str, by: timedelta, ctx: Context) -> Outcome:
        current = self._writable(target)
        if current.desired == 0 or current.stop_at is None:
            return NothingToExtend(target, is_off=current.desired == 0)
        now = self.clock.now()
        base = max(current.stop_at, now)
        remaining, capped = self._capped(target, base + by - now)
        deadline = now + remaining
        await self._annotate(current, {STOP_AT: rfc3339(deadline)})
        self._arm(target, deadline)
        log.info("%s extended %s in %s until %s", ctx.sender, current.ref.describe(), ctx.room_id, rfc3339(deadline))
        return Extended(target, deadline, capped_to=capped, dry_run=self.dry_run)

    # --- readiness, timers and the cluster's own changes ---------------------------------------------
    async def wait_ready(self, target: str) -> Ready | NotReady | Failed:
        """After `start`: wait for readiness (or `ready_timeout`)."""
        begun = self.clock.now()
        timeout = self.config.defaults.ready_timeout.total_seconds()
        try:
            status = await self.cluster.wait_ready(self.ref(target), timeout=timeout)
        except ReadyTimeout as exc:
            return NotReady(exc.status, self.clock.now() - begun, str(exc))
        except ClusterError as exc:
            return Failed(target, str(exc))
        return Ready(status, self.clock.now() - begun, status.stop_at)

    async def auto_stop(self, target: str, *, reason: str = "deadline", due: datetime | None = None) -> bool:
        """Timer or schedule stop; tells the room. False when it failed (the caller retries).

        `due` is the deadline a timer fired for: when the target's `stop-at` was cleared or moved later
        while the firing waited for the lock (an `extend` won the race), nothing happens. While the watch is
        down (state unknown) nothing is guessed: False, so the timer retries.
        """
        async with self._locks[target]:
            before = self.status(target)
            if before.state == State.UNKNOWN:
                log.warning("auto-stop of %s (%s) postponed: %s", target, reason, before.reason or "state unknown")
                return False
            if due is not None and (before.stop_at is None or before.stop_at > due):
                log.info("auto-stop of %s for %s skipped: its deadline was moved or cleared", target, rfc3339(due))
                return True
            try:
                outcome: Outcome = await self._stop(target, None, reason)
            except ClusterError as exc:
                log.error("auto-stop of %s (%s) failed: %s", target, reason, exc)
                await self._tell(self.notify_room(before), Failed(target, f"auto-stop failed: {exc}"))
                return False
        if not (isinstance(outcome, Stopped) and outcome.already_off):
            await self._tell(self.notify_room(before), outcome)
        return True

    async def scheduled_start(self, target: str) -> bool:
        """Cron start: like `start` by toggler itself; tells `notify_room`."""
        ctx = Context("toggler (schedule)", self.config.targets[target].notify_room or "")
        async with self._locks[target]:
            try:
                started = await self._start(target, None, ctx)
                outcome = ScheduledStart(started) if isinstance(started, Started) else started
            except ClusterError as exc:
                outcome = Failed(target, f"scheduled start failed: {exc}")
        await self._tell(self.config.targets[target].notify_room, outcome)
        return not isinstance(outcome, Failed)

    async def warn(self, target: str) -> None:
        """The warning `warn_before` an auto-stop."""
        status = self.status(target)
        if status.desired > 0 and status.stop_at is not None:
            await self._tell(self.notify_room(status), StopWarning(target, status.stop_at))

    async def reconcile(self, target: str) -> None:
        """Bring timers in line with the cluster: re-arm, adopt outside starts, drop outside stops."""
        async with self._locks[target]:
            try:
                await self._reconcile(self.status(target))
            except ClusterError as exc:
                log.warning("reconciling %s failed: %s", target, exc)

    async def _reconcile(self, status: TargetStatus) -> None:
        target = status.ref.target
        if status.state in ("missing", "unknown"):
            return
        if status.desired > 0 and status.stop_at is not None:
            if self.timers.deadline(target) != status.stop_at:
                self.timers.arm(target, status.stop_at)
        elif status.desired > 0:
            after = self.config.auto_stop_after(target)
            if after is not None and not self.dry_run:
                deadline = self.clock.now() + after
                await self._annotate(status, {STOP_AT: rfc3339(deadline), STARTED_AT: rfc3339(self.clock.now())})
                self.timers.arm(target, deadline)
                log.info("%s was started outside toggler (%d replicas); stops at %s",
                         status.ref.describe(), status.desired, rfc3339(deadline))
                await self._tell(self.notify_room(status), StartedOutside(target, status.desired, deadline))
        elif status.stop_at is not None:
            if not self.dry_run:
                await self._annotate(status, {STOP_AT: None})
            self.timers.cancel(target)
            log.info("%s was scaled to 0 outside toggler; auto-stop cancelled", status.ref.describe())
            await self._tell(self.notify_room(status), StoppedOutside(target))

    # --- writes (dry-run aware) ---------------------------------------------------------------------
    async def _scale(
        self, current: TargetStatus, replicas: int, notes: Annotations, *, who: str, room: str | None,
        deadline: datetime | None,
    ) -> TargetStatus:
        verb = "would scale" if self.dry_run else "scaled"
        log.info("%s %s %s in %s: replicas %d -> %d, deadline %s", who, verb, current.ref.describe(), room,
                 current.desired, replicas, rfc3339(deadline) if deadline else "none")
        if self.dry_run:
            return current
        return await self.cluster.scale(current.ref, replicas, annotations=notes)

    async def _annotate(self, current: TargetStatus, notes: Annotations) -> None:
        if self.dry_run:
            log.info("dry-run: would annotate %s with %s", current.ref.describe(), dict(notes))
            return
        await self.cluster.annotate(current.ref, notes)

    def _arm(self, target: str, deadline: datetime | None) -> None:
        if self.dry_run:
            return
        if deadline is None:
            self.timers.cancel(target)
        else:
            self.timers.arm(target, deadline)

    def _disarm(self, target: str) -> None:
        if not self.dry_run:
            self.timers.cancel(target)

    async def _tell(self, room: str | None, outcome: Outcome) -> None:
        if self.notifier is None:
            return
        try:
            await self.notifier.notify(room, outcome)
        except Exception:
            log.exception("could not tell room %s about %s", room, type(outcome).__name__)

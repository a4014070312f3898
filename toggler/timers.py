"""Auto-stop deadlines, their warnings and cron schedules on APScheduler 3.x (`AsyncIOScheduler`).

Owns the `Timers` seam of `toggler.ports`. The job store is in memory and only a cache: the deadlines
live as `toggler/stop-at` annotations on the targets, and `Service.reconcile` re-arms them after a restart.
Every job is a coroutine on the event loop that calls back into the service (`auto_stop`, `warn`,
`scheduled_start`); every failure is logged, a failed auto-stop is retried with backoff until it succeeds
or the deadline is moved or cancelled. Cron expressions use standard crontab semantics (weekday 0 and 7
are Sunday) and are translated to APScheduler's numbering (0 is Monday) here.
Adapter module: may import apscheduler; must not import nio, kubernetes or aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from toggler.config import Config
from toggler.cron import MONTHS, WEEKDAYS, validate_cron

log = logging.getLogger(__name__)
_APS_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTH_NAME = re.compile(r"[a-z]{3}", re.IGNORECASE)
_PARALLEL = 100
"""Deadline jobs may overlap (the service serialises per target); never skip a run for max_instances."""


class Callbacks(Protocol):
    """What the timers call when they fire (implemented by `toggler.service.Service`)."""

    async def auto_stop(self, target: str, *, reason: str = ..., due: datetime | None = ...) -> bool:
        """Stop `target`; False when it failed."""
        ...

    async def warn(self, target: str) -> None:
        """Warn the room that `target` stops soon."""
        ...

    async def scheduled_start(self, target: str) -> bool:
        """Start `target` for its schedule; False when it failed."""
        ...


def job_id(kind: str, target: str) -> str:
    """Job ids: `stop:web`, `warn:web`, `schedule-stop:web`, `schedule-start:web`, `retry-schedule-stop:web`."""
    return f"{kind}:{target}"


# --- cron translation ------------------------------------------------------------------------------
def _weekday_number(token: str) -> int:
    low = token.lower()
    return WEEKDAYS.index(low) if low in WEEKDAYS else int(token)


def _weekdays(item: str) -> set[int]:
    base, _, step = item.partition("/")
    stride = int(step) if step else 1
    if base == "*":
        first, last = 0, 6
    else:
        start, dash, end = base.partition("-")
        first = _weekday_number(start)
        last = _weekday_number(end) if dash else (7 if step else first)
    return {day % 7 for day in range(first, last + 1, stride)}


def translate_day_of_week(field: str) -> str:
    """Standard crontab weekday field (0/7 = Sunday, names, ranges, steps) → APScheduler 3.x names.

    `0` → `sun`, `1-5` → `mon,tue,wed,thu,fri`, `5-7` → `fri,sat,sun`, `*` → `*`. Expanding into names
    avoids APScheduler's own numbering (0 = Monday), which `CronTrigger.from_crontab` gets wrong.
    """
    days: set[int] = set()
    for item in field.split(","):
        days |= _weekdays(item)
    if len(days) == 7:
        return "*"
    return ",".join(name for name in _APS_WEEKDAYS if WEEKDAYS.index(name) in days)


def _month_numbers(field: str) -> str:
    return _MONTH_NAME.sub(lambda m: str(MONTHS.index(m.group().lower()) + 1), field)


def cron_trigger(expression: str, timezone: str) -> BaseTrigger:
    """A trigger firing like crontab would for `expression` in `timezone`.

    As in Vixie cron, when both day-of-month and day-of-week are restricted (neither starts with `*`),
    a day matching either fires (APScheduler alone would require both).
    """
    minute, hour, day, month, weekday = validate_cron(expression).split()
    zone = ZoneInfo(timezone)
    common: dict[str, Any] = {"minute": minute, "hour": hour, "month": _month_numbers(month), "timezone": zone}
    weekdays = translate_day_of_week(weekday)
    if day.startswith("*") or weekday.startswith("*"):
        return CronTrigger(day=day, day_of_week=weekdays, **common)
    return OrTrigger([CronTrigger(day=day, **common), CronTrigger(day_of_week=weekdays, **common)])


def _now() -> datetime:
    return datetime.now(UTC)


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"


# --- the adapter -------------------------------------------------------------------------------------
class SchedulerTimers:
    """The `Timers` seam on an `AsyncIOScheduler`, plus the targets' cron schedules.

    Build it, build the `Service` with it, `bind(service)`, then `start()` inside the running loop, then
    `await service.reconcile(name)` for every target once the cluster cache is warm. `await shutdown()`.
    """

    def __init__(
        self,
        config: Config,
        callbacks: Callbacks | None = None,
        *,
        misfire_grace: timedelta = timedelta(minutes=10),
        retry_first: timedelta = timedelta(seconds=30),
        retry_max: timedelta = timedelta(minutes=5),
        shutdown_grace: timedelta = timedelta(seconds=5),
    ) -> None:
        self._config = config
        self._callbacks = callbacks
        self._grace = max(timedelta(seconds=1), misfire_grace)
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._shutdown_grace = shutdown_grace
        self._deadlines: dict[str, datetime] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)

    def bind(self, callbacks: Callbacks) -> None:
        """Set the service the jobs call (it needs the timers first, hence this second step)."""
        self._callbacks = callbacks

    @property
    def scheduler(self) -> AsyncIOScheduler:
        """The underlying scheduler (diagnostics and tests)."""
        return self._scheduler

    @property
    def running(self) -> bool:
        """Whether the scheduler runs."""
        return bool(self._scheduler.running)

    def start(self) -> None:
        """Add the cron schedules and start; call from inside the running event loop."""
        if self._callbacks is None:
            raise RuntimeError("bind() the service before start()")
        for name, spec in self._config.targets.items():
            if spec.schedule is None:
                continue
            zone = self._config.schedule_timezone(name)
            for kind, expression in (("stop", spec.schedule.stop), ("start", spec.schedule.start)):
                if expression is not None:
                    self._add_schedule(name, kind, expression, zone)
        self._scheduler.start()
        log.info("timers started (%d jobs)", len(self._scheduler.get_jobs()))

    async def shutdown(self) -> None:
        """Stop firing, give running jobs `shutdown_grace` to finish, cancel the rest. Never hangs."""
        if not self._scheduler.running:
            return
        self._scheduler.pause()
        busy = {task for task in self._inflight if not task.done() and task is not asyncio.current_task()}
        if busy:
            _, late = await asyncio.wait(busy, timeout=self._shutdown_grace.total_seconds())
            if late:
                log.warning("cancelling %d timer job(s) still running at shutdown", len(late))
        self._scheduler.shutdown(wait=False)
        for _ in range(10):  # AsyncIOScheduler shuts down in a loop callback
            if not self._scheduler.running:
                break
            await asyncio.sleep(0)
        self._deadlines.clear()
        log.info("timers stopped")

    # --- the Timers seam -------------------------------------------------------------------------------
    def arm(self, target: str, deadline: datetime) -> None:
        """Schedule (or move) the auto-stop of `target` and its warning; a past deadline fires at once."""
        deadline = deadline.astimezone(UTC)
        self._deadlines[target] = deadline
        self._add_once(job_id("stop", target), self._fire_stop, deadline, target=target, deadline=deadline)
        warn_at = deadline - self._config.defaults.warn_before
        if warn_at > _now():
            self._add_once(job_id("warn", target), self._fire_warn, warn_at, target=target, deadline=deadline)
        else:
            self._remove(job_id("warn", target))
        log.debug("armed %s for %s (warning at %s)", target, deadline.isoformat(), warn_at.isoformat())

    def cancel(self, target: str) -> None:
        """Drop the auto-stop (and pending retries) and the warning of `target`."""
        if self._deadlines.pop(target, None) is not None:
            log.debug("cancelled the auto-stop of %s", target)
        self._remove(job_id("stop", target))
        self._remove(job_id("warn", target))

    def deadline(self, target: str) -> datetime | None:
        """The armed deadline of `target` (kept while a failed auto-stop is being retried)."""
        return self._deadlines.get(target)

    # --- jobs --------------------------------------------------------------------------------------------
    async def _fire_stop(self, target: str, deadline: datetime, attempt: int = 0) -> None:
        with self._tracked():
            if self._deadlines.get(target) != deadline:
                log.info("auto-stop of %s for %s is stale; skipped", target, deadline.isoformat())
                return
            try:
                ok = await self._service().auto_stop(target, reason="deadline", due=deadline)
            except Exception:
                log.exception("auto-stop of %s raised", target)
                ok = False
            if ok:
                if self._deadlines.get(target) == deadline:
                    del self._deadlines[target]
                return
            if self._deadlines.get(target) != deadline:
                log.info("auto-stop of %s failed but its deadline was moved or cancelled meanwhile", target)
                return
            delay = self._backoff(attempt)
            log.warning("auto-stop of %s failed (attempt %d); retrying in %s", target, attempt + 1, _seconds(delay))
            self._add_once(job_id("stop", target), self._fire_stop, _now() + delay,
                           target=target, deadline=deadline, attempt=attempt + 1)

    async def _fire_warn(self, target: str, deadline: datetime) -> None:
        with self._tracked():
            if self._deadlines.get(target) != deadline or _now() >= deadline:
                return
            try:
                await self._service().warn(target)
            except Exception:
                log.exception("warning about the auto-stop of %s raised", target)

    async def _fire_schedule(self, target: str, kind: str, attempt: int = 0, first: datetime | None = None) -> None:
        with self._tracked():
            log.info("schedule: %s %s", kind, target)
            service = self._service()
            try:
                ok = await (service.auto_stop(target, reason="schedule") if kind == "stop"
                            else service.scheduled_start(target))
            except Exception:
                log.exception("scheduled %s of %s raised", kind, target)
                ok = False
            if ok:
                return
            first = first or _now()
            delay = self._backoff(attempt)
            if _now() + delay - first > self._grace:
                log.error("scheduled %s of %s failed %d times; giving up until its next run", kind, target, attempt + 1)
                return
            log.warning("scheduled %s of %s failed (attempt %d); retrying in %s",
                        kind, target, attempt + 1, _seconds(delay))
            self._add_once(job_id(f"retry-schedule-{kind}", target), self._fire_schedule, _now() + delay,
                           target=target, kind=kind, attempt=attempt + 1, first=first)

    # --- helpers -----------------------------------------------------------------------------------------
    def _add_schedule(self, target: str, kind: str, expression: str, zone: str) -> None:
        trigger = cron_trigger(expression, zone)
        now = _now()
        options: dict[str, Any] = {}
        missed = trigger.get_next_fire_time(None, now - self._grace)
        if missed is not None and missed <= now:
            log.info("scheduled %s of %s at %s was missed; running it now", kind, target, missed.isoformat())
            options["next_run_time"] = missed
        self._scheduler.add_job(
            self._fire_schedule, trigger, id=job_id(f"schedule-{kind}", target), name=f"schedule {kind} {target}",
            kwargs={"target": target, "kind": kind}, replace_existing=True, coalesce=True, max_instances=1,
            misfire_grace_time=int(self._grace.total_seconds()), **options,
        )

    def _add_once(self, ident: str, func: Any, when: datetime, **kwargs: Any) -> None:
        self._scheduler.add_job(
            func, DateTrigger(run_date=when, timezone=UTC), id=ident, name=ident, kwargs=kwargs,
            replace_existing=True, coalesce=True, max_instances=_PARALLEL, misfire_grace_time=None,
        )

    def _remove(self, ident: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(ident)

    def _backoff(self, attempt: int) -> timedelta:
        return min(self._retry_first * (1 << min(attempt, 20)), self._retry_max)

    def _service(self) -> Callbacks:
        if self._callbacks is None:
            raise RuntimeError("timers fired before bind()")
        return self._callbacks

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        """Count the current task as an in-flight job while the block runs (for `shutdown`)."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            yield
        finally:
            self._inflight.discard(task)

    def _on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("job %s missed its run at %s (more than the grace window late)",
                        event.job_id, getattr(event, "scheduled_run_time", "?"))
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.error("job %s skipped: already running", event.job_id)
        else:
            log.error("job %s failed: %r", event.job_id, getattr(event, "exception", None))

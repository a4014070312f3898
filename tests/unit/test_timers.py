"""SchedulerTimers (real APScheduler) driving the real Service over FakeCluster: deadlines, warnings,
retries, restarts and cron schedules, with short real durations. Conditions are awaited with timeouts;
nothing asserts how fast the machine is, only what happened and in which order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from tests.fakes import FakeCluster, RecordingNotifier
from toggler.commands import Command
from toggler.config import Config, Defaults
from toggler.outcomes import (
    Extended,
    Failed,
    Outcome,
    ScheduledStart,
    Started,
    StartedOutside,
    Stopped,
    StopWarning,
)
from toggler.policy import Policy
from toggler.ports import STARTED_BY, STARTED_IN, STOP_AT, Unavailable
from toggler.service import Context, Service, rfc3339
from toggler.timers import SchedulerTimers, cron_trigger, job_id, translate_day_of_week

ROOM = "!dev:example.org"
OPS = "!ops:example.org"
ALICE = "@alice:example.org"
CTX = Context(ALICE, ROOM, "$event")
BERLIN = ZoneInfo("Europe/Berlin")
FAST_RETRY = {"retry_first": timedelta(seconds=0.2), "retry_max": timedelta(seconds=0.4)}


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class StampedNotifier(RecordingNotifier):
    """Records what was told, and when."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[datetime] = []

    async def notify(self, room: str | None, outcome: Outcome) -> None:
        self.at.append(datetime.now(UTC))
        await super().notify(room, outcome)

    def of(self, kind: type) -> list[tuple[str | None, Any, datetime]]:
        return [(room, out, at) for (room, out), at in zip(self.sent, self.at, strict=True) if isinstance(out, kind)]


def make_config(targets: dict[str, Any] | None = None, **defaults: Any) -> Config:
    return Config(
        matrix={"homeserver": "http://127.0.0.1:1", "user_id": "@toggler:example.org", "password": "x"},
        defaults=Defaults(**{"warn_before": "1s", **defaults}),
        targets=targets or {"web": {"namespace": "apps", "replicas": 2}, "db": {"namespace": "apps"}},
        rooms={ROOM: {"users": [ALICE], "targets": ["*"]}, OPS: {}},
    )


def make_cluster(**replicas: int) -> FakeCluster:
    cluster = FakeCluster()
    for name in ("web", "db", "api"):
        cluster.add("apps", name, replicas=replicas.get(name, 0))
    return cluster


class Rig:
    """Timers + Service + notifier, started and shut down around a test body."""

    def __init__(self, config: Config, cluster: FakeCluster, **options: Any) -> None:
        self.cluster = cluster
        self.timers = SchedulerTimers(config, **{**FAST_RETRY, **options})
        self.notifier = StampedNotifier()
        self.service = Service(config, cluster=cluster, timers=self.timers, clock=SystemClock(),
                               policy=Policy(config), notifier=self.notifier)
        self.timers.bind(self.service)

    async def __aenter__(self) -> Rig:
        self.timers.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.timers.shutdown()

    def replicas(self, name: str) -> int:
        return self.cluster.objects[("apps", name)].replicas

    def notes(self, name: str) -> dict[str, str]:
        return self.cluster.objects[("apps", name)].annotations


async def until(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    """Poll `predicate` every 20 ms; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


async def start(rig: Rig, seconds: float, target: str = "web") -> Started:
    outcome = await rig.service.execute(Command("start", target, duration=timedelta(seconds=seconds)), CTX)
    assert isinstance(outcome, Started), outcome
    assert outcome.deadline is not None
    return outcome


# --- deadlines ------------------------------------------------------------------------------------------
async def test_deadline_stops_the_target_and_tells_the_room() -> None:
    async with Rig(make_config(), make_cluster()) as rig:
        started = await start(rig, 1.5)
        assert rig.timers.deadline("web") == started.deadline
        assert rig.timers.scheduler.get_job(job_id("stop", "web")).next_run_time == started.deadline

        await until(lambda: rig.notifier.of(Stopped))
        [(room, stopped, at)] = rig.notifier.of(Stopped)
        assert (room, stopped.target, stopped.reason, stopped.previous) == (ROOM, "web", "deadline", 2)
        assert stopped.overdue_by is None
        assert at >= started.deadline
        assert rig.replicas("web") == 0
        assert STOP_AT not in rig.notes("web")
        assert rig.timers.deadline("web") is None
        assert rig.timers.scheduler.get_jobs() == []


async def test_warning_fires_warn_before_the_deadline() -> None:
    async with Rig(make_config(warn_before="1s"), make_cluster()) as rig:
        started = await start(rig, 2)
        assert started.deadline is not None
        await until(lambda: rig.notifier.of(Stopped))
        assert rig.notifier.kinds() == ["StopWarning", "Stopped"]
        [(room, warning, warned_at)] = rig.notifier.of(StopWarning)
        [(_, _, stopped_at)] = rig.notifier.of(Stopped)
        assert room == ROOM
        assert warning.deadline == started.deadline.replace(microsecond=0)
        assert started.deadline - timedelta(seconds=1) <= warned_at < stopped_at


async def test_no_warning_when_its_time_has_already_passed() -> None:
    async with Rig(make_config(warn_before="1s"), make_cluster()) as rig:
        await start(rig, 0.5)
        assert rig.timers.scheduler.get_job(job_id("warn", "web")) is None
        await until(lambda: rig.notifier.of(Stopped))
        assert rig.notifier.kinds() == ["Stopped"]


async def test_extend_moves_the_job() -> None:
    async with Rig(make_config(), make_cluster()) as rig:
        started = await start(rig, 2)
        extended = await rig.service.execute(Command("extend", "web", duration=timedelta(seconds=1)), CTX)
        assert isinstance(extended, Extended)
        assert started.deadline is not None and extended.deadline > started.deadline
        assert rig.timers.deadline("web") == extended.deadline
        assert rig.timers.scheduler.get_job(job_id("stop", "web")).next_run_time == extended.deadline

        await until(lambda: rig.notifier.of(Stopped))
        [(_, _, stopped_at)] = rig.notifier.of(Stopped)
        assert stopped_at >= extended.deadline
        await asyncio.sleep(0.2)
        assert len(rig.notifier.of(Stopped)) == 1


async def test_stop_cancels_the_deadline() -> None:
    async with Rig(make_config(), make_cluster()) as rig:
        started = await start(rig, 2)
        assert started.deadline is not None
        stopped = await rig.service.execute(Command("stop", "web"), CTX)
        assert isinstance(stopped, Stopped) and stopped.reason is None
        assert rig.timers.deadline("web") is None
        assert rig.timers.scheduler.get_jobs() == []

        await asyncio.sleep((started.deadline - datetime.now(UTC)).total_seconds() + 0.5)
        assert rig.notifier.sent == []
        assert [write for write in rig.cluster.writes if write[0] == "scale"] == [
            ("scale", rig.service.ref("web"), 2), ("scale", rig.service.ref("web"), 0)]


async def test_arm_and_cancel_directly() -> None:
    async with Rig(make_config(), make_cluster()) as rig:
        deadline = datetime.now(UTC) + timedelta(minutes=10)
        rig.timers.arm("web", deadline)
        assert rig.timers.deadline("web") == deadline
        assert {job.id for job in rig.timers.scheduler.get_jobs()} == {"stop:web", "warn:web"}
        rig.timers.arm("web", deadline + timedelta(minutes=1))
        assert len(rig.timers.scheduler.get_jobs()) == 2
        rig.timers.cancel("web")
        rig.timers.cancel("web")
        rig.timers.cancel("db")
        assert rig.timers.deadline("web") is None
        assert rig.timers.scheduler.get_jobs() == []


async def test_overdue_deadline_fires_at_once_and_says_so() -> None:
    cluster = make_cluster(web=2)
    deadline = datetime.now(UTC) - timedelta(minutes=3)
    cluster.objects[("apps", "web")].annotations.update({STOP_AT: rfc3339(deadline), STARTED_IN: ROOM,
                                                         STARTED_BY: ALICE})
    async with Rig(make_config(), cluster) as rig:
        await rig.service.reconcile("web")
        assert rig.timers.deadline("web") == deadline.replace(microsecond=0)
        await until(lambda: rig.notifier.of(Stopped))
        [(room, stopped, _)] = rig.notifier.of(Stopped)
        assert room == ROOM and stopped.reason == "deadline"
        assert stopped.overdue_by is not None and stopped.overdue_by >= timedelta(minutes=2, seconds=59)
        assert rig.replicas("web") == 0


async def test_failed_auto_stop_is_retried_reported_and_finally_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="toggler")
    async with Rig(make_config(), make_cluster()) as rig:
        started = await start(rig, 0.5)
        rig.cluster.fail_with = Unavailable("cluster unreachable")

        await until(lambda: len(rig.notifier.of(Failed)) >= 3)
        assert {(room, out.message) for room, out, _ in rig.notifier.of(Failed)} == {
            (ROOM, "auto-stop failed: cluster unreachable")}
        assert rig.timers.deadline("web") == started.deadline
        assert rig.replicas("web") == 2
        assert "auto-stop of web failed (attempt 2); retrying in 0.4 s" in caplog.text

        rig.cluster.fail_with = None
        await until(lambda: rig.notifier.of(Stopped))
        assert rig.replicas("web") == 0
        assert rig.timers.deadline("web") is None
        assert rig.timers.scheduler.get_jobs() == []


async def test_stale_firing_after_an_extend_does_nothing() -> None:
    async with Rig(make_config(), make_cluster()) as rig:
        started = await start(rig, 60)
        await rig.service.execute(Command("extend", "web", duration=timedelta(minutes=10)), CTX)
        assert await rig.service.auto_stop("web", due=started.deadline) is True
        assert rig.replicas("web") == 2
        assert rig.notifier.sent == []


async def test_auto_stop_while_the_watch_is_down_is_postponed() -> None:
    async with Rig(make_config(), make_cluster()) as rig:
        await start(rig, 0.3)
        rig.cluster.watch_down = True
        await asyncio.sleep(0.8)
        assert rig.replicas("web") == 2
        assert rig.timers.deadline("web") is not None
        rig.cluster.watch_down = False
        await until(lambda: rig.notifier.of(Stopped))
        assert rig.replicas("web") == 0


async def test_restart_rebuilds_deadlines_from_annotations() -> None:
    cluster = make_cluster()
    config = make_config()
    async with Rig(config, cluster) as first:
        started = await start(first, 3)
    assert not first.timers.running
    assert cluster.objects[("apps", "web")].annotations[STOP_AT] == rfc3339(started.deadline)

    async with Rig(config, cluster) as second:
        for name in config.targets:
            await second.service.reconcile(name)
        assert second.timers.deadline("web") == started.deadline.replace(microsecond=0)
        assert second.timers.deadline("db") is None
        await until(lambda: second.notifier.of(Stopped))
        [(room, stopped, _)] = second.notifier.of(Stopped)
        assert (room, stopped.reason, stopped.overdue_by) == (ROOM, "deadline", None)
        assert cluster.objects[("apps", "web")].replicas == 0
    assert first.notifier.of(Stopped) == []


async def test_outside_start_is_adopted_with_a_deadline() -> None:
    config = make_config(targets={"web": {"namespace": "apps", "auto_stop_after": "2s", "notify_room": OPS}},
                         warn_before="1s")
    async with Rig(config, make_cluster(web=3)) as rig:
        await rig.service.reconcile("web")
        [(room, adopted, _)] = rig.notifier.of(StartedOutside)
        assert room == OPS and adopted.deadline == rig.timers.deadline("web")
        await until(lambda: rig.notifier.of(Stopped))
        assert rig.notifier.kinds() == ["StartedOutside", "StopWarning", "Stopped"]


# --- job mechanics --------------------------------------------------------------------------------------
class Scripted:
    """Callbacks that return (or raise) scripted results and record where they ran."""

    def __init__(self, *results: object, hold: float = 0.0) -> None:
        self.results = list(results)
        self.calls: list[tuple[str, str, str]] = []
        self.threads: set[int] = set()
        self.hold = hold
        self.finished = 0
        self.cancelled = False

    async def auto_stop(self, target: str, *, reason: str = "deadline", due: datetime | None = None) -> bool:
        self.calls.append(("auto_stop", target, reason))
        self.threads.add(threading.get_ident())
        try:
            await asyncio.sleep(self.hold)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.finished += 1
        result = self.results.pop(0) if self.results else True
        if isinstance(result, BaseException):
            raise result
        return bool(result)

    async def warn(self, target: str) -> None:
        self.calls.append(("warn", target, ""))

    async def scheduled_start(self, target: str) -> bool:
        self.calls.append(("scheduled_start", target, ""))
        return True


async def test_job_errors_are_logged_and_retried_on_the_event_loop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="toggler")
    callbacks = Scripted(RuntimeError("boom"), False, True)
    timers = SchedulerTimers(make_config(), callbacks, **FAST_RETRY)
    timers.start()
    try:
        timers.arm("web", datetime.now(UTC) - timedelta(seconds=5))
        await until(lambda: callbacks.finished == 3)
        await until(lambda: timers.deadline("web") is None)
    finally:
        await timers.shutdown()
    assert callbacks.calls == [("auto_stop", "web", "deadline")] * 3
    assert callbacks.threads == {threading.get_ident()}
    raised = [record for record in caplog.records if record.getMessage() == "auto-stop of web raised"]
    assert raised and raised[0].exc_info is not None
    assert "auto-stop of web failed (attempt 1); retrying in 0.2 s" in caplog.text
    assert "auto-stop of web failed (attempt 2); retrying in 0.4 s" in caplog.text


async def test_shutdown_waits_for_a_running_job() -> None:
    callbacks = Scripted(True, hold=0.3)
    timers = SchedulerTimers(make_config(), callbacks)
    timers.start()
    timers.arm("web", datetime.now(UTC))
    await until(lambda: callbacks.calls)
    await timers.shutdown()
    assert callbacks.finished == 1 and not callbacks.cancelled
    assert not timers.running


async def test_shutdown_cancels_a_stuck_job_instead_of_hanging() -> None:
    callbacks = Scripted(hold=3600)
    timers = SchedulerTimers(make_config(), callbacks, shutdown_grace=timedelta(seconds=0.2))
    timers.start()
    timers.arm("web", datetime.now(UTC))
    await until(lambda: callbacks.calls)
    await asyncio.wait_for(timers.shutdown(), 10)
    assert not timers.running
    await until(lambda: callbacks.cancelled)
    await timers.shutdown()  # twice is fine


def test_start_needs_the_callbacks() -> None:
    with pytest.raises(RuntimeError, match="bind"):
        SchedulerTimers(make_config()).start()


# --- cron -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "expected"), [
    ("*", "*"), ("0", "sun"), ("7", "sun"), ("sun", "sun"), ("1-5", "mon,tue,wed,thu,fri"),
    ("mon-fri", "mon,tue,wed,thu,fri"), ("5-7", "fri,sat,sun"), ("0-6", "*"), ("0,6", "sat,sun"),
    ("*/2", "tue,thu,sat,sun"), ("1-5/2", "mon,wed,fri"), ("SAT,Sun", "sat,sun"),
])
def test_translate_day_of_week(field: str, expected: str) -> None:
    assert translate_day_of_week(field) == expected


REFERENCE = datetime(2026, 3, 27, 21, 0, tzinfo=BERLIN)  # a Friday; DST starts on Sunday 29 March


@pytest.mark.parametrize(("expression", "expected"), [
    ("0 20 * * *", datetime(2026, 3, 28, 20, 0, tzinfo=BERLIN)),
    ("0 8 * * mon-fri", datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN)),
    ("30 6 * * 0", datetime(2026, 3, 29, 6, 30, tzinfo=BERLIN)),
    ("30 6 * * 7", datetime(2026, 3, 29, 6, 30, tzinfo=BERLIN)),
    ("0 8 * * 1-5", datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN)),
    ("0 9 * jan-mar/2 *", datetime(2026, 3, 28, 9, 0, tzinfo=BERLIN)),
])
def test_cron_next_fire_time_in_berlin(expression: str, expected: datetime) -> None:
    fire = cron_trigger(expression, "Europe/Berlin").get_next_fire_time(None, REFERENCE)
    assert fire == expected
    assert fire.utcoffset() == expected.utcoffset()


def test_sunday_is_not_apschedulers_zero() -> None:
    naive = CronTrigger.from_crontab("30 6 * * 0", timezone=BERLIN).get_next_fire_time(None, REFERENCE)
    assert naive.strftime("%a") == "Mon"  # the pitfall the translation avoids
    ours = cron_trigger("30 6 * * 0", "Europe/Berlin").get_next_fire_time(None, REFERENCE)
    assert ours.strftime("%a") == "Sun"


def test_cron_follows_daylight_saving_time() -> None:
    trigger = cron_trigger("0 20 * * *", "Europe/Berlin")
    saturday = trigger.get_next_fire_time(None, REFERENCE)
    sunday = trigger.get_next_fire_time(saturday, saturday + timedelta(seconds=1))
    assert sunday.astimezone(UTC) - saturday.astimezone(UTC) == timedelta(hours=23)
    assert sunday == datetime(2026, 3, 29, 20, 0, tzinfo=BERLIN)


def test_day_of_month_or_day_of_week_like_crontab() -> None:
    trigger = cron_trigger("0 12 1 * mon", "Europe/Berlin")
    monday = trigger.get_next_fire_time(None, REFERENCE)
    assert monday == datetime(2026, 3, 30, 12, 0, tzinfo=BERLIN)
    first = trigger.get_next_fire_time(monday, monday + timedelta(seconds=1))
    assert first == datetime(2026, 4, 1, 12, 0, tzinfo=BERLIN)  # a Wednesday, the 1st


def at_berlin(offset: timedelta) -> str:
    """A daily cron expression for now + offset (Berlin time)."""
    moment = datetime.now(BERLIN) + offset
    return f"{moment.minute} {moment.hour} * * *"


def scheduled(stop: str | None = None, start: str | None = None, replicas: int = 2) -> dict[str, Any]:
    schedule = {key: value for key, value in (("stop", stop), ("start", start)) if value}
    return {"namespace": "apps", "replicas": replicas, "notify_room": OPS,
            "schedule": {**schedule, "timezone": "Europe/Berlin"}}


async def test_schedule_stop_fires_with_reason_schedule() -> None:
    config = make_config(targets={"web": scheduled(stop=at_berlin(timedelta(minutes=30)))})
    async with Rig(config, make_cluster(web=2)) as rig:
        job = rig.timers.scheduler.get_job(job_id("schedule-stop", "web"))
        planned = job.next_run_time
        assert timedelta(minutes=28) < planned - datetime.now(UTC) <= timedelta(minutes=30)

        job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=1.5))
        rig.timers.scheduler.wakeup()
        await until(lambda: rig.notifier.of(Stopped))
        [(room, stopped, _)] = rig.notifier.of(Stopped)
        assert (room, stopped.reason, stopped.previous) == (OPS, "schedule", 2)
        assert rig.replicas("web") == 0
        assert rig.timers.scheduler.get_job(job_id("schedule-stop", "web")).next_run_time == planned


async def test_schedule_start_fires() -> None:
    config = make_config(targets={"web": scheduled(start=at_berlin(timedelta(minutes=30)), replicas=3)})
    async with Rig(config, make_cluster()) as rig:
        job = rig.timers.scheduler.get_job(job_id("schedule-start", "web"))
        job.modify(next_run_time=datetime.now(UTC) + timedelta(seconds=1))
        rig.timers.scheduler.wakeup()
        await until(lambda: rig.notifier.of(ScheduledStart))
        [(room, scheduled_start, _)] = rig.notifier.of(ScheduledStart)
        started = scheduled_start.started
        assert room == OPS and started.replicas == 3
        assert rig.replicas("web") == 3
        assert rig.timers.deadline("web") == started.deadline  # defaults.auto_stop_after applies


async def test_run_missed_within_the_grace_window_runs_after_start() -> None:
    config = make_config(targets={
        "web": scheduled(stop=at_berlin(-timedelta(minutes=2))),
        "api": scheduled(stop=at_berlin(-timedelta(minutes=20))),
    })
    async with Rig(config, make_cluster(web=2, api=2), misfire_grace=timedelta(minutes=10)) as rig:
        await until(lambda: rig.notifier.of(Stopped))
        await asyncio.sleep(0.3)
        assert [(stopped.target, stopped.reason) for _, stopped, _ in rig.notifier.of(Stopped)] == [
            ("web", "schedule")]
        assert rig.replicas("api") == 2
        for name in ("web", "api"):
            job = rig.timers.scheduler.get_job(job_id("schedule-stop", name))
            assert job.next_run_time > datetime.now(UTC) + timedelta(hours=20)  # tomorrow


async def test_failed_schedule_stop_is_retried() -> None:
    config = make_config(targets={"web": scheduled(stop=at_berlin(-timedelta(minutes=1)))})
    cluster = make_cluster(web=2)
    cluster.fail_with = Unavailable("cluster unreachable")
    async with Rig(config, cluster) as rig:
        await until(lambda: len(rig.notifier.of(Failed)) >= 2)
        cluster.fail_with = None
        await until(lambda: rig.notifier.of(Stopped))
        assert rig.notifier.of(Stopped)[0][1].reason == "schedule"
        assert rig.replicas("web") == 0

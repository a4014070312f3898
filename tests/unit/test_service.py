"""The use cases over fake seams: start/stop/extend, policy, errors, dry-run, timers, reconcile, locking."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.fakes import FakeClock, FakeCluster, FakeTimers, RecordingNotifier
from toggler import ports
from toggler.commands import Command
from toggler.config import Config
from toggler.outcomes import (
    Extended,
    Failed,
    HelpText,
    Listing,
    NothingToExtend,
    Refused,
    ScheduledStart,
    Started,
    StartedOutside,
    StatusReport,
    Stopped,
    StoppedMany,
    StoppedOutside,
    StopWarning,
)
from toggler.policy import Policy
from toggler.ports import Annotations, TargetRef, TargetStatus
from toggler.service import Context, Service

ALICE = "@alice:example.org"
MALLORY = "@mallory:example.org"
OPS = "!ops:example.org"
ALERTS = "!alerts:example.org"
AS_ALICE = Context(ALICE, OPS, "$event")
CLOCK_START = FakeClock().now()


def make_config(**defaults: Any) -> Config:
    return Config.model_validate({
        "matrix": {"homeserver": "http://hs.example.org", "user_id": "@toggler:example.org", "password": "x"},
        "defaults": defaults,
        "targets": {
            "web": {"namespace": "apps", "aliases": ["site"], "auto_stop_after": "30m"},
            "db": {"namespace": "data", "auto_stop_after": None, "replicas": 2},
            "cache": {"namespace": "apps", "notify_room": ALERTS},
        },
        "rooms": {
            OPS: {"users": [ALICE], "targets": ["web", "db"]},
            ALERTS: {},
        },
    })


@dataclass
class World:
    service: Service
    cluster: FakeCluster
    timers: FakeTimers
    clock: FakeClock
    notifier: RecordingNotifier

    def notes(self, namespace: str, name: str) -> dict[str, str]:
        return self.cluster.objects[(namespace, name)].annotations

    def replicas(self, namespace: str, name: str) -> int:
        return self.cluster.objects[(namespace, name)].replicas

    def scales(self) -> list[tuple[str, int]]:
        return [(ref.target, int(str(value))) for kind, ref, value in self.cluster.writes if kind == "scale"]


def make_world(
    cluster: FakeCluster | None = None, *, dry_run: bool | None = None, defaults: dict[str, Any] | None = None
) -> World:
    config = make_config(**(defaults or {}))
    cluster = cluster or FakeCluster()
    for namespace, name in (("apps", "web"), ("data", "db"), ("apps", "cache")):
        cluster.add(namespace, name)
    timers, clock, notifier = FakeTimers(), FakeClock(), RecordingNotifier()
    service = Service(config, cluster=cluster, timers=timers, clock=clock, policy=Policy(config),
                      notifier=notifier, dry_run=dry_run)
    return World(service, cluster, timers, clock, notifier)


def running(world: World, namespace: str, name: str, replicas: int = 1, **notes: str) -> None:
    world.cluster.add(namespace, name, replicas=replicas, annotations={ports.ANNOTATION_PREFIX + k: v
                                                                        for k, v in notes.items()})


def stamp(delta: timedelta) -> str:
    return (CLOCK_START + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


async def run(world: World, body: Command, ctx: Context = AS_ALICE) -> Any:
    return await world.service.execute(body, ctx)


# --- start ---------------------------------------------------------------------------------------------
async def test_start_scales_up_writes_annotations_and_arms_the_target_deadline() -> None:
    world = make_world()
    outcome = await run(world, Command("start", "web"))
    deadline = CLOCK_START + timedelta(minutes=30)
    assert isinstance(outcome, Started)
    assert (outcome.deadline, outcome.replicas, outcome.already_on) == (deadline, 1, False)
    assert world.scales() == [("web", 1)]
    assert world.notes("apps", "web") == {
        ports.STOP_AT: stamp(timedelta(minutes=30)), ports.STARTED_BY: ALICE,
        ports.STARTED_IN: OPS, ports.STARTED_AT: stamp(timedelta()),
    }
    assert world.timers.armed == {"web": deadline}


async def test_start_without_auto_stop_arms_nothing() -> None:
    world = make_world()
    outcome = await run(world, Command("start", "db"))
    assert isinstance(outcome, Started)
    assert outcome.deadline is None
    assert world.scales() == [("db", 2)]
    assert ports.STOP_AT not in world.notes("data", "db")
    assert world.timers.armed == {}


async def test_start_for_a_duration_overrides_auto_stop() -> None:
    world = make_world()
    outcome = await run(world, Command("start", "web", timedelta(hours=1)))
    assert outcome.deadline == CLOCK_START + timedelta(hours=1)
    assert outcome.capped_to is None


async def test_start_for_is_capped_at_max_duration() -> None:
    world = make_world(defaults={"max_duration": "4h"})
    outcome = await run(world, Command("start", "web", timedelta(days=1)))
    assert outcome.deadline == CLOCK_START + timedelta(hours=4)
    assert outcome.capped_to == timedelta(hours=4)
    assert world.timers.armed["web"] == CLOCK_START + timedelta(hours=4)


async def test_start_is_idempotent() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(timedelta(minutes=10))})
    outcome = await run(world, Command("start", "web"))
    assert isinstance(outcome, Started)
    assert outcome.already_on
    assert outcome.deadline == CLOCK_START + timedelta(minutes=10)
    assert world.cluster.writes == []
    assert world.timers.history == []


async def test_start_for_on_a_running_target_moves_its_deadline_without_scaling() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(timedelta(minutes=10))})
    outcome = await run(world, Command("start", "web", timedelta(hours=1)))
    assert outcome.already_on
    assert world.scales() == []
    assert world.notes("apps", "web")[ports.STOP_AT] == stamp(timedelta(hours=1))
    assert world.timers.armed["web"] == CLOCK_START + timedelta(hours=1)


async def test_start_restores_the_replica_count_seen_at_stop() -> None:
    world = make_world()
    world.cluster.add("apps", "web", annotations={ports.RESTORE_REPLICAS: "3"})
    outcome = await run(world, Command("start", "web"))
    assert outcome.replicas == 3
    assert world.scales() == [("web", 3)]


# --- stop ----------------------------------------------------------------------------------------------
async def test_stop_records_restore_replicas_clears_deadline_and_cancels_timer() -> None:
    world = make_world()
    running(world, "apps", "web", replicas=2, **{"stop-at": stamp(timedelta(minutes=10))})
    world.timers.arm("web", CLOCK_START + timedelta(minutes=10))
    outcome = await run(world, Command("stop", "web"))
    assert outcome == Stopped("web", 2)
    assert world.replicas("apps", "web") == 0
    assert world.notes("apps", "web") == {ports.RESTORE_REPLICAS: "2"}
    assert "web" not in world.timers.armed


async def test_stop_is_idempotent() -> None:
    world = make_world()
    outcome = await run(world, Command("stop", "web"))
    assert outcome == Stopped("web", 0, already_off=True)
    assert world.cluster.writes == []


async def test_stop_all_only_touches_usable_targets() -> None:
    world = make_world()
    running(world, "apps", "web")
    running(world, "data", "db", replicas=2)
    running(world, "apps", "cache")
    outcome = await run(world, Command("stop", all_targets=True))
    assert isinstance(outcome, StoppedMany)
    assert outcome.results == (Stopped("web", 1), Stopped("db", 2))
    assert world.replicas("apps", "cache") == 1
    assert sorted(world.scales()) == [("db", 0), ("web", 0)]


async def test_stop_all_reports_each_failure_and_goes_on() -> None:
    world = make_world()
    running(world, "apps", "web")
    del world.cluster.objects[("data", "db")]
    outcome = await run(world, Command("stop", all_targets=True))
    assert isinstance(outcome.results[0], Stopped)
    assert isinstance(outcome.results[1], Failed)
    assert outcome.results[1].target == "db"


# --- extend --------------------------------------------------------------------------------------------
async def test_extend_moves_the_deadline() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(timedelta(minutes=30))})
    outcome = await run(world, Command("extend", "web", timedelta(hours=1)))
    assert outcome == Extended("web", CLOCK_START + timedelta(minutes=90))
    assert world.notes("apps", "web")[ports.STOP_AT] == stamp(timedelta(minutes=90))
    assert world.timers.armed["web"] == CLOCK_START + timedelta(minutes=90)
    assert world.scales() == []


async def test_extend_is_capped_at_max_duration_from_now() -> None:
    world = make_world(defaults={"max_duration": "3h"})
    running(world, "apps", "web", **{"stop-at": stamp(timedelta(hours=2))})
    outcome = await run(world, Command("extend", "web", timedelta(hours=2)))
    assert outcome == Extended("web", CLOCK_START + timedelta(hours=3), capped_to=timedelta(hours=3))


async def test_extend_an_overdue_deadline_counts_from_now() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(-timedelta(minutes=5))})
    outcome = await run(world, Command("extend", "web", timedelta(hours=1)))
    assert outcome.deadline == CLOCK_START + timedelta(hours=1)


async def test_nothing_to_extend_when_off_or_without_deadline() -> None:
    world = make_world()
    assert await run(world, Command("extend", "web", timedelta(hours=1))) == NothingToExtend("web", is_off=True)
    running(world, "data", "db")
    assert await run(world, Command("extend", "db", timedelta(hours=1))) == NothingToExtend("db", is_off=False)
    assert world.cluster.writes == []
    assert world.timers.history == []


# --- policy, read-only commands ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "ctx"),
    [
        (Command("start", "web"), Context(MALLORY, OPS)),
        (Command("stop", "web"), Context(MALLORY, OPS)),
        (Command("start", "cache"), AS_ALICE),
        (Command("start", "web"), Context(ALICE, "!elsewhere:example.org")),
        (Command("stop", all_targets=True), Context(MALLORY, OPS)),
        (Command("status"), Context(MALLORY, OPS)),
        (Command("list"), Context(MALLORY, OPS)),
    ],
)
async def test_refused_senders_get_refused_and_nothing_is_written(command: Command, ctx: Context) -> None:
    world = make_world()
    running(world, "apps", "web")
    outcome = await run(world, command, ctx)
    assert outcome == Refused()
    assert world.cluster.writes == []
    assert world.timers.history == []


async def test_status_list_and_help_make_no_writes() -> None:
    world = make_world()
    running(world, "apps", "web")
    report = await run(world, Command("status"))
    assert isinstance(report, StatusReport)
    assert [status.ref.target for status in report.statuses] == ["web", "db"]
    assert report.statuses[0].desired == 1
    one = await run(world, Command("status", "db"))
    assert [status.ref.target for status in one.statuses] == ["db"]
    listing = await run(world, Command("list"))
    assert isinstance(listing, Listing)
    assert [(info.name, info.aliases, info.auto_stop_after) for info in listing.targets] == [
        ("web", ("site",), timedelta(minutes=30)), ("db", (), None)]
    assert await run(world, Command("help", topic="start")) == HelpText("start", ("web", "db"))
    assert world.cluster.writes == []
    assert world.timers.history == []


# --- cluster errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [ports.NotFound("`web` (Deployment apps/web) does not exist"), ports.Forbidden("forbidden: may not patch"),
     ports.Unavailable("the Kubernetes API is unreachable"), ports.Conflict("changed under us")],
    ids=lambda error: type(error).__name__,
)
@pytest.mark.parametrize("command", [Command("start", "web"), Command("stop", "web")], ids=["start", "stop"])
async def test_cluster_errors_become_one_line_failures(error: ports.ClusterError, command: Command) -> None:
    world = make_world()
    if command.action == "stop":
        running(world, "apps", "web")
    world.cluster.fail_with = error
    outcome = await run(world, command)
    assert outcome == Failed("web", str(error))
    assert "\n" not in outcome.message
    assert world.timers.history == []


async def test_missing_object_fails_instead_of_pretending_it_is_off() -> None:
    world = make_world()
    del world.cluster.objects[("apps", "web")]
    for command in (Command("start", "web"), Command("stop", "web")):
        outcome = await run(world, command)
        assert isinstance(outcome, Failed)
        assert "does not exist" in outcome.message


async def test_while_the_watch_is_down_nothing_is_guessed_or_cancelled() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(timedelta(minutes=10))})
    world.timers.arm("web", CLOCK_START + timedelta(minutes=10))
    world.cluster.watch_down = True
    for command in (Command("stop", "web"), Command("start", "web"), Command("extend", "web", timedelta(hours=1))):
        assert isinstance(await run(world, command), Failed)
    assert world.cluster.writes == []
    assert world.timers.armed == {"web": CLOCK_START + timedelta(minutes=10)}


# --- dry-run -------------------------------------------------------------------------------------------
async def test_dry_run_writes_nothing_but_says_what_it_would_do() -> None:
    world = make_world(dry_run=True)
    started = await run(world, Command("start", "web"))
    assert isinstance(started, Started)
    assert started.dry_run
    assert started.deadline == CLOCK_START + timedelta(minutes=30)
    running(world, "data", "db", replicas=2, **{"stop-at": stamp(timedelta(minutes=10))})
    extended = await run(world, Command("extend", "db", timedelta(hours=1)))
    assert isinstance(extended, Extended)
    assert extended.dry_run
    stopped = await run(world, Command("stop", "db"))
    assert stopped == Stopped("db", 2, dry_run=True)
    assert world.cluster.writes == []
    assert world.timers.history == []


async def test_dry_run_comes_from_the_config_too() -> None:
    world = make_world(defaults={"dry_run": True})
    assert world.service.dry_run
    assert (await run(world, Command("start", "web"))).dry_run
    assert world.cluster.writes == []


# --- timers: auto-stop, warnings, schedules ------------------------------------------------------------
async def test_auto_stop_scales_to_zero_and_tells_the_room_that_started_it() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(timedelta(minutes=30)), "started-in": OPS})
    world.clock.advance(timedelta(minutes=30, seconds=10))
    assert await world.service.auto_stop("web")
    assert world.replicas("apps", "web") == 0
    assert world.notifier.sent == [(OPS, Stopped("web", 1, reason="deadline"))]


async def test_auto_stop_long_after_the_deadline_reports_how_overdue() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(timedelta(minutes=30)), "started-in": OPS})
    world.clock.advance(timedelta(hours=2, minutes=30))
    assert await world.service.auto_stop("web")
    (_room, outcome), = world.notifier.sent
    assert outcome.overdue_by == timedelta(hours=2)


async def test_auto_stop_falls_back_to_the_notify_room() -> None:
    world = make_world()
    running(world, "apps", "cache", **{"stop-at": stamp(timedelta(hours=2))})
    assert await world.service.auto_stop("cache")
    assert world.notifier.sent == [(ALERTS, Stopped("cache", 1, reason="deadline"))]


async def test_failed_auto_stop_returns_false_and_tells_the_room() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(timedelta()), "started-in": OPS})
    world.cluster.fail_with = ports.Forbidden("forbidden: may not patch deployments/scale")
    assert not await world.service.auto_stop("web")
    (room, outcome), = world.notifier.sent
    assert room == OPS
    assert isinstance(outcome, Failed)
    assert "auto-stop failed" in outcome.message
    assert world.replicas("apps", "web") == 1


async def test_auto_stop_of_a_target_already_off_tells_nobody() -> None:
    world = make_world()
    assert await world.service.auto_stop("web")
    assert world.notifier.sent == []


async def test_warning_goes_to_the_room_that_started_it() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(timedelta(minutes=5)), "started-in": OPS})
    await world.service.warn("web")
    assert world.notifier.sent == [(OPS, StopWarning("web", CLOCK_START + timedelta(minutes=5)))]


async def test_scheduled_start_tells_the_notify_room() -> None:
    world = make_world()
    assert await world.service.scheduled_start("cache")
    (room, outcome), = world.notifier.sent
    assert room == ALERTS
    assert isinstance(outcome, ScheduledStart)
    assert outcome.started.deadline == CLOCK_START + timedelta(hours=2)
    assert world.replicas("apps", "cache") == 1


# --- reconcile -----------------------------------------------------------------------------------------
async def test_reconcile_adopts_an_outside_start() -> None:
    world = make_world()
    running(world, "apps", "cache", replicas=2)
    await world.service.reconcile("cache")
    deadline = CLOCK_START + timedelta(hours=2)
    assert world.notes("apps", "cache")[ports.STOP_AT] == stamp(timedelta(hours=2))
    assert world.timers.armed == {"cache": deadline}
    assert world.notifier.sent == [(ALERTS, StartedOutside("cache", 2, deadline))]
    assert world.scales() == []


async def test_reconcile_leaves_a_running_target_without_auto_stop_alone() -> None:
    world = make_world()
    running(world, "data", "db")
    await world.service.reconcile("db")
    assert world.cluster.writes == []
    assert world.timers.armed == {}
    assert world.notifier.sent == []


async def test_reconcile_cancels_after_an_outside_stop() -> None:
    world = make_world()
    world.cluster.add("apps", "web", annotations={ports.STOP_AT: stamp(timedelta(minutes=20)), ports.STARTED_IN: OPS})
    world.timers.arm("web", CLOCK_START + timedelta(minutes=20))
    await world.service.reconcile("web")
    assert world.timers.armed == {}
    assert ports.STOP_AT not in world.notes("apps", "web")
    assert world.notifier.sent == [(OPS, StoppedOutside("web"))]


async def test_reconcile_rearms_an_annotated_running_target() -> None:
    world = make_world()
    running(world, "apps", "web", **{"stop-at": stamp(timedelta(minutes=20)), "started-in": OPS})
    await world.service.reconcile("web")
    assert world.timers.armed == {"web": CLOCK_START + timedelta(minutes=20)}
    assert world.cluster.writes == []
    assert world.notifier.sent == []
    await world.service.reconcile("web")
    assert len(world.timers.history) == 1, "an armed timer at the same deadline is left alone"


async def test_reconcile_ignores_unknown_state() -> None:
    world = make_world()
    running(world, "apps", "web")
    world.cluster.watch_down = True
    await world.service.reconcile("web")
    assert world.cluster.writes == []
    assert world.timers.history == []


# --- serialisation per target --------------------------------------------------------------------------
class SlowCluster(FakeCluster):
    """Scaling takes a few event-loop turns, so a second command can arrive in between."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.max_in_flight = 0

    async def scale(self, ref: TargetRef, replicas: int, *, annotations: Annotations) -> TargetStatus:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for _ in range(5):
            await asyncio.sleep(0)
        try:
            return await super().scale(ref, replicas, annotations=annotations)
        finally:
            self.in_flight -= 1


async def test_concurrent_starts_of_one_target_scale_once() -> None:
    cluster = SlowCluster()
    world = make_world(cluster)
    first, second = await asyncio.gather(run(world, Command("start", "web")), run(world, Command("start", "web")))
    assert world.scales() == [("web", 1)]
    assert sorted([first.already_on, second.already_on]) == [False, True]
    assert cluster.max_in_flight == 1


async def test_different_targets_do_not_wait_for_each_other() -> None:
    cluster = SlowCluster()
    world = make_world(cluster)
    await asyncio.gather(run(world, Command("start", "web")), run(world, Command("start", "db")))
    assert sorted(world.scales()) == [("db", 2), ("web", 1)]
    assert cluster.max_in_flight == 2

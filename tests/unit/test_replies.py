"""Rendering outcomes to chat: every outcome type, escaping, time zones, refusals that reveal nothing."""

from __future__ import annotations

import re
import typing
from datetime import UTC, datetime, timedelta

import pytest

from toggler import replies
from toggler.commands import COMMANDS, UsageError, usage_line
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
    Usage,
)
from toggler.ports import State, TargetRef, TargetStatus

NOW = datetime(2026, 12, 3, 16, 40, tzinfo=UTC)
IN_2H = NOW + timedelta(hours=2)
WEB = TargetRef("web", "Deployment", "apps", "web")
DB = TargetRef("db", "StatefulSet", "data", "db")
STARTING = TargetStatus(WEB, State.STARTING, desired=1, ready=0)
RUNNING = TargetStatus(WEB, State.ON, desired=1, ready=1, stop_at=IN_2H, started_by="@alice:example.org",
                       started_in="!room:example.org", started_at=NOW - timedelta(minutes=10))


def say(outcome: Outcome, timezone: str = "UTC", now: datetime = NOW) -> replies.Reply:
    return replies.render(outcome, timezone=timezone, now=now)


def plain(outcome: Outcome, timezone: str = "UTC") -> str:
    return say(outcome, timezone).plain


SAMPLES: list[Outcome] = [
    Started(STARTING, 1, IN_2H),
    Stopped("web", 2),
    StoppedMany((Stopped("web", 1), Failed("db", "forbidden"))),
    Extended("web", NOW + timedelta(hours=4)),
    NothingToExtend("web", is_off=True),
    StatusReport((RUNNING,)),
    Listing((TargetInfo("web", ("w",), "Deployment", "apps", "the site", timedelta(hours=2)),)),
    HelpText(None, ("web",)),
    Usage(UsageError("which target?", "start", ("web", "db"))),
    Refused(),
    Failed("web", "the Kubernetes API is unreachable"),
    Ready(RUNNING, timedelta(seconds=12), IN_2H),
    NotReady(STARTING, timedelta(minutes=10), "not ready"),
    StopWarning("web", NOW + timedelta(minutes=5)),
    StartedOutside("web", 2, IN_2H),
    StoppedOutside("web"),
    ScheduledStart(Started(STARTING, 1, IN_2H)),
]


def test_every_outcome_type_has_a_renderer() -> None:
    assert set(typing.get_args(Outcome)) == set(replies.RENDERERS)


def test_samples_cover_every_outcome_type() -> None:
    assert {type(sample) for sample in SAMPLES} == set(typing.get_args(Outcome))


@pytest.mark.parametrize("outcome", SAMPLES, ids=lambda outcome: type(outcome).__name__)
def test_every_outcome_renders_plain_and_html(outcome: Outcome) -> None:
    reply = say(outcome)
    assert reply.plain.strip()
    assert reply.html.strip()
    assert "`" not in reply.html, "backticks belong to the plain body; HTML uses <code>"


def test_started_not_yet_ready_with_deadline() -> None:
    reply = say(Started(STARTING, 1, IN_2H))
    assert reply.plain == "starting `web` (0/1 ready)… — stops at 18:40 (in 2 h)"
    assert reply.html == "starting <code>web</code> (0/1 ready)… — stops at 18:40 (in 2 h)"


def test_started_without_deadline_says_no_auto_stop() -> None:
    assert plain(Started(STARTING, 1, None)) == "starting `web` (0/1 ready)… — no auto-stop"


def test_already_on() -> None:
    text = plain(Started(RUNNING, 1, IN_2H, already_on=True))
    assert text == "`web` is already on (1/1 ready), stops at 18:40 (in 2 h)"


def test_capped_start_says_so() -> None:
    text = plain(Started(STARTING, 1, NOW + timedelta(hours=12), capped_to=timedelta(hours=12)))
    assert text.endswith("(capped at the 12 h maximum)")


def test_dry_run_start_says_would() -> None:
    text = plain(Started(STARTING, 2, IN_2H, dry_run=True))
    assert text.startswith("[dry-run] would start `web` (2 replicas)")


def test_ready_and_not_ready() -> None:
    assert plain(Ready(RUNNING, timedelta(seconds=12), IN_2H)) == (
        "`web` is on — 1/1 ready after 12 s, stops at 18:40 (in 2 h)"
    )
    stuck = TargetStatus(WEB, State.STARTING, desired=1, ready=0, reason="ImagePullBackOff")
    assert plain(NotReady(stuck, timedelta(minutes=10), "timeout")) == (
        "`web` did not become ready: 0/1 ready after 10 min — ImagePullBackOff"
    )


@pytest.mark.parametrize(
    ("outcome", "text"),
    [
        (Stopped("web", 2), "stopped `web` (was 2 replicas)"),
        (Stopped("web", 0, already_off=True), "`web` is already off"),
        (Stopped("web", 1, reason="deadline"), "auto-stopped `web` (its timer ran out)"),
        (Stopped("web", 1, reason="schedule"), "stopped `web` on schedule"),
        (Stopped("web", 1, dry_run=True), "[dry-run] would stop `web` (1 replica)"),
    ],
)
def test_stopped_variants(outcome: Stopped, text: str) -> None:
    assert plain(outcome) == text


def test_overdue_auto_stop_says_toggler_was_offline() -> None:
    text = plain(Stopped("web", 1, reason="deadline", overdue_by=timedelta(hours=2)))
    assert "was due 2 h ago; toggler was offline" in text


def test_stopped_many_has_one_line_per_target() -> None:
    reply = say(StoppedMany((Stopped("web", 1), Stopped("db", 0, already_off=True), Failed("cache", "forbidden"))))
    assert reply.plain.splitlines() == ["stopped `web` (was 1 replica)", "`db` is already off", "`cache`: forbidden"]
    assert reply.html.count("<br>") == 2


def test_extended_and_nothing_to_extend() -> None:
    assert plain(Extended("web", NOW + timedelta(hours=4))) == "`web` now stops at 20:40 (in 4 h)"
    assert "nothing to extend" in plain(NothingToExtend("web", is_off=True))
    assert "no auto-stop" in plain(NothingToExtend("web", is_off=False))


def test_times_are_shown_in_the_configured_zone() -> None:
    assert plain(Extended("web", NOW + timedelta(hours=4)), "Europe/Berlin") == "`web` now stops at 21:40 (in 4 h)"
    assert plain(Extended("web", NOW + timedelta(hours=4)), "Asia/Tokyo") == "`web` now stops at 05:40 (in 4 h)"


def test_today_is_judged_in_the_configured_zone() -> None:
    late = Extended("web", NOW + timedelta(hours=8))  # 00:40 UTC tomorrow, 19:40 today in New York
    assert plain(late, "America/New_York") == "`web` now stops at 19:40 (in 8 h)"
    assert plain(late, "UTC") == "`web` now stops at Fri 4 Dec 00:40 (in 8 h)"


def test_date_is_added_when_not_today() -> None:
    text = plain(Extended("web", NOW + timedelta(days=1)))
    assert "Fri 4 Dec 16:40" in text


def test_warning_and_outside_changes() -> None:
    assert plain(StopWarning("web", NOW + timedelta(minutes=5))) == "`web` stops in 5 min — `extend web 1h` to keep it"
    assert plain(StartedOutside("web", 1, IN_2H)).endswith("it stops at 18:40 (in 2 h)")
    assert "started outside toggler" in plain(StartedOutside("web", 1, IN_2H))
    assert "stopped outside toggler" in plain(StoppedOutside("web"))


def test_status_one_target_is_one_line_with_who_started_it() -> None:
    text = plain(StatusReport((RUNNING,)))
    assert text == "`web` is on, 1/1 ready, stops at 18:40 (in 2 h), started by @alice:example.org at 16:30"


def test_status_many_targets_is_an_html_table() -> None:
    reply = say(StatusReport((RUNNING, TargetStatus(DB, State.OFF))))
    assert len(reply.plain.splitlines()) == 2
    assert reply.html.startswith("<table>")
    assert reply.html.count("<tr>") == 3


def test_unknown_state_says_the_watch_is_down_and_shows_no_numbers() -> None:
    unknown = TargetStatus(WEB, State.UNKNOWN, desired=3, ready=2, reason="watch down")
    one = plain(StatusReport((unknown,)))
    assert "unknown" in one
    assert "watch is down" in one
    assert not re.search(r"\d/\d", one)
    table = say(StatusReport((unknown, RUNNING))).html
    unknown_row = table.split("<tr>")[2]
    assert "watch is down" in unknown_row
    assert not re.search(r"\d/\d", unknown_row)


def test_missing_target_does_not_exist() -> None:
    assert "does not exist" in plain(StatusReport((TargetStatus(DB, State.MISSING),)))


def test_html_escapes_cluster_and_user_text() -> None:
    info = TargetInfo("web", (), "Deployment", "apps", "<script>alert(1)</script>", None)
    reply = say(Listing((info,)))
    assert "<script>" not in reply.html
    assert "&lt;script&gt;" in reply.html
    assert "<script>" in reply.plain
    evil = TargetStatus(WEB, State.ON, desired=1, ready=1, started_by="<img src=x>", reason="<b>bad</b>")
    html = say(StatusReport((evil, RUNNING))).html
    assert "<img" not in html
    assert "<b>bad" not in html
    assert "<b>" not in say(Usage(UsageError("`<b>` is not a target you can use here", "start"))).html


def test_listing_shows_aliases_kind_namespace_and_timer() -> None:
    info = TargetInfo("web", ("w", "site"), "Deployment", "apps", "the site", timedelta(hours=2))
    text = plain(Listing((info, TargetInfo("db", (), "StatefulSet", "data", None, None))))
    assert "`web` (also `w`, `site`) — Deployment in namespace `apps`, auto-stops after 2 h — the site" in text
    assert "`db` — StatefulSet in namespace `data`, no auto-stop" in text


def test_help_lists_every_command_and_the_usable_targets() -> None:
    text = plain(HelpText(None, ("web", "db")))
    for spec in COMMANDS:
        assert f"`{usage_line(spec)}`" in text
    assert text.splitlines()[-1] == "your targets here: `web`, `db`"


def test_help_topic_shows_only_that_command() -> None:
    text = plain(HelpText("extend", ("web",)))
    assert "`extend <target> [by] <duration>`" in text
    assert "start" not in text


def test_usage_has_reason_usage_line_and_targets() -> None:
    text = plain(Usage(UsageError("`foo` is not a target you can use here", "start", ("web", "db"))))
    assert text.splitlines() == [
        "`foo` is not a target you can use here",
        "usage: `start|on <target> [for <duration>]`",
        "your targets here: `web`, `db`",
    ]


def test_usage_without_command_shows_every_command() -> None:
    text = plain(Usage(UsageError("I don't know `x`")))
    assert all(usage_line(spec) in text for spec in COMMANDS)


def test_refusal_is_short_and_names_no_target() -> None:
    text = plain(Refused())
    assert len(text) < 60
    assert "`" not in text
    assert "web" not in text


def test_failed_is_one_line_and_names_the_target_once() -> None:
    assert plain(Failed("web", "the API\nis unreachable")) == "`web`: the API is unreachable"
    assert plain(Failed("web", "`web` (Deployment apps/web) does not exist")) == (
        "`web` (Deployment apps/web) does not exist"
    )


def test_scheduled_start_says_so() -> None:
    assert plain(ScheduledStart(Started(STARTING, 1, IN_2H))).startswith("on schedule: starting `web`")

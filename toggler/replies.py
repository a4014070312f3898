"""Outcome → chat reply: a short plain body and an HTML body for every `Outcome` type.

`render(outcome, timezone=…, now=…)` looks the renderer up in `RENDERERS`, a table keyed by outcome type
(a test proves it covers the whole `Outcome` union). Target names appear in backticks / `<code>`; everything
that comes from users or the cluster is HTML-escaped; times are shown in the configured zone as HH:MM.
Refusals reveal nothing. Status and list replies live in `toggler.replies_status`.
Pure module; must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from toggler.commands import COMMANDS, help_lines, usage_line
from toggler.durations import humanize
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
    Usage,
)
from toggler.replies_status import render_listing, render_status
from toggler.replies_text import (
    Code,
    Line,
    Part,
    Reply,
    Times,
    bullets_reply,
    code_list,
    inline,
    lines_reply,
    plural,
)

__all__ = ["RENDERERS", "Reply", "render"]

DRY_RUN = "[dry-run] "


def render(outcome: Outcome, *, timezone: str, now: datetime) -> Reply:
    """The chat reply for `outcome`, with times in `timezone` relative to `now`."""
    return RENDERERS[type(outcome)](outcome, Times.of(timezone, now))


def _cap(capped_to: timedelta | None) -> str:
    return f" (capped at the {humanize(capped_to)} maximum)" if capped_to else ""


# --- start / ready ------------------------------------------------------------------------------------
def _started_parts(outcome: Started, times: Times) -> list[Part]:
    status, name = outcome.status, Code(outcome.status.ref.target)
    stops = times.stops(outcome.deadline) if outcome.deadline else ""
    if outcome.already_on:
        ready = f"{status.ready}/{status.desired} ready"
        if outcome.dry_run and outcome.deadline:
            when = f"{times.at(outcome.deadline)} ({times.relative(outcome.deadline)})"
            return [DRY_RUN, name, f" is already on ({ready}); would make it stop at {when}{_cap(outcome.capped_to)}"]
        tail = f", {stops}" if stops else ", no auto-stop"
        return [name, f" is already on ({ready}){tail}{_cap(outcome.capped_to)}"]
    tail = (f" — {stops}" if stops else " — no auto-stop") + _cap(outcome.capped_to)
    if outcome.dry_run:
        return [DRY_RUN, "would start ", name, f" ({plural(outcome.replicas, 'replica')}){tail}"]
    ready = f"{status.ready}/{outcome.replicas} ready"
    if status.ready >= outcome.replicas:
        return ["started ", name, f" ({ready}){tail}"]
    return ["starting ", name, f" ({ready})…{tail}"]


def _started(outcome: Started, times: Times) -> Reply:
    return lines_reply(_started_parts(outcome, times))


def _scheduled_start(outcome: ScheduledStart, times: Times) -> Reply:
    return lines_reply(["on schedule: ", *_started_parts(outcome.started, times)])


def _ready(outcome: Ready, times: Times) -> Reply:
    status = outcome.status
    stops = f", {times.stops(outcome.deadline)}" if outcome.deadline else ""
    text = f" is on — {status.ready}/{status.desired} ready after {humanize(outcome.elapsed)}{stops}"
    return lines_reply([Code(status.ref.target), text])


def _not_ready(outcome: NotReady, times: Times) -> Reply:
    status = outcome.status
    reason: list[Part] = [" — ", *inline(status.reason)] if status.reason else []
    text = f" did not become ready: {status.ready}/{status.desired} ready after {humanize(outcome.elapsed)}"
    return lines_reply([Code(status.ref.target), text, *reason])


# --- stop ---------------------------------------------------------------------------------------------
def _stopped_parts(outcome: Stopped, times: Times) -> list[Part]:
    name = Code(outcome.target)
    if outcome.already_off:
        return [name, " is already off"]
    if outcome.dry_run:
        return [DRY_RUN, "would stop ", name, f" ({plural(outcome.previous, 'replica')})"]
    if outcome.reason == "deadline":
        late = outcome.overdue_by
        overdue = f" — it was due {humanize(late)} ago; toggler was offline" if late else ""
        return ["auto-stopped ", name, f" (its timer ran out){overdue}"]
    if outcome.reason == "schedule":
        return ["stopped ", name, " on schedule"]
    why = f", {outcome.reason}" if outcome.reason else ""
    return ["stopped ", name, f" (was {plural(outcome.previous, 'replica')}{why})"]


def _stopped(outcome: Stopped, times: Times) -> Reply:
    return lines_reply(_stopped_parts(outcome, times))


def _stopped_many(outcome: StoppedMany, times: Times) -> Reply:
    if not outcome.results:
        return lines_reply(["there was nothing you can stop here"])
    lines: list[Line] = [
        _stopped_parts(result, times) if isinstance(result, Stopped) else _failed_parts(result)
        for result in outcome.results
    ]
    return lines_reply(*lines)


def _stopped_outside(outcome: StoppedOutside, times: Times) -> Reply:
    return lines_reply([Code(outcome.target), " was stopped outside toggler; its auto-stop is cancelled"])


# --- extend, timers -------------------------------------------------------------------------------------
def _extended(outcome: Extended, times: Times) -> Reply:
    when = f"{times.at(outcome.deadline)} ({times.relative(outcome.deadline)}){_cap(outcome.capped_to)}"
    if outcome.dry_run:
        return lines_reply([DRY_RUN, "would make ", Code(outcome.target), f" stop at {when}"])
    return lines_reply([Code(outcome.target), f" now stops at {when}"])


def _nothing_to_extend(outcome: NothingToExtend, times: Times) -> Reply:
    name = Code(outcome.target)
    if outcome.is_off:
        return lines_reply([name, " is off — nothing to extend; ", Code(f"start {outcome.target}"), " turns it on"])
    return lines_reply([name, " has no auto-stop — nothing to extend"])


def _stop_warning(outcome: StopWarning, times: Times) -> Reply:
    delta = outcome.deadline - times.now
    soon = f"in {humanize(delta)}" if delta.total_seconds() > 0 else "now"
    hint = Code(f"extend {outcome.target} 1h")
    return lines_reply([Code(outcome.target), f" stops {soon} — ", hint, " to keep it"])


def _started_outside(outcome: StartedOutside, times: Times) -> Reply:
    head: list[Part] = [Code(outcome.target), f" was started outside toggler ({plural(outcome.replicas, 'replica')}); "]
    tail = f"it {times.stops(outcome.deadline)}" if outcome.deadline else "it has no auto-stop"
    return lines_reply([*head, tail])


# --- help, usage, refusals, failures ---------------------------------------------------------------------
def _targets_line(targets: tuple[str, ...]) -> Line:
    if not targets:
        return ["there are no targets you can use here"]
    return ["your targets here: ", *code_list(targets)]


def _help_item(usage: str, text: str) -> Line:
    return [Code(usage), f" — {text}"]


def _help(outcome: HelpText, times: Times) -> Reply:
    topic = next((spec for spec in COMMANDS if spec.name == outcome.topic), None)
    if topic is not None:
        return lines_reply([Code(usage_line(topic)), f" — {topic.help}"], _targets_line(outcome.targets))
    items: list[Line] = [_help_item(usage, text) for usage, text in help_lines()]
    return bullets_reply(["commands:"], items, _targets_line(outcome.targets))


def _usage(outcome: Usage, times: Times) -> Reply:
    error = outcome.error
    specs = [spec for spec in COMMANDS if spec.name == error.command] or list(COMMANDS)
    lines: list[Line] = [inline(error.reason), ["usage: ", *code_list(usage_line(spec) for spec in specs)]]
    if error.targets:
        lines.append(_targets_line(error.targets))
    return lines_reply(*lines)


def _refused(outcome: Refused, times: Times) -> Reply:
    return lines_reply([outcome.reason])


def _failed_parts(outcome: Failed) -> list[Part]:
    message = inline(outcome.message)
    if outcome.target is None or Code(outcome.target) in message:
        return message
    return [Code(outcome.target), ": ", *message]


def _failed(outcome: Failed, times: Times) -> Reply:
    return lines_reply(_failed_parts(outcome))


RENDERERS: dict[type[Any], Callable[[Any, Times], Reply]] = {
    Started: _started,
    ScheduledStart: _scheduled_start,
    Ready: _ready,
    NotReady: _not_ready,
    Stopped: _stopped,
    StoppedMany: _stopped_many,
    StoppedOutside: _stopped_outside,
    Extended: _extended,
    NothingToExtend: _nothing_to_extend,
    StopWarning: _stop_warning,
    StartedOutside: _started_outside,
    StatusReport: render_status,
    Listing: render_listing,
    HelpText: _help,
    Usage: _usage,
    Refused: _refused,
    Failed: _failed,
}
"""Outcome type → renderer; covers every member of `Outcome`."""

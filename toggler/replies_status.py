"""Replies that describe targets: `status` (one line each, or a compact HTML table) and `list`.

Never guesses: a target whose state is unknown says the cluster watch is down and shows no numbers.
Pure module; must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

from html import escape

from toggler.durations import humanize
from toggler.outcomes import Listing, StatusReport, TargetInfo
from toggler.ports import State, TargetStatus
from toggler.replies_text import Code, Part, Reply, Times, bullets_reply, code_list, lines_reply, to_html

UNKNOWN = "state unknown — the cluster watch is down"
MISSING = "does not exist"


def _unknown_text(status: TargetStatus) -> str:
    return f"{UNKNOWN} ({status.reason})" if status.reason else UNKNOWN


def _ready(status: TargetStatus) -> str:
    if status.state is State.STOPPING:
        return f"{status.ready} still ready"
    return f"{status.ready}/{status.desired} ready"


def _deadline(status: TargetStatus, times: Times) -> str:
    if status.stop_at is not None:
        return times.stops(status.stop_at)
    return "no auto-stop" if status.desired > 0 else ""


def _started_by(status: TargetStatus, times: Times) -> str:
    if not status.started_by or status.desired == 0:
        return ""
    when = f" at {times.at(status.started_at)}" if status.started_at else ""
    return f"started by {status.started_by}{when}"


def status_line(status: TargetStatus, times: Times) -> list[Part]:
    """`web` is on, 1/1 ready, stops at 18:40 (in 2 h), started by @alice:x at 16:40."""
    name = Code(status.ref.target)
    if status.state is State.UNKNOWN:
        return [name, f": {_unknown_text(status)}"]
    if status.state is State.MISSING:
        return [name, f" {MISSING} ({status.ref.describe()})"]
    if status.state is State.OFF:
        return [name, " is off"]
    details = [_ready(status), _deadline(status, times), _started_by(status, times)]
    text = ", ".join(detail for detail in details if detail)
    reason = f" — {status.reason}" if status.reason else ""
    return [name, f" is {status.state.value}, {text}{reason}"]


def _cells(status: TargetStatus, times: Times) -> list[str]:
    """Table cells (state, ready, stops, started by), plain text; no numbers when unknown."""
    if status.state is State.UNKNOWN:
        return [_unknown_text(status), "—", "—", "—"]
    if status.state is State.MISSING:
        return [MISSING, "—", "—", "—"]
    state = status.state.value + (f" ({status.reason})" if status.reason else "")
    stops = f"{times.at(status.stop_at)} ({times.relative(status.stop_at)})" if status.stop_at else "—"
    ready = _ready(status) if status.desired or status.ready else "—"
    return [state, ready, stops if status.desired else "—", _started_by(status, times) or "—"]


def _table(report: StatusReport, times: Times) -> str:
    head = "".join(f"<th>{title}</th>" for title in ("target", "state", "ready", "stops", "started"))
    rows = [f"<tr>{head}</tr>"]
    for status in report.statuses:
        cells = [to_html([Code(status.ref.target)]), *(escape(cell) for cell in _cells(status, times))]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_status(report: StatusReport, times: Times) -> Reply:
    """One line for one target; plain lines and an HTML table for several."""
    if not report.statuses:
        return Reply("there are no targets you can use here", "there are no targets you can use here")
    lines = [status_line(status, times) for status in report.statuses]
    if len(lines) == 1:
        return lines_reply(lines[0])
    return Reply(lines_reply(*lines).plain, _table(report, times))


def _info_line(info: TargetInfo) -> list[Part]:
    parts: list[Part] = [Code(info.name)]
    if info.aliases:
        parts += [" (also ", *code_list(info.aliases), ")"]
    parts.append(f" — {info.kind} in namespace ")
    parts.append(Code(info.namespace))
    timer = f"auto-stops after {humanize(info.auto_stop_after)}" if info.auto_stop_after else "no auto-stop"
    parts.append(f", {timer}")
    if info.description:
        parts.append(f" — {' '.join(info.description.split())}")
    return parts


def render_listing(listing: Listing, _times: Times) -> Reply:
    """The targets the sender may use here, with aliases, kind, namespace and timer."""
    if not listing.targets:
        return Reply("there are no targets you can use here", "there are no targets you can use here")
    return bullets_reply(["targets you can use here:"], [_info_line(info) for info in listing.targets])

"""What a use case produced: plain frozen dataclasses, rendered to chat by `toggler.replies`.

Pure module; must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from toggler.commands import UsageError
from toggler.ports import TargetStatus


@dataclass(frozen=True)
class TargetInfo:
    """A target as `list` shows it."""

    name: str
    aliases: tuple[str, ...]
    kind: str
    namespace: str
    description: str | None
    auto_stop_after: timedelta | None


@dataclass(frozen=True)
class Started:
    """`start` done (or already on, or would be done in dry-run)."""

    status: TargetStatus
    replicas: int
    deadline: datetime | None
    already_on: bool = False
    capped_to: timedelta | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Stopped:
    """A target stopped by a command, a timer or a schedule."""

    target: str
    previous: int
    already_off: bool = False
    reason: str | None = None
    """None for a command; `deadline`, `schedule`."""
    overdue_by: timedelta | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class StoppedMany:
    """`stop all`."""

    results: tuple[Stopped | Failed, ...]


@dataclass(frozen=True)
class Extended:
    """`extend` done."""

    target: str
    deadline: datetime
    capped_to: timedelta | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class NothingToExtend:
    """`extend` on a target that is off or has no auto-stop."""

    target: str
    is_off: bool


@dataclass(frozen=True)
class StatusReport:
    """`status` for one or many targets."""

    statuses: tuple[TargetStatus, ...]


@dataclass(frozen=True)
class Listing:
    """`list`."""

    targets: tuple[TargetInfo, ...]


@dataclass(frozen=True)
class HelpText:
    """`help [topic]`, with the targets the sender may use."""

    topic: str | None
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Usage:
    """A command that did not parse."""

    error: UsageError


@dataclass(frozen=True)
class Refused:
    """Not allowed; reveals nothing about other targets."""

    reason: str = "you are not allowed to do that here"


@dataclass(frozen=True)
class Failed:
    """A cluster error, one line."""

    target: str | None
    message: str


@dataclass(frozen=True)
class Ready:
    """The target became ready after `start`."""

    status: TargetStatus
    elapsed: timedelta
    deadline: datetime | None


@dataclass(frozen=True)
class NotReady:
    """The target did not become ready in time, or failed."""

    status: TargetStatus
    elapsed: timedelta
    message: str


@dataclass(frozen=True)
class StopWarning:
    """Sent `warn_before` the deadline."""

    target: str
    deadline: datetime


@dataclass(frozen=True)
class StartedOutside:
    """A target scaled up outside toggler got an auto-stop deadline."""

    target: str
    replicas: int
    deadline: datetime | None


@dataclass(frozen=True)
class StoppedOutside:
    """A target scaled to 0 outside toggler: its deadline was cancelled."""

    target: str


@dataclass(frozen=True)
class ScheduledStart:
    """A cron schedule started a target."""

    started: Started


Outcome = (
    Started | Stopped | StoppedMany | Extended | NothingToExtend | StatusReport | Listing | HelpText | Usage
    | Refused | Failed | Ready | NotReady | StopWarning | StartedOutside | StoppedOutside | ScheduledStart
)

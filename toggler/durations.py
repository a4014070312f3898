"""Human durations: parse `90s`, `45m`, `2h`, `1h30m`, `1d`, `2 hours`; format them back.

Pure module: no I/O, no third-party imports.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS: dict[str, int] = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_PART = re.compile(r"\s*(\d+)\s*([a-z]+)", re.IGNORECASE)
_WHOLE = re.compile(r"^(?:\s*\d+\s*[a-z]+)+\s*$", re.IGNORECASE)

DURATION_PATTERN = r"^\s*(\d+\s*[a-zA-Z]+\s*)+$"
"""Loose JSON-Schema pattern for duration strings (the parser is the authority)."""


class DurationError(ValueError):
    """A string that is not a duration."""


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`, `90s`, `2 hours`, `1d`; reject zero, negatives and unknown units."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise DurationError(f"invalid duration {text!r}: use forms like 90s, 45m, 2h, 1h30m, 1d")
    seconds = 0
    for amount, unit in _PART.findall(text):
        factor = _UNITS.get(unit.lower())
        if factor is None:
            raise DurationError(f"invalid duration {text!r}: unknown unit {unit!r} (use s, m, h, d, w)")
        seconds += int(amount) * factor
    if seconds <= 0:
        raise DurationError(f"invalid duration {text!r}: must be longer than zero")
    return timedelta(seconds=seconds)


def is_duration(text: str) -> bool:
    """True when `text` parses as a duration."""
    try:
        parse_duration(text)
    except DurationError:
        return False
    return True


def format_duration(value: timedelta) -> str:
    """Compact canonical form: `1d2h`, `1h30m`, `45s`; sub-second parts are dropped."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, total = divmod(total, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def humanize(value: timedelta) -> str:
    """Friendly rounding for chat: `2 h`, `1 h 30 min`, `45 s`, `3 d`."""
    total = round(value.total_seconds())
    if total < 60:
        return f"{max(total, 0)} s"
    minutes = (total + 30) // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, mins = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h" if not mins else f"{hours} h {mins} min"
    days, hours = divmod(hours, 24)
    return f"{days} d" if not hours else f"{days} d {hours} h"

"""Validate five-field crontab expressions (minute hour day month weekday) without a scheduler.

Pure module. Standard crontab semantics: weekday 0 and 7 are Sunday, names `mon`..`sun` and
`jan`..`dec` are accepted. The timers adapter translates to APScheduler's own numbering.
"""

from __future__ import annotations

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...], int], ...] = (
    ("minute", 0, 59, (), 0),
    ("hour", 0, 23, (), 0),
    ("day of month", 1, 31, (), 0),
    ("month", 1, 12, MONTHS, 1),
    ("day of week", 0, 7, WEEKDAYS, 0),
)


class CronError(ValueError):
    """Not a valid five-field cron expression."""


def _number(token: str, names: tuple[str, ...], offset: int, field: str) -> int:
    low = token.lower()
    if low in names:
        return names.index(low) + offset
    if not token.isdigit():
        raise CronError(f"{field}: {token!r} is not a number{' or name' if names else ''}")
    return int(token)


def _check_item(item: str, spec: tuple[str, int, int, tuple[str, ...], int]) -> None:
    field, low, high, names, offset = spec
    base, _, step = item.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        raise CronError(f"{field}: step {step!r} must be a positive number")
    if base == "*":
        return
    start, dash, end = base.partition("-")
    bounds = [_number(start, names, offset, field)]
    if dash:
        bounds.append(_number(end, names, offset, field))
    for value in bounds:
        if not low <= value <= high:
            raise CronError(f"{field}: {value} is outside {low}-{high}")
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        raise CronError(f"{field}: range {base!r} runs backwards")


def validate_cron(expression: str) -> str:
    """Return the expression unchanged when valid, else raise `CronError` naming the field."""
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(
            f"cron expression {expression!r} needs 5 fields (minute hour day month weekday), got {len(fields)}"
        )
    for text, spec in zip(fields, _FIELDS, strict=True):
        for item in text.split(","):
            if not item:
                raise CronError(f"{spec[0]}: empty list item in {text!r}")
            _check_item(item, spec)
    return expression

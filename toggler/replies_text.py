"""Building blocks for chat replies: text parts that render to plain text and escaped HTML, and times.

A reply is written once as parts: `str` (plain words, HTML-escaped) and `Code` (a target name, command or
other literal: backticks in plain, `<code>` in HTML). `Times` shows moments in the configured time zone.
Pure module; must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from toggler.durations import humanize


@dataclass(frozen=True)
class Reply:
    """One chat message: a plain `body` and an HTML `formatted_body`."""

    plain: str
    html: str


@dataclass(frozen=True)
class Code:
    """A literal shown as code: a target name, a command, an alias."""

    text: str


Part = str | Code
Line = Sequence[Part]


def to_plain(parts: Iterable[Part]) -> str:
    """Plain text: code in backticks."""
    return "".join(f"`{part.text}`" if isinstance(part, Code) else part for part in parts)


def to_html(parts: Iterable[Part]) -> str:
    """HTML: everything escaped, code in `<code>`."""
    return "".join(
        f"<code>{escape(part.text)}</code>" if isinstance(part, Code) else escape(part) for part in parts
    )


def lines_reply(*lines: Line) -> Reply:
    """Several lines: newlines in plain, `<br>` in HTML."""
    return Reply("\n".join(to_plain(line) for line in lines), "<br>".join(to_html(line) for line in lines))


def bullets_reply(head: Line | None, items: Sequence[Line], tail: Line | None = None) -> Reply:
    """An optional heading, a bulleted list and an optional closing line."""
    plain = [to_plain(head)] if head else []
    plain += [f"• {to_plain(item)}" for item in items]
    html = to_html(head) if head else ""
    html += "<ul>" + "".join(f"<li>{to_html(item)}</li>" for item in items) + "</ul>"
    if tail:
        plain.append(to_plain(tail))
        html += to_html(tail)
    return Reply("\n".join(plain), html)


def inline(text: str) -> list[Part]:
    """Turn a one-line message that marks code with backticks into parts (unbalanced: all plain)."""
    flat = " ".join(text.split())
    pieces = flat.split("`")
    if len(pieces) % 2 == 0:
        return [flat]
    return [Code(piece) if index % 2 else piece for index, piece in enumerate(pieces) if piece or index % 2]


def code_list(names: Iterable[str]) -> list[Part]:
    """`web`, `db`, `cache`."""
    parts: list[Part] = []
    for name in names:
        if parts:
            parts.append(", ")
        parts.append(Code(name))
    return parts


def plural(count: int, word: str) -> str:
    """`1 replica`, `2 replicas`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass(frozen=True)
class Times:
    """Shows moments in the configured zone, relative to `now`."""

    zone: ZoneInfo
    now: datetime

    @classmethod
    def of(cls, timezone: str, now: datetime) -> Times:
        """Times for the zone named `timezone`."""
        return cls(ZoneInfo(timezone), now)

    def at(self, moment: datetime) -> str:
        """`18:40` today, `Fri 4 Dec 18:40` on another day."""
        local = moment.astimezone(self.zone)
        if local.date() == self.now.astimezone(self.zone).date():
            return f"{local:%H:%M}"
        return f"{local:%a} {local.day} {local:%b %H:%M}"

    def relative(self, moment: datetime) -> str:
        """`in 2 h` or `2 h ago`."""
        delta = moment - self.now
        return f"in {humanize(delta)}" if delta.total_seconds() >= 0 else f"{humanize(-delta)} ago"

    def stops(self, moment: datetime) -> str:
        """`stops at 18:40 (in 2 h)`."""
        return f"stops at {self.at(moment)} ({self.relative(moment)})"

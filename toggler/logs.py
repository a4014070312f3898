"""Logging set-up: text or JSON lines on stderr, with known secrets redacted from every record.

`register_secret(value)` remembers a secret string (a password, a client secret, an access token);
`RedactingFilter` replaces each remembered string with `***` in the message, its arguments, the
exception text and the stack text before any handler formats the record.
Pure standard library; must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LogFormat = Literal["text", "json"]

_secrets: set[str] = set()
_lock = threading.Lock()
# LogRecord attributes that are not `extra=` fields (the JSON formatter adds only the extras).
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def register_secret(value: str | None) -> None:
    """Redact `value` from every log record from now on. Empty or blank values are ignored."""
    if value and value.strip():
        with _lock:
            _secrets.add(value)


def forget_secrets() -> None:
    """Drop every registered secret (for tests and re-configuration)."""
    with _lock:
        _secrets.clear()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `***` (longest secrets first)."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Renders the message and exception text early so secrets can be removed; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace registered secrets in the rendered message, exception and stack text."""
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then `extra=` fields and exception text."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise one record; non-JSON values are written with `str()`."""
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, default=str, ensure_ascii=False)


class _TogglerHandler(logging.StreamHandler[TextIO]):
    """The handler `setup_logging` installs (calling it again replaces only this one).

    Without an explicit stream it writes to whatever `sys.stderr` is at the time of each record,
    like `logging.lastResort`, so redirected or captured stderr keeps working.
    """

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream)
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        """The fixed stream, else the current `sys.stderr`."""
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        self._fixed = value


def setup_logging(level: str = "INFO", fmt: LogFormat = "text", *, stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr) as text or JSON lines, secrets redacted."""
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _TogglerHandler)]:
        root.removeHandler(old)
    handler = _TogglerHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(name)
    return handler

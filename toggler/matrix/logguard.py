"""Keeps secrets out of third-party Matrix logging, whatever the log level.

At DEBUG, nio logs every response it validates (the login response included, with its access token) and
peewee logs the crypto store's SQL (pickled Olm accounts and sessions). `install()` attaches filters to
those loggers: tokens in nio's records are masked, peewee's DEBUG records are dropped, and every record
passes through `toggler.logs.redact` for secrets registered so far. Standard library only.
"""

from __future__ import annotations

import logging
import re

from toggler.logs import MASK, redact

TOKEN_RE = re.compile(r"""(['"](?:access_token|refresh_token|password)['"]\s*:\s*['"])[^'"]*""")
NIO_LOGGERS = (
    "nio.responses",
    "nio.client.async_client",
    "nio.client.base_client",
    "nio.client.http_client",
    "nio.http",
    "nio.rooms",
    "nio.crypto.log",
    "nio.store.log",
    "nio.events.misc",
    "nio.events.presence",
)
STORE_LOGGERS = ("peewee",)


def scrub(text: str) -> str:
    """`text` with token/password values and registered secrets masked."""
    return redact(TOKEN_RE.sub(lambda match: match.group(1) + MASK, text))


class ScrubFilter(logging.Filter):
    """Renders the record's message and masks secrets in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class DropDebugFilter(logging.Filter):
    """Drops DEBUG records (the crypto store's SQL carries pickled keys)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def install() -> None:
    """Attach the filters (once) to nio's and the crypto store's loggers."""
    for name in NIO_LOGGERS:
        _attach(logging.getLogger(name), ScrubFilter)
    for name in STORE_LOGGERS:
        _attach(logging.getLogger(name), DropDebugFilter)


def _attach(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(existing, kind) for existing in logger.filters):
        logger.addFilter(kind())

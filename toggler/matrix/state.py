"""What the bot must remember across restarts so nothing runs twice: the sync token and handled events.

`SyncState` is a small JSON file next to the crypto store (`state.json`, mode 0600): the last
`next_batch`, a bounded list of handled event ids (oldest dropped first), and the newest
`origin_server_ts` seen in the first sync of a fresh store (everything up to it is room history).
Writes are atomic (temporary file + rename). Standard library only.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
STATE_FILE = "state.json"
MAX_HANDLED = 2000
VERSION = 1


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by the owner only (0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class SyncState:
    """The persisted sync token, handled event ids (bounded) and the history cut-off of a fresh store."""

    def __init__(self, path: Path, *, limit: int = MAX_HANDLED) -> None:
        self.path = path
        self.limit = limit
        self.token: str | None = None
        self.history_until_ms: int | None = None
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._dirty = False

    @classmethod
    def load(cls, directory: Path, *, limit: int = MAX_HANDLED) -> SyncState:
        """Read `state.json` from `directory`; a missing or unreadable file gives a fresh state."""
        state = cls(directory / STATE_FILE, limit=limit)
        try:
            data = json.loads(state.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return state
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable sync state %s: %s", state.path, exc)
            return state
        state._restore(data)
        return state

    def _restore(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        token = data.get("next_batch")
        self.token = token if isinstance(token, str) and token else None
        until = data.get("history_until_ms")
        self.history_until_ms = until if isinstance(until, int) else None
        for event_id in data.get("handled", [])[-self.limit :]:
            if isinstance(event_id, str):
                self._handled[event_id] = None

    @property
    def fresh(self) -> bool:
        """No sync has completed with this store yet: the next sync's timeline is history."""
        return self.token is None

    def is_handled(self, event_id: str) -> bool:
        """Whether `event_id` was handled (or judged) before."""
        return event_id in self._handled

    def mark_handled(self, event_id: str) -> bool:
        """Remember `event_id`; False when it was already known."""
        if event_id in self._handled:
            return False
        self._handled[event_id] = None
        while len(self._handled) > self.limit:
            self._handled.popitem(last=False)
        self._dirty = True
        return True

    def is_history(self, origin_server_ts: int) -> bool:
        """An event from before this store's first sync (judged by the server's own clock)."""
        return self.history_until_ms is not None and origin_server_ts <= self.history_until_ms

    def note_history(self, origin_server_ts: int) -> None:
        """Extend the history cut-off to `origin_server_ts` (first sync of a fresh store)."""
        if self.history_until_ms is None or origin_server_ts > self.history_until_ms:
            self.history_until_ms = origin_server_ts
            self._dirty = True

    def advance(self, token: str) -> None:
        """Record the `next_batch` of a sync whose events were all taken in hand."""
        if token != self.token:
            self.token = token
            self._dirty = True

    def save(self) -> None:
        """Write the state if it changed since the last save."""
        if not self._dirty:
            return
        data = {
            "version": VERSION,
            "next_batch": self.token,
            "history_until_ms": self.history_until_ms,
            "handled": list(self._handled),
        }
        write_private(self.path, json.dumps(data))
        self._dirty = False

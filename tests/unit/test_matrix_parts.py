"""The Matrix adapter's small pure parts: sync state, backoff, event contents, credentials, log scrubbing."""

from __future__ import annotations

import json
import logging
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from toggler.matrix import content, logguard
from toggler.matrix.backoff import Backoff
from toggler.matrix.session import Credentials, CredentialsFile
from toggler.matrix.state import STATE_FILE, SyncState
from toggler.replies_text import Reply


def test_sync_state_round_trip_is_private_and_bounded(tmp_path: Path) -> None:
    state = SyncState.load(tmp_path, limit=3)
    assert state.fresh and not state.is_history(1)
    state.note_history(1000)
    for event_id in ("$a", "$b", "$c", "$d"):
        assert state.mark_handled(event_id)
    assert not state.mark_handled("$d")
    state.advance("s1")
    state.save()
    assert stat.S_IMODE((tmp_path / STATE_FILE).stat().st_mode) == 0o600
    again = SyncState.load(tmp_path, limit=3)
    assert again.token == "s1" and not again.fresh
    assert again.is_history(1000) and not again.is_history(1001)
    assert not again.is_handled("$a") and all(again.is_handled(e) for e in ("$b", "$c", "$d"))


def test_unreadable_sync_state_starts_fresh(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    assert SyncState.load(tmp_path).fresh


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets() -> None:
    top = Backoff(base=1, cap=60, rand=lambda: 1.0)
    assert [top.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    low = Backoff(base=1, cap=60, rand=lambda: 0.0)
    assert [low.next_delay() for _ in range(3)] == [0.5, 1, 2]
    top.reset()
    assert top.next_delay() == 1


def test_notice_reply_and_edit_contents() -> None:
    reply = Reply("`web` is on", "<code>web</code> is on")
    notice = content.notice(reply, reply_to="$cmd", mention="@alice:x")
    assert notice["msgtype"] == "m.notice" and notice["format"] == "org.matrix.custom.html"
    assert notice["m.relates_to"] == {"m.in_reply_to": {"event_id": "$cmd"}}
    assert notice["m.mentions"] == {"user_ids": ["@alice:x"]}
    edit = content.edit("$reply", reply)
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$reply"}
    assert edit["m.new_content"]["body"] == "`web` is on" and edit["body"].startswith("* ")
    assert "m.relates_to" not in edit["m.new_content"]


def test_offline_text() -> None:
    text = content.offline("start web", timedelta(hours=2))
    assert text.plain == "I was offline when you sent `start web` 2 h ago; send it again if you still want it"
    assert "<code>start web</code>" in text.html
    assert content.echo("status").plain == "🦞 status"


def test_credentials_file_is_private_and_never_shows_the_token(tmp_path: Path) -> None:
    store = CredentialsFile(tmp_path)
    assert store.load() is None
    creds = Credentials("@bot:x", "DEVICE", "syt_secret")
    store.save(creds)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load() == creds
    assert "syt_secret" not in repr(creds)
    store.path.write_text(json.dumps({"user_id": "@bot:x", "device_id": "", "access_token": "t"}))
    assert store.load() is None


def test_nio_debug_records_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    logguard.install()
    logguard.install()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("nio.responses").debug("Validating %s", {"access_token": "syt_abc", "device_id": "D"})
    logging.getLogger("peewee").debug("INSERT pickle")
    assert "syt_abc" not in caplog.text and "'access_token': '***'" in caplog.text
    assert "INSERT pickle" not in caplog.text
    assert len(logging.getLogger("nio.responses").filters) == 1

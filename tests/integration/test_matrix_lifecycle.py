"""Restarts, stale commands, dead tokens, a homeserver outage and secrets in logs, against a real Synapse."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path

import pytest

from tests.support.synapse import (
    Account,
    RunningBot,
    Synapse,
    UserClient,
    ask,
    bot_config,
    fake_cluster,
    free_port,
    open_room,
)
from toggler.config import Config

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(120)]


def config_for(synapse: Synapse, bot: Account, store: Path, alias: str, alice: UserClient, **defaults: str) -> Config:
    return bot_config(synapse, bot, store, rooms={alias: {"users": [alice.user_id], "targets": ["*"]}},
                      defaults=dict(defaults))


async def test_restart_keeps_the_device_and_answers_stale_commands_once(
        people: dict[str, UserClient], running_synapse: Synapse, bot_account: Account, tmp_path: Path) -> None:
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    store = tmp_path / "store"
    config = config_for(running_synapse, bot_account, store, alias, alice, max_command_age="2s")
    first = await RunningBot(config, fake_cluster(config)).start()
    await alice.wait_member(room_id, bot_account.user_id)
    status_id = await alice.send(room_id, "status")
    await alice.reply_to(room_id, status_id)
    device = first.bot.session.device_id
    creds = store / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert json.loads(creds.read_text())["device_id"] == device
    assert await first.stop() < 5

    # sent while the bot is away, and older than max_command_age when it comes back
    stale_id = await alice.send(room_id, "start web")
    await asyncio.sleep(2.5)
    cluster = first.cluster
    second = await RunningBot(config, cluster, first.timers).start()
    try:
        assert second.bot.session.device_id == device
        offline = await alice.reply_to(room_id, stale_id)
        assert "I was offline when you sent `start web`" in offline.body
        assert "send it again if you still want it" in offline.body
        assert cluster.objects[("apps", "web")].replicas == 0 and not cluster.writes
        # new messages still decrypt; nothing from before is answered again
        assert "web" in await ask(alice, room_id, "status web")
        await alice.quiet(room_id, 1.0)
        assert len([s for s in alice.notices(room_id) if s.reply_to == status_id]) == 1
        assert len([s for s in alice.notices(room_id) if s.reply_to == stale_id]) == 1
    finally:
        await second.stop()


async def test_a_fresh_store_never_runs_room_history(people: dict[str, UserClient], running_synapse: Synapse,
                                                     bot_account: Account, tmp_path: Path) -> None:
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account, encrypted=False)
    config = config_for(running_synapse, bot_account, tmp_path / "one", alias, alice)
    first = await RunningBot(config, fake_cluster(config)).start()
    await alice.wait_member(room_id, bot_account.user_id)
    await first.stop()
    history_id = await alice.send(room_id, "start web")  # recent, but before the new store's first sync

    fresh = config_for(running_synapse, bot_account, tmp_path / "two", alias, alice)
    second = await RunningBot(fresh, first.cluster).start()
    try:
        assert second.bot.session.device_id != first.bot.session.device_id
        assert "web" in await ask(alice, room_id, "status")
        assert not [s for s in alice.notices(room_id) if s.reply_to == history_id]
        assert first.cluster.objects[("apps", "web")].replicas == 0
    finally:
        await second.stop()


async def test_dead_tokens_mean_logging_in_again_on_the_same_device(
        people: dict[str, UserClient], running_synapse: Synapse, bot_account: Account, tmp_path: Path) -> None:
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    store = tmp_path / "store"
    config = config_for(running_synapse, bot_account, store, alias, alice)
    first = await RunningBot(config, fake_cluster(config)).start()
    await alice.wait_member(room_id, bot_account.user_id)
    device = first.bot.session.device_id
    await first.stop()

    creds = store / "credentials.json"
    data = json.loads(creds.read_text())
    creds.write_text(json.dumps({**data, "access_token": "syt_dead"}))
    second = await RunningBot(config, first.cluster).start()
    try:
        assert second.bot.session.device_id == device
        assert json.loads(creds.read_text())["access_token"] not in ("syt_dead", data["access_token"])
        assert "web" in await ask(alice, room_id, "status")
        # the token dies while running: the next sync or send logs in again
        second.bot.session.client.access_token = "syt_dead_again"
        assert "web" in await ask(alice, room_id, "list", timeout=20)
        assert second.bot.session.device_id == device and second.bot.logged_in
    finally:
        await second.stop()


async def test_a_stop_during_the_first_key_upload_loses_no_keys(
        people: dict[str, UserClient], running_synapse: Synapse, bot_account: Account, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """nio marks one-time keys published (and saves the account) only when the upload's answer arrives. A stop
    that cut the upload short left Synapse holding keys the stored account then generated again under the same
    ids ("One time key … already exists"), and messages encrypted to those keys could never be decrypted."""
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    config = config_for(running_synapse, bot_account, tmp_path / "store", alias, alice)
    cluster = fake_cluster(config)
    for _ in range(2):  # start() returns right after the first sync: the key upload has just begun
        await (await RunningBot(config, cluster).start()).stop()
    bot = await RunningBot(config, cluster).start()
    try:
        await alice.wait_member(room_id, bot_account.user_id)
        assert "web" in await ask(alice, room_id, "status")
    finally:
        await bot.stop()
    assert "already exists" not in caplog.text and "key upload failed" not in caplog.text


async def test_homeserver_restart_mid_run(people: dict[str, UserClient], running_synapse: Synapse,
                                          bot_account: Account, tmp_path: Path) -> None:
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    config = config_for(running_synapse, bot_account, tmp_path / "store", alias, alice)
    bot = await RunningBot(config, fake_cluster(config)).start()
    try:
        await alice.wait_member(room_id, bot_account.user_id)
        assert "web" in await ask(alice, room_id, "status")
        running_synapse.stop()
        await asyncio.sleep(1.5)
        running_synapse.start()
        assert "web" in await ask(alice, room_id, "status", timeout=30)
        assert bot.bot.logged_in and bot.bot.last_sync_ok is not None
    finally:
        await bot.stop()


async def test_debug_logs_hold_no_secrets(people: dict[str, UserClient], running_synapse: Synapse,
                                          bot_account: Account, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    store = tmp_path / "store"
    config = config_for(running_synapse, bot_account, store, alias, alice)
    bot = await RunningBot(config, fake_cluster(config)).start()
    try:
        await alice.wait_member(room_id, bot_account.user_id)
        assert "started `web`" in await ask(alice, room_id, "start web")
    finally:
        await bot.stop()
    token = json.loads((store / "credentials.json").read_text())["access_token"]
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    assert "toggler" in logged and len(caplog.records) > 20
    assert bot_account.password not in logged
    assert token not in logged


async def test_unreachable_homeserver_backs_off_and_closes_quickly(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = bot_config(nobody, Account("@toggler:localhost", "pw-unused-123"), tmp_path / "store",
                        rooms={"*": {"users": ["@alice:localhost"], "targets": ["*"]}})
    bot = RunningBot(config, fake_cluster(config))
    task = asyncio.create_task(bot.bot.run())
    await asyncio.sleep(2.0)
    assert not bot.bot.logged_in and bot.bot.last_sync_ok is None
    assert "cannot log in yet" in caplog.text
    bot.task = task
    assert await bot.stop() < 1.0

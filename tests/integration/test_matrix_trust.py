"""Messages the bot cannot decrypt, and a device whose keys changed, against a real Synapse."""

from __future__ import annotations

import logging
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
    open_room,
)

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(90)]


def shut_out(user: UserClient, bot_id: str) -> None:
    """`user`'s client stops sharing room keys with the bot's devices (as a broken client would)."""
    for device in list(user.client.device_store.active_user_devices(bot_id)):
        user.client.blacklist_device(device)


async def test_undecryptable_messages(people: dict[str, UserClient], running_synapse: Synapse,
                                      bot_account: Account, tmp_path: Path) -> None:
    alice, eve = people["alice"], people["eve"]
    room_id, alias = await open_room(alice, bot_account, also=(eve,))
    config = bot_config(running_synapse, bot_account, tmp_path / "store",
                        rooms={alias: {"users": [alice.user_id], "targets": ["*"]}})
    bot = await RunningBot(config, fake_cluster(config)).start()
    try:
        await alice.wait_member(room_id, bot_account.user_id)
        await eve.wait_member(room_id, bot_account.user_id)
        shut_out(alice, bot_account.user_id)
        shut_out(eve, bot_account.user_id)
        first = await alice.send(room_id, "start web")
        ask_again = await alice.reply_to(room_id, first)
        assert "couldn't decrypt your message" in ask_again.body and "send it again" in ask_again.body
        await alice.send(room_id, "start web")  # asked once per 10 min is enough
        await eve.send(room_id, "start web")  # not allowlisted: ignored
        assert await alice.quiet(room_id, 3.0) == []
        assert bot.cluster.objects[("apps", "web")].replicas == 0
    finally:
        await bot.stop()


async def test_a_device_whose_keys_changed_is_refused(people: dict[str, UserClient], running_synapse: Synapse,
                                                      bot_account: Account, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="toggler")
    alice, eve = people["alice"], people["eve"]
    room_id, alias = await open_room(alice, bot_account, also=(eve,))
    config = bot_config(running_synapse, bot_account, tmp_path / "store",
                        rooms={alias: {"users": [alice.user_id], "targets": ["*"]}})
    bot = await RunningBot(config, fake_cluster(config)).start()
    impostor = UserClient(running_synapse.base_url, alice.account, tmp_path / "impostor")
    try:
        await alice.wait_member(room_id, bot_account.user_id)
        assert "web" in await ask(alice, room_id, "status")  # alice's device is now trusted on first use
        # someone with alice's password logs in with her device id but new keys
        impostor.client.device_id = alice.client.device_id
        await impostor.start()
        await impostor.wait_member(room_id, bot_account.user_id)
        command = await impostor.send(room_id, "start web")
        # the refusal is encrypted for the room's other members, not for the untrusted device
        refusal = await eve.reply_to(room_id, command, timeout=15)
        assert "I don't trust the device" in refusal.body
        assert (await impostor.reply_to(room_id, command)).body == ""
        assert bot.cluster.objects[("apps", "web")].replicas == 0
        assert "blacklisted, its commands are refused" in caplog.text
    finally:
        await impostor.close()
        await bot.stop()

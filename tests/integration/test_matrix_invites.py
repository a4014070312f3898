"""Invites (pending at start-up and while running) and `require_encryption`, against a real Synapse."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from nio import ErrorResponse, RoomGetStateEventResponse

from tests.support.synapse import (
    Account,
    RunningBot,
    Synapse,
    UserClient,
    ask,
    bot_config,
    fake_cluster,
)

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(90)]


async def membership(user: UserClient, room_id: str, bot: str, want: str, timeout: float = 15.0) -> None:
    """Until the bot's membership in `room_id` (as the homeserver has it) becomes `want` (join/leave)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        response = await user.client.room_get_state_event(room_id, "m.room.member", bot)
        seen = response.content.get("membership") if isinstance(response, RoomGetStateEventResponse) else None
        if seen == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{bot} is {seen} in {room_id}, not {want}")


async def test_invites_follow_the_policy(people: dict[str, UserClient], running_synapse: Synapse,
                                         bot_account: Account, tmp_path: Path) -> None:
    alice, eve = people["alice"], people["eve"]
    bot_id = bot_account.user_id
    # pending before the bot starts: one from alice (may use the bot anywhere), one from eve (may not),
    # and one from eve into a room configured by id
    early_ok = await alice.create_room(invite=[bot_id])
    early_no = await eve.create_room(invite=[bot_id])
    configured = await eve.create_room(invite=[bot_id])
    rooms = {"*": {"users": [alice.user_id], "targets": ["web"]},
             configured: {"users": [alice.user_id], "targets": ["web"]}}
    config = bot_config(running_synapse, bot_account, tmp_path / "store", rooms=rooms)
    bot = await RunningBot(config, fake_cluster(config)).start()
    try:
        await membership(alice, early_ok, bot_id, "join")
        await membership(eve, early_no, bot_id, "leave")
        await membership(eve, configured, bot_id, "join")
        # while running; what was said before the bot joined is history, not a command
        late_ok = await alice.create_room(invite=[], encrypted=False)
        before = await alice.send(late_ok, "start web")
        assert not isinstance(await alice.client.room_invite(late_ok, bot_id), ErrorResponse)
        late_no = await eve.create_room(invite=[bot_id])
        await membership(alice, late_ok, bot_id, "join")
        await membership(eve, late_no, bot_id, "leave")
        assert "`web` is off" in await ask(alice, late_ok, "status web")
        assert not [seen for seen in alice.notices(late_ok) if seen.reply_to == before]
        assert "started `web`" in await ask(alice, late_ok, "start web")
    finally:
        await bot.stop()


async def test_require_encryption_refuses_plain_commands(people: dict[str, UserClient], running_synapse: Synapse,
                                                         bot_account: Account, tmp_path: Path) -> None:
    alice = people["alice"]
    plain = await alice.create_room(invite=[bot_account.user_id], encrypted=False)
    secret = await alice.create_room(invite=[bot_account.user_id], encrypted=True)
    rule = {"users": [alice.user_id], "targets": ["*"], "require_encryption": True}
    config = bot_config(running_synapse, bot_account, tmp_path / "store", rooms={plain: rule, secret: rule})
    bot = await RunningBot(config, fake_cluster(config)).start()
    try:
        await alice.wait_member(plain, bot_account.user_id)
        await alice.wait_member(secret, bot_account.user_id)
        refusal = await ask(alice, plain, "start web")
        assert "only takes encrypted commands" in refusal
        assert bot.cluster.objects[("apps", "web")].replicas == 0
        assert "started `web`" in await ask(alice, secret, "start web")
    finally:
        await bot.stop()

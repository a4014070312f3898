"""The bot against a real Synapse and a real nio user client: every command, encrypted and not.

The Kubernetes side is `tests.fakes.FakeCluster` (the kmock-backed end-to-end runs in the app tests).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes import FakeCluster
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
from toggler.outcomes import StopWarning
from toggler.ports import TargetRef, TargetStatus

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(90)]


class SlowCluster(FakeCluster):
    """Replicas become ready `delay` seconds after a scale-up, like a real controller."""

    def __init__(self, delay: float = 0.6) -> None:
        super().__init__(auto_ready=False)
        self.delay = delay

    async def scale(self, ref: TargetRef, replicas: int, *, annotations: dict[str, str | None]) -> TargetStatus:
        status = await super().scale(ref, replicas, annotations=annotations)
        if replicas > 0:
            asyncio.get_running_loop().call_later(self.delay, self._ready, ref, replicas)
        return status

    def _ready(self, ref: TargetRef, replicas: int) -> None:
        self.objects[(ref.namespace, ref.name)].ready = replicas

    async def wait_ready(self, ref: TargetRef, *, timeout: float) -> TargetStatus:
        for _ in range(int(timeout / 0.05)):
            status = self.status(ref)
            if status.ready >= status.desired:
                return status
            await asyncio.sleep(0.05)
        return await super().wait_ready(ref, timeout=0)


async def test_every_command_in_an_encrypted_room(people: dict[str, UserClient], running_synapse: Synapse,
                                                  bot_account: Account, tmp_path: Path) -> None:
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    config = bot_config(running_synapse, bot_account, tmp_path / "store",
                        rooms={alias: {"users": [alice.user_id], "targets": ["*"]}})
    bot = await RunningBot(config, fake_cluster(config, cluster=SlowCluster())).start()
    try:
        await alice.wait_member(room_id, bot_account.user_id)
        help_reply = await alice.reply_to(room_id, await alice.send(room_id, "help"))
        assert "start" in help_reply.body and "<code>" in help_reply.html
        assert help_reply.event.source["content"]["msgtype"] == "m.notice"
        assert help_reply.event.decrypted, "replies in an encrypted room are encrypted"
        assert "web" in await ask(alice, room_id, "list")
        assert "web" in await ask(alice, room_id, "status")

        start_id = await alice.send(room_id, "start site for 1h")
        started = await alice.reply_to(room_id, start_id)
        assert "starting `web` (0/1 ready)" in started.body
        edited = await alice.edit_of(started.event.event_id)
        assert "`web` is on — 1/1 ready" in edited.body
        assert bot.cluster.objects[("apps", "web")].replicas == 1
        assert "web" in bot.timers.armed

        assert "now stops at" in await ask(alice, room_id, "extend web by 30m")
        assert "web" in await ask(alice, room_id, "status web")
        assert "stopped `web`" in await ask(alice, room_id, "stop web")
        assert "already off" in await ask(alice, room_id, "stop web")
        assert "usage" in await ask(alice, room_id, "start web for ages")
        assert "`db` is off" in await ask(alice, room_id, "extend db 1h")
        assert "already off" in await ask(alice, room_id, "stop all")
        assert bot.cluster.objects[("apps", "web")].replicas == 0
    finally:
        assert await bot.stop() < 5


async def test_unencrypted_room_strangers_and_grants(people: dict[str, UserClient], running_synapse: Synapse,
                                                     bot_account: Account, tmp_path: Path) -> None:
    alice, bob, eve = people["alice"], people["bob"], people["eve"]
    room_id, alias = await open_room(alice, bot_account, encrypted=False, also=(bob, eve))
    rooms = {alias: {"users": [alice.user_id], "targets": ["web"], "grants": {bob.user_id: ["db"]}}}
    config = bot_config(running_synapse, bot_account, tmp_path / "store", rooms=rooms)
    bot = await RunningBot(config, fake_cluster(config)).start()
    try:
        await alice.wait_member(room_id, bot_account.user_id)
        reply = await alice.reply_to(room_id, await alice.send(room_id, "start web"))
        assert "started `web`" in reply.body and not reply.event.decrypted
        # bob may use db, not web: the parser only knows his targets, so `web` is unknown to him
        refused = await ask(bob, room_id, "start web")
        assert "`web` is not a target you can use here" in refused
        assert "db" in refused
        assert bot.cluster.objects[("apps", "web")].replicas == 1
        # alice's room grants only web
        assert "not a target you can use here" in await ask(alice, room_id, "stop db")
        # eve is on no list: silence, and nothing happens
        await eve.send(room_id, "stop web")
        assert await eve.quiet(room_id, 1.5) == []
        assert bot.cluster.objects[("apps", "web")].replicas == 1
    finally:
        await bot.stop()


async def test_replies_edits_echo_and_notifications(people: dict[str, UserClient], running_synapse: Synapse,
                                                    bot_account: Account, tmp_path: Path) -> None:
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    config = bot_config(running_synapse, bot_account, tmp_path / "store", echo=True,
                        rooms={alias: {"users": [alice.user_id], "targets": ["*"], "command_prefix": "!t"}})
    bot = await RunningBot(config, fake_cluster(config, auto_ready=False)).start()
    try:
        await alice.wait_member(room_id, bot_account.user_id)
        # without the prefix: not for the bot
        unprefixed = await alice.send(room_id, "status")
        # a reply with the old quoted fallback still works
        quoted = f"> <{bot_account.user_id}> something earlier\n\n!t status"
        first = await alice.send(room_id, "hello")
        reply_id = await alice.send(room_id, quoted, **{"m.relates_to": {"m.in_reply_to": {"event_id": first}}})
        answer = await alice.reply_to(room_id, reply_id)
        assert "web" in answer.body
        echo = await alice.wait_for(lambda s: s.room_id == room_id and s.body.startswith("🦞 "))
        assert "!t status" in echo.body
        # a command in a thread is answered in that thread
        threaded = {"m.relates_to": {"rel_type": "m.thread", "event_id": first, "is_falling_back": True,
                                     "m.in_reply_to": {"event_id": first}}}
        in_thread = await alice.reply_to(room_id, await alice.send(room_id, "!t list", **threaded))
        assert in_thread.relates_to["rel_type"] == "m.thread" and in_thread.relates_to["event_id"] == first
        # an edit of a command is not a command
        edit = {"m.new_content": {"msgtype": "m.text", "body": "!t start web"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": reply_id}}
        edit_id = await alice.send(room_id, "* !t start web", **edit)
        await alice.quiet(room_id, 1.5)
        assert bot.cluster.objects[("apps", "web")].replicas == 0
        assert not [s for s in alice.notices(room_id) if s.reply_to in (edit_id, unprefixed)]

        # start on a cluster that never gets ready: the reply is edited into the failure
        started = await alice.reply_to(room_id, await alice.send(room_id, "!t start web"))
        failed = await alice.edit_of(started.event.event_id)
        assert "did not become ready" in failed.body

        # the service's notifier: a warning to the room alias
        deadline = datetime.now(UTC) + timedelta(minutes=5)
        await bot.bot.notify(alias, StopWarning("web", deadline))
        warning = await alice.wait_for(lambda s: s.room_id == room_id and "stops in" in s.body)
        assert "`extend web 1h`" in warning.body and warning.reply_to is None
        await bot.bot.notify(None, StopWarning("web", deadline))  # nowhere to send: no error
    finally:
        await bot.stop()

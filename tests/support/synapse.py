"""Fixtures for a real Synapse homeserver on 127.0.0.1 (DESIGN.md §5), real nio user clients, and the bot.

`synapse` (session scope) starts `toggler.devenv.synapse.Synapse` with a fresh data dir and stops it at
teardown; a missing Synapse virtualenv is an error (`make test` creates it), never a skip.
`UserClient` (`toggler.devenv.chat`) is a person in a chat client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeCluster, FakeTimers
from toggler.config import Config
from toggler.devenv.chat import UserClient
from toggler.devenv.synapse import Account, Synapse, free_port, synapse_python, unique

__all__ = ["Account", "Synapse", "UserClient", "free_port"]
from toggler.matrix import MatrixBot
from toggler.policy import Policy
from toggler.service import Service


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """A running Synapse for the whole session (skipped when its virtualenv is missing)."""
    python = synapse_python()
    if not python.exists():
        pytest.fail(f"no Synapse interpreter at {python}: run `make synapse` (make test does)")
    server = Synapse(tmp_path_factory.mktemp("synapse"), python)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_synapse(synapse: Synapse) -> Synapse:
    """The session Synapse, started again if an earlier test left it stopped."""
    if synapse.process is None:
        synapse.start()
    return synapse


# --- the bot under test --------------------------------------------------------------------------------

class RealClock:
    """Wall-clock time (the bot judges message age against the homeserver's timestamps)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def bot_config(synapse: Synapse | str, bot: Account, store: Path, *, rooms: dict[str, Any],
               targets: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None,
               echo: bool = False) -> Config:
    """A config for the bot account on the test Synapse (or a URL) with targets `web` (alias `site`) and `db`."""
    homeserver = synapse if isinstance(synapse, str) else synapse.base_url
    return Config(
        matrix={"homeserver": homeserver, "user_id": bot.user_id, "password": bot.password,
                "store_path": store, "device_name": "toggler-test", "echo": echo},
        targets=targets or {"web": {"namespace": "apps", "aliases": ["site"]}, "db": {"namespace": "apps"}},
        rooms=rooms, defaults=defaults or {},
    )


def fake_cluster(config: Config, *, auto_ready: bool = True, cluster: FakeCluster | None = None) -> FakeCluster:
    """A `FakeCluster` (or the given one) holding every target of `config`, all off."""
    cluster = cluster or FakeCluster(auto_ready=auto_ready)
    for name, target in config.targets.items():
        cluster.add(target.namespace, target.name or name)
    return cluster


@dataclass
class RunningBot:
    """`MatrixBot` + `Service` over fakes, running `bot.run()` in a task."""

    config: Config
    cluster: FakeCluster
    timers: FakeTimers = field(default_factory=FakeTimers)
    bot: MatrixBot = field(init=False)
    service: Service = field(init=False)
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.service = Service(self.config, cluster=self.cluster, timers=self.timers, clock=RealClock(),
                               policy=Policy(self.config))
        self.bot = MatrixBot(self.config, service=self.service)
        self.service.notifier = self.bot

    async def start(self, timeout: float = 20.0) -> RunningBot:
        """Run the bot and wait for its first successful sync."""
        self.task = asyncio.create_task(self.bot.run())
        deadline = time.monotonic() + timeout
        while self.bot.last_sync_ok is None:
            if self.task.done():
                self.task.result()
                raise AssertionError("the bot stopped before its first sync")
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not sync within {timeout} s")
            await asyncio.sleep(0.05)
        return self

    async def stop(self) -> float:
        """Close the bot; returns how long that took."""
        begun = time.monotonic()
        await self.bot.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)
        return time.monotonic() - begun

    async def synced_after(self, moment: float, timeout: float = 20.0) -> None:
        """Until the bot completed a sync that started after `moment` (monotonic)."""
        deadline = time.monotonic() + timeout
        while (self.bot.last_sync_ok or 0) <= moment:
            assert time.monotonic() < deadline, "the bot did not sync again"
            await asyncio.sleep(0.05)


# --- people, rooms and questions ------------------------------------------------------------------------

@pytest.fixture
async def people(running_synapse: Synapse, tmp_path: Path) -> AsyncIterator[dict[str, UserClient]]:
    """alice (may use everything), bob (may use `db` only), eve (nobody), each with a running client."""
    clients: dict[str, UserClient] = {}
    for name in ("alice", "bob", "eve"):
        account = await running_synapse.register(unique(name))
        clients[name] = await UserClient(running_synapse.base_url, account, tmp_path / name).start()
    yield clients
    for client in clients.values():
        await client.close()


@pytest.fixture
async def bot_account(running_synapse: Synapse) -> Account:
    return await running_synapse.register(unique("toggler"))


async def open_room(user: UserClient, bot: Account, *, encrypted: bool = True, also: tuple[UserClient, ...] = ()
                    ) -> tuple[str, str]:
    """A room created by `user` with an alias, the bot (and `also`) invited; returns (room id, alias)."""
    alias_local = unique("ops")
    invite = [bot.user_id, *(other.user_id for other in also)]
    room_id = await user.create_room(invite=invite, encrypted=encrypted, alias=alias_local)
    for other in also:
        joined = await other.client.join(room_id)
        assert not hasattr(joined, "status_code"), joined
    return room_id, f"#{alias_local}:localhost"


async def ask(user: UserClient, room_id: str, text: str, timeout: float = 10.0) -> str:
    """Send a command and return the plain body of the bot's reply."""
    event_id = await user.send(room_id, text)
    return (await user.reply_to(room_id, event_id, timeout)).body

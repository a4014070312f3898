"""Fixtures for a real Synapse homeserver on 127.0.0.1 (DESIGN.md §5), and a real nio user client.

`synapse` (session scope) starts Synapse from its own virtualenv (`TOGGLER_SYNAPSE_PYTHON`, default
`.cache/synapse-venv/bin/python`) on a free port with a fresh data dir, and stops it at teardown. Tests that
use it are skipped when that interpreter does not exist (`make synapse` creates it).
`UserClient` is a person in a chat client: it creates (encrypted) rooms, invites the bot, sends messages and
waits for the bot's notices and edits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import os
import secrets
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessageNotice,
    RoomMessageText,
    RoomSendResponse,
)
from nio.events import Event

from tests.fakes import FakeCluster, FakeTimers
from toggler.config import Config
from toggler.matrix import MatrixBot
from toggler.policy import Policy
from toggler.service import Service

ROOT = Path(__file__).resolve().parents[2]
SERVER_NAME = "localhost"
RATE = {"per_second": 1000, "burst_count": 1000}
_names = itertools.count(1)


def synapse_python() -> Path:
    """The interpreter of Synapse's own virtualenv."""
    default = ROOT / ".cache" / "synapse-venv" / "bin" / "python"
    return Path(os.environ.get("TOGGLER_SYNAPSE_PYTHON") or default)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    """A name unique within this test session (for users, aliases)."""
    return f"{prefix}{next(_names)}{secrets.token_hex(2)}"


def _rate_limits() -> dict[str, Any]:
    return {
        "rc_message": RATE, "rc_registration": RATE, "rc_key_requests": RATE, "rc_room_creation": RATE,
        "rc_3pid_validation": RATE, "rc_delayed_event_mgmt": RATE, "rc_joins_per_room": RATE,
        "rc_login": {"address": RATE, "account": RATE, "failed_attempts": RATE},
        "rc_joins": {"local": RATE, "remote": RATE},
        "rc_invites": {"per_room": RATE, "per_user": RATE, "per_issuer": RATE},
        "rc_admin_redaction": RATE,
    }


def homeserver_config(data: Path, port: int, shared_secret: str) -> dict[str, Any]:
    """A minimal hs.yaml for tests: one plain HTTP client listener on 127.0.0.1, SQLite, no federation."""
    return {
        "server_name": SERVER_NAME,
        "pid_file": str(data / "homeserver.pid"),
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                       "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}],
        "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
        "log_config": str(data / "log.yaml"),
        "media_store_path": str(data / "media"),
        "signing_key_path": str(data / "signing.key"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "report_stats": False,
        "enable_registration": False,
        "bcrypt_rounds": 4,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        **_rate_limits(),
    }


def _log_config(data: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "plain",
                              "filename": str(data / "homeserver.log")}},
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


def _signing_key() -> str:
    seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    return f"ed25519 a_{secrets.token_hex(2)} {seed}\n"


@dataclass(frozen=True)
class Account:
    """A registered user."""

    user_id: str
    password: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


class Synapse:
    """One Synapse process with its data dir; can be stopped and started again on the same port."""

    def __init__(self, data: Path, python: Path) -> None:
        self.data = data
        self.python = python
        self.port = free_port()
        self.shared_secret = secrets.token_urlsafe(24)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._prepare()

    def _prepare(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        (self.data / "media").mkdir(exist_ok=True)
        (self.data / "signing.key").write_text(_signing_key())
        (self.data / "log.yaml").write_text(yaml.safe_dump(_log_config(self.data)))
        config = homeserver_config(self.data, self.port, self.shared_secret)
        (self.data / "hs.yaml").write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 30.0) -> None:
        """Start Synapse and wait until `/health` answers OK."""
        assert self.process is None, "already running"
        out = (self.data / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.data / "hs.yaml")],
            stdout=out, stderr=subprocess.STDOUT, cwd=self.data,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Synapse exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Synapse did not become healthy in {timeout:.0f} s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """Stop Synapse (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        """Stop and start again: same port, same data."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for name in ("stdout.log", "homeserver.log"):
            path = self.data / name
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    async def register(self, localpart: str | None = None, password: str | None = None, *,
                       admin: bool = False) -> Account:
        """Register a user through the shared-secret admin API (no rate limit, no captcha)."""
        localpart = localpart or unique("user")
        password = password or secrets.token_urlsafe(12)
        url = f"{self.base_url}/_synapse/admin/v1/register"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                nonce = (await response.json())["nonce"]
            mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
            mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                     b"admin" if admin else b"notadmin"]))
            body = {"nonce": nonce, "username": localpart, "password": password, "admin": admin,
                    "mac": mac.hexdigest()}
            async with session.post(url, json=body) as response:
                data = await response.json()
                assert response.status == 200, data
        return Account(data["user_id"], password)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """A running Synapse for the whole session (skipped when its virtualenv is missing)."""
    python = synapse_python()
    if not python.exists():
        pytest.skip(f"no Synapse interpreter at {python}: run `make synapse`")
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


# --- a person with a chat client ----------------------------------------------------------------------

ENCRYPTION_STATE = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


@dataclass
class Seen:
    """One event the user's client received."""

    room_id: str
    event: Event

    @property
    def content(self) -> dict[str, Any]:
        return dict(self.event.source.get("content", {}))

    @property
    def relates_to(self) -> dict[str, Any]:
        return dict(self.content.get("m.relates_to") or {})

    @property
    def reply_to(self) -> str | None:
        return (self.relates_to.get("m.in_reply_to") or {}).get("event_id")

    @property
    def replaces(self) -> str | None:
        return self.relates_to.get("event_id") if self.relates_to.get("rel_type") == "m.replace" else None

    @property
    def body(self) -> str:
        new = self.content.get("m.new_content")
        return str((new or self.content).get("body", ""))

    @property
    def html(self) -> str:
        new = self.content.get("m.new_content")
        return str((new or self.content).get("formatted_body", ""))

    @property
    def sender(self) -> str:
        return str(self.event.sender)


@dataclass
class UserClient:
    """A real nio client with its own store that syncs in the background and records what it sees."""

    homeserver: str
    account: Account
    store: Path
    client: AsyncClient = field(init=False)
    seen: list[Seen] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(store_sync_tokens=True, encryption_enabled=True)
        self.client = AsyncClient(self.homeserver, self.account.user_id, store_path=str(self.store), config=config)
        self.client.add_event_callback(self._on_event, (RoomMessageText, RoomMessageNotice, MegolmEvent))

    @property
    def user_id(self) -> str:
        return self.account.user_id

    async def start(self) -> UserClient:
        """Log in, do a first sync and keep syncing in the background."""
        response = await self.client.login(self.account.password, device_name="test-user")
        assert not isinstance(response, ErrorResponse), response
        first = await self.client.sync(timeout=0, full_state=True)
        assert not isinstance(first, ErrorResponse), first
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        self._task = asyncio.create_task(self.client.sync_forever(timeout=30000))
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()

    async def _on_event(self, room: Any, event: Event) -> None:
        async with self._changed:
            self.seen.append(Seen(room.room_id, event))
            self._changed.notify_all()

    async def create_room(self, *, invite: list[str], encrypted: bool = True, alias: str | None = None) -> str:
        """A private room (encrypted unless told otherwise) with `invite` invited."""
        state = [ENCRYPTION_STATE] if encrypted else []
        response = await self.client.room_create(invite=invite, initial_state=state, alias=alias,
                                                 name=alias or "test room")
        assert isinstance(response, RoomCreateResponse), response
        return str(response.room_id)

    async def wait_member(self, room_id: str, user_id: str, timeout: float = 15.0) -> None:
        """Until `user_id` has joined `room_id` as this client sees it (keys queried, ready to encrypt)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            room = self.client.rooms.get(room_id)
            if room is not None and user_id in room.users and user_id not in room.invited_users:
                if self.client.should_query_keys:
                    await self.client.keys_query()
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{user_id} did not join {room_id} within {timeout} s")

    async def send(self, room_id: str, body: str, *, msgtype: str = "m.text", **extra: Any) -> str:
        """Send a message (encrypted in encrypted rooms, to every device) and return its event id."""
        if self.client.should_query_keys:
            await self.client.keys_query()
        content = {"msgtype": msgtype, "body": body, **extra}
        response = await self.client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True)
        assert isinstance(response, RoomSendResponse), response
        return str(response.event_id)

    async def wait_for(self, match: Callable[[Seen], bool], timeout: float = 10.0) -> Seen:
        """The first seen event (old or new) that matches, waiting up to `timeout` seconds."""
        async def found() -> Seen:
            async with self._changed:
                while True:
                    for item in self.seen:
                        if match(item):
                            return item
                    await self._changed.wait()

        return await asyncio.wait_for(found(), timeout)

    async def reply_to(self, room_id: str, event_id: str, timeout: float = 10.0) -> Seen:
        """The bot's notice that replies to `event_id`."""
        return await self.wait_for(
            lambda s: s.room_id == room_id and s.reply_to == event_id and s.replaces is None, timeout)

    async def edit_of(self, event_id: str, timeout: float = 10.0) -> Seen:
        """The latest-seen edit (`m.replace`) of `event_id`."""
        return await self.wait_for(lambda s: s.replaces == event_id, timeout)

    def notices(self, room_id: str) -> list[Seen]:
        """Every notice seen in `room_id` so far."""
        return [s for s in self.seen if s.room_id == room_id and isinstance(s.event, RoomMessageNotice)]

    async def quiet(self, room_id: str, seconds: float) -> list[Seen]:
        """Notices that arrive in `room_id` within the next `seconds`."""
        before = len(self.seen)
        await asyncio.sleep(seconds)
        return [s for s in self.seen[before:] if s.room_id == room_id and isinstance(s.event, RoomMessageNotice)]


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

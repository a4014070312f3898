"""A real Synapse homeserver on 127.0.0.1 for the demo and the tests (DESIGN.md §5).

`Synapse` runs Synapse from its own virtualenv (`TOGGLER_SYNAPSE_PYTHON`, default
`.cache/synapse-venv/bin/python`; `make synapse` creates it) on a free loopback port with its own data
dir, with every rate limit raised, and registers users through the shared-secret admin API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import secrets
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]  # the checkout (make demo / make test run from it)
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
    """One Synapse process with its data dir; can be stopped and started again on the same port.

    `extra_config` is merged (top-level keys win) into the generated hs.yaml, e.g. `jwt_config` or `modules`.
    """

    def __init__(self, data: Path, python: Path, *, extra_config: dict[str, Any] | None = None) -> None:
        self.data = data
        self.python = python
        self.extra_config = dict(extra_config or {})
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
        config = homeserver_config(self.data, self.port, self.shared_secret) | self.extra_config
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



"""Fixtures for JWT login tests: a Keycloak stand-in (npm `oauth2-mock-server`) and a Synapse that trusts it.

`keycloak` (session scope) installs `oauth2-mock-server` once into `.cache/oauth2-mock/` and runs
`keycloak_stub.mjs` with three realms, each on its own 127.0.0.1 port with its own RSA key:

- `toggler`: the realm the homeserver trusts (RS256, JWKS at `.../protocol/openid-connect/certs`);
- `elsewhere`: same user and clients, another key and issuer: its tokens are ones the homeserver must refuse;
- `shared`: signs access tokens with the HS512 shared secret `HS512_SECRET` and `sub` = username, as an IdP
  set up for `com.famedly.login.token` would (a real Keycloak signs with its realm keys; that login type is
  for deployments whose IdP signs with the homeserver's shared secret).

Every realm knows user `BOT` (password `BOT_PASSWORD`), confidential client `CLIENT_ID` (`CLIENT_SECRET`),
client `NO_DIRECT_CLIENT` without direct access grants, and another application's client `OTHER_CLIENT`.
`jwt_synapse` (session scope) is a second Synapse with all three JWT login types enabled
(`jwt_homeserver_config`). A missing `node`/`npm` is an error, never a skip.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from toggler.devenv.synapse import ROOT, Synapse, synapse_python

OAUTH2_MOCK_VERSION = "8.2.3"  # the last line that runs on Node 20 (9.x needs Node 22)
CACHE = ROOT / ".cache" / "oauth2-mock"
STUB = Path(__file__).with_name("keycloak_stub.mjs")
BOT = "toggler-bot"
BOT_PASSWORD = "kc-bot-password-4f9a1c"
CLIENT_ID = "toggler"
CLIENT_SECRET = "kc-client-secret-77d2e0"
NO_DIRECT_CLIENT = "toggler-web"
OTHER_CLIENT = "grafana"
HS512_SECRET = "shared-hs512-secret-" + "0123456789abcdef" * 4  # synapse-token-authenticator needs >= 64 bytes
REALMS = ("toggler", "elsewhere", "shared")


@dataclass(frozen=True)
class Realm:
    """One realm of the stand-in, as the stub reported it."""

    name: str
    base_url: str
    issuer: str
    token_url: str
    jwks_url: str
    public_pem: str


@dataclass
class KeycloakStub:
    """The running stub: its process and realms."""

    process: subprocess.Popen[bytes]
    realms: dict[str, Realm]
    log: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdin is not None:
            self.process.stdin.close()


def _installed() -> bool:
    package = CACHE / "node_modules" / "oauth2-mock-server" / "package.json"
    return package.exists() and json.loads(package.read_text()).get("version") == OAUTH2_MOCK_VERSION


def install_oauth2_mock() -> Path:
    """`npm install oauth2-mock-server@OAUTH2_MOCK_VERSION` into the cache once (locked against parallel runs)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("JWT tests need Node.js 20+ and npm on PATH (for the Keycloak stand-in)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            (CACHE / "package.json").write_text(json.dumps({"name": "toggler-oauth2-mock", "private": True}))
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(CACHE),
                 f"oauth2-mock-server@{OAUTH2_MOCK_VERSION}"],
                cwd=CACHE, capture_output=True, text=True, timeout=300, check=False)
            if done.returncode != 0 or not _installed():
                pytest.fail(f"npm install oauth2-mock-server failed:\n{done.stdout}\n{done.stderr}")
    return CACHE


def stub_realms() -> list[dict[str, Any]]:
    """The stub's realm definitions."""
    clients = {CLIENT_ID: {"secret": CLIENT_SECRET},
               NO_DIRECT_CLIENT: {"secret": CLIENT_SECRET, "direct_access": False},
               OTHER_CLIENT: {"secret": CLIENT_SECRET}}
    users = {BOT: BOT_PASSWORD}
    realms: list[dict[str, Any]] = [{"name": name, "users": users, "clients": clients} for name in REALMS]
    realms[REALMS.index("shared")]["hs512_secret"] = HS512_SECRET
    return realms


def start_keycloak(workdir: Path, timeout: float = 20.0) -> KeycloakStub:
    """Start the stub and wait until it has written its ready file."""
    module_dir = install_oauth2_mock()
    workdir.mkdir(parents=True, exist_ok=True)
    config, ready, log = workdir / "stub.json", workdir / "ready.json", workdir / "stub.log"
    config.write_text(json.dumps({"module_dir": str(module_dir), "realms": stub_realms()}))
    with log.open("wb") as out:
        process = subprocess.Popen([str(shutil.which("node")), str(STUB), str(config), str(ready)],
                                   stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            KeycloakStub(process, {}, log).stop()
            pytest.fail(f"the Keycloak stand-in did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    realms = {name: Realm(name=name, **{key: info[key] for key in ("base_url", "issuer", "token_url", "jwks_url",
                                                                    "public_pem")})
              for name, info in json.loads(ready.read_text())["realms"].items()}
    return KeycloakStub(process, realms, log)


def jwt_homeserver_config(realm: Realm, hs512_secret: str = HS512_SECRET) -> dict[str, Any]:
    """hs.yaml additions enabling org.matrix.login.jwt, com.famedly.login.token and com.famedly.login.token.oauth."""
    # as docs/jwt.md recommends: only this realm's tokens, issued to the bot's client
    claims_check = {"type": "all_of", "validators": [
        {"type": "in", "path": "iss", "validator": {"type": "equal", "value": realm.issuer}},
        {"type": "in", "path": "azp", "validator": {"type": "equal", "value": CLIENT_ID}},
    ]}
    return {
        "jwt_config": {"enabled": True, "secret": realm.public_pem, "algorithm": "RS256",
                       "subject_claim": "preferred_username", "issuer": realm.issuer, "audiences": ["account"]},
        "modules": [{"module": "synapse_token_authenticator.TokenAuthenticator", "config": {
            "jwt": {"secret": hs512_secret, "algorithm": "HS512", "require_expiry": True,
                    "allow_registration": True},
            "oauth": {"jwt_validation": {"jwks_endpoint": realm.jwks_url, "localpart_path": "preferred_username",
                                         "require_expiry": True, "validator": claims_check},
                      "username_type": "localpart", "registration_enabled": True},
        }}],
    }


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeycloakStub]:
    """The Keycloak stand-in for the whole session."""
    stub = start_keycloak(tmp_path_factory.mktemp("keycloak"))
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture(scope="session")
def jwt_synapse(keycloak: KeycloakStub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """A Synapse of its own offering the three JWT login types, trusting realm `toggler` (and `HS512_SECRET`)."""
    python = synapse_python()
    if not python.exists():
        pytest.fail(f"no Synapse interpreter at {python}: run `make synapse` (make test does)")
    server = Synapse(tmp_path_factory.mktemp("jwt-synapse"), python,
                     extra_config=jwt_homeserver_config(keycloak.realms["toggler"]))
    server.start()
    try:
        yield server
    finally:
        server.stop()


"""JWT login end to end: Keycloak stand-in (password grant, JWKS) → Synapse with the three JWT login types.

Covers each login type, the device kept across a second login, the one-line errors (wrong password, wrong
client secret, a client without direct access grants, unreachable or silent provider, a token the homeserver
refuses, a login type not offered), `toggler run` exiting 1 on a wrong password, secrets kept out of the
DEBUG log, and the legacy `AUTH_METHOD=jwt` variables.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from nio import WhoamiResponse

from tests.support.keycloak import (
    BOT,
    BOT_PASSWORD,
    CLIENT_ID,
    CLIENT_SECRET,
    NO_DIRECT_CLIENT,
    OTHER_CLIENT,
    KeycloakStub,
    Realm,
)
from tests.support.kube import KubeServer
from tests.support.synapse import Synapse, free_port
from toggler.config import MatrixConfig
from toggler.devenv.kube import write_kubeconfig
from toggler.loader import load_config
from toggler.matrix.jwt import JwtLogin
from toggler.matrix.session import LoginFailed, Session, login_method

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(60)]
BOT_ID = f"@{BOT}:localhost"
JWT_RE = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")
OAUTH, FAMEDLY, NATIVE = "com.famedly.login.token.oauth", "com.famedly.login.token", "org.matrix.login.jwt"
TOGGLER = Path(sys.executable).with_name("toggler")


def jwt_matrix(homeserver: str, store: Path, realm: Realm, *, login_type: str = OAUTH, password: str = BOT_PASSWORD,
               client_id: str = CLIENT_ID, client_secret: str | None = CLIENT_SECRET, token_url: str | None = None,
               url: str | None = None) -> MatrixConfig:
    """The bot's Matrix settings for a JWT login through `realm` (Keycloak URL shape unless `token_url`)."""
    keycloak: dict[str, Any] = {"url": url or realm.base_url, "realm": realm.name, "client_id": client_id,
                                "client_secret": client_secret, "token_url": token_url}
    return MatrixConfig(homeserver=homeserver, user_id=BOT_ID, password=password, store_path=store,
                        device_name="toggler-jwt-test",
                        auth={"method": "jwt", "login_type": login_type, "keycloak": keycloak})


async def whoami(session: Session) -> WhoamiResponse:
    response = await session.client.whoami()
    assert isinstance(response, WhoamiResponse), response
    return response


async def login_fails(matrix: MatrixConfig, login: JwtLogin | None = None) -> LoginFailed:
    """The `LoginFailed` that `Session.open()` raises (the session is closed again)."""
    session = Session(matrix, login=login)
    try:
        with pytest.raises(LoginFailed) as caught:
            await session.open()
    finally:
        await session.close()
    assert "\n" not in str(caught.value)
    return caught.value


def assert_no_secrets(text: str, *also: str) -> None:
    for secret in (BOT_PASSWORD, CLIENT_SECRET, *also):
        assert secret not in text
    assert not JWT_RE.search(text), JWT_RE.search(text)


# --- logging in --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("login_type", "realm_name", "explicit_token_url"), [
    (OAUTH, "toggler", False),
    (FAMEDLY, "shared", True),  # the IdP signs with the homeserver's HS512 secret; token_url given explicitly
    (NATIVE, "toggler", False),
])
async def test_each_login_type_logs_the_bot_in(
        login_type: str, realm_name: str, explicit_token_url: bool, keycloak: KeycloakStub, jwt_synapse: Synapse,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    realm = keycloak.realms[realm_name]
    token_url = realm.token_url if explicit_token_url else None
    matrix = jwt_matrix(jwt_synapse.base_url, tmp_path / "store", realm, login_type=login_type, token_url=token_url,
                        url="http://keycloak.invalid" if explicit_token_url else None)
    assert isinstance(login_method(matrix), JwtLogin)
    session = Session(matrix)
    try:
        await session.open()
        me = await whoami(session)
        assert (me.user_id, me.device_id) == (BOT_ID, session.device_id)
        stored = json.loads((tmp_path / "store" / "credentials.json").read_text())
        assert stored["device_id"] == session.device_id
    finally:
        await session.close()
    assert_no_secrets(caplog.text, stored["access_token"])


async def test_a_dead_token_means_a_new_jwt_login_on_the_same_device(
        keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "store"
    matrix = jwt_matrix(jwt_synapse.base_url, store, keycloak.realms["toggler"])
    first = Session(matrix)
    await first.open()
    device, first_token = first.device_id, first.client.access_token
    await first.close()
    creds = store / "credentials.json"
    creds.write_text(json.dumps({**json.loads(creds.read_text()), "access_token": "syt_revoked"}))

    second = Session(matrix)
    try:
        await second.open()  # whoami says M_UNKNOWN_TOKEN: password grant again, same device id
        assert second.device_id == device
        assert (await whoami(second)).device_id == device
        assert second.client.access_token not in (first_token, "syt_revoked")
        second.client.access_token = "syt_dead_during_sync"
        await second.relogin("syt_dead_during_sync")  # the bot's path when a sync says the token is dead
        assert (await whoami(second)).device_id == device
        stored = json.loads(creds.read_text())
        assert stored["device_id"] == device and stored["access_token"] == second.client.access_token
    finally:
        await second.close()
    assert_no_secrets(caplog.text, first_token, stored["access_token"])


async def test_legacy_auth_method_jwt_logs_in(keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path) -> None:
    realm = keycloak.realms["toggler"]
    env = {
        "AUTH_METHOD": "jwt", "MATRIX_HOMESERVER": jwt_synapse.base_url, "MATRIX_USER": BOT,
        "MATRIX_PASSWORD": BOT_PASSWORD, "ALLOWED_USERS": "@alice:localhost", "CRYPTO_STORE_PATH": str(tmp_path),
        "KEYCLOAK_URL": realm.base_url, "KEYCLOAK_REALM": realm.name, "KEYCLOAK_CLIENT_ID": CLIENT_ID,
        "KEYCLOAK_CLIENT_SECRET": CLIENT_SECRET, "TOGGLER_DEFAULT_CONFIG": str(tmp_path / "absent.yaml"),
    }
    config = load_config(env=env).config
    assert config.matrix.auth.keycloak is not None
    assert config.matrix.auth.keycloak.effective_token_url == realm.token_url
    session = Session(config.matrix)
    try:
        await session.open()
        assert (await whoami(session)).user_id == BOT_ID
    finally:
        await session.close()


# --- one line for each failure -----------------------------------------------------------------------------

async def test_wrong_password(keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path) -> None:
    failed = await login_fails(jwt_matrix(jwt_synapse.base_url, tmp_path, keycloak.realms["toggler"],
                                          password="not-the-password"))
    assert str(failed) == ("Keycloak refused the credentials of user 'toggler-bot' "
                           "(401 invalid_grant: Invalid user credentials)")
    assert failed.permanent


async def test_wrong_client_secret(keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path) -> None:
    failed = await login_fails(jwt_matrix(jwt_synapse.base_url, tmp_path, keycloak.realms["toggler"],
                                          client_secret="not-the-secret"))
    assert str(failed) == ("Keycloak refused client 'toggler' (401 invalid_client: Invalid client or Invalid "
                           "client credentials); check client_id and client_secret")
    assert failed.permanent


async def test_bad_request_shows_the_providers_description(
        keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path) -> None:
    failed = await login_fails(jwt_matrix(jwt_synapse.base_url, tmp_path, keycloak.realms["toggler"],
                                          client_id=NO_DIRECT_CLIENT))
    assert str(failed) == ("Keycloak rejected the token request "
                           "(400 unauthorized_client: Client not allowed for direct access grants)")
    assert failed.permanent


async def test_the_stand_in_answers_a_missing_username_like_keycloak(keycloak: KeycloakStub) -> None:
    realm = keycloak.realms["toggler"]
    form = {"grant_type": "password", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "password": "x"}
    async with aiohttp.ClientSession() as http, http.post(realm.token_url, data=form) as response:
        assert (response.status, await response.json()) == (
            400, {"error": "invalid_request", "error_description": "Missing parameter: username"})


async def test_unreachable_provider(keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    failed = await login_fails(jwt_matrix(jwt_synapse.base_url, tmp_path, keycloak.realms["toggler"], url=closed))
    assert str(failed).startswith(f"Keycloak unreachable at {closed}/realms/toggler/protocol/openid-connect/token (")
    assert not failed.permanent  # the bot keeps trying, as for an unreachable homeserver


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


async def test_provider_that_does_not_answer_times_out(
        keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path, silent_port: int) -> None:
    matrix = jwt_matrix(jwt_synapse.base_url, tmp_path, keycloak.realms["toggler"],
                        token_url=f"http://127.0.0.1:{silent_port}/token")
    failed = await login_fails(matrix, JwtLogin(matrix, timeout=aiohttp.ClientTimeout(total=1)))
    assert str(failed) == f"Keycloak did not answer in time at http://127.0.0.1:{silent_port}/token (timeout 1 s)"
    assert not failed.permanent


async def test_wrong_token_endpoint(keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path) -> None:
    realm = keycloak.realms["toggler"]
    failed = await login_fails(jwt_matrix(jwt_synapse.base_url, tmp_path, realm, token_url=f"{realm.base_url}/token"))
    assert str(failed) == (f"no token endpoint at {realm.base_url}/token (HTTP 404); "
                           "check keycloak url, realm or token_url")


@pytest.mark.parametrize("login_type", [OAUTH, FAMEDLY, NATIVE])
async def test_token_the_homeserver_does_not_trust(
        login_type: str, keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path) -> None:
    """Realm `elsewhere` has the same user and client but its own signing key and issuer."""
    failed = await login_fails(jwt_matrix(jwt_synapse.base_url, tmp_path, keycloak.realms["elsewhere"],
                                          login_type=login_type))
    assert str(failed).startswith(f"the homeserver refused the JWT for login type {login_type} (LoginError M_FORBIDDEN")
    assert failed.permanent


async def test_oauth_refuses_a_token_issued_to_another_client(
        keycloak: KeycloakStub, jwt_synapse: Synapse, tmp_path: Path) -> None:
    """The `azp` check of the recommended `validator` (docs/jwt.md): right realm and key, wrong client."""
    failed = await login_fails(jwt_matrix(jwt_synapse.base_url, tmp_path, keycloak.realms["toggler"],
                                          client_id=OTHER_CLIENT))
    assert str(failed).startswith(f"the homeserver refused the JWT for login type {OAUTH} (LoginError M_FORBIDDEN")


async def test_login_type_not_offered(keycloak: KeycloakStub, running_synapse: Synapse, tmp_path: Path) -> None:
    failed = await login_fails(jwt_matrix(running_synapse.base_url, tmp_path, keycloak.realms["toggler"]))
    assert str(failed).startswith(f"the homeserver does not offer login type {OAUTH} (it offers: ")
    assert "m.login.password" in str(failed)
    assert failed.permanent


# --- toggler run -------------------------------------------------------------------------------------------

def write_run_config(tmp_path: Path, synapse: Synapse, realm: Realm, kube: KubeServer, *, password: str) -> Path:
    (tmp_path / "password").write_text(password)
    (tmp_path / "client-secret").write_text(CLIENT_SECRET)
    write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    config = {
        "matrix": {"homeserver": synapse.base_url, "user_id": BOT_ID, "password_file": str(tmp_path / "password"),
                   "store_path": str(tmp_path / "store"),
                   "auth": {"method": "jwt", "keycloak": {"url": realm.base_url, "realm": realm.name,
                                                          "client_id": CLIENT_ID,
                                                          "client_secret_file": str(tmp_path / "client-secret")}}},
        "targets": {"web": {"namespace": "apps"}},
        "rooms": {"*": {"users": ["@alice:localhost"], "targets": ["*"]}},
        "kubernetes": {"kubeconfig": str(tmp_path / "kubeconfig")},
        "health": {"enabled": False},
        "logging": {"level": "DEBUG"},
    }
    path = tmp_path / "toggler.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_toggler_run_exits_1_with_one_line_on_a_wrong_password(
        keycloak: KeycloakStub, jwt_synapse: Synapse, kube: KubeServer, tmp_path: Path) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    config = write_run_config(tmp_path, jwt_synapse, keycloak.realms["toggler"], kube, password="wrong-password-1")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOGGLER_")}
    done = subprocess.run([str(TOGGLER), "run", "--config", str(config)], capture_output=True, text=True,
                          timeout=45, env=env, check=False)
    reason = "Keycloak refused the credentials of user 'toggler-bot' (401 invalid_grant: Invalid user credentials)"
    assert done.returncode == 1, done.stderr
    assert f"cannot log in to {jwt_synapse.base_url}: {reason}" in done.stderr
    assert done.stderr.count(reason) == 1, "one line says why, once"
    assert "Traceback" not in done.stderr
    assert_no_secrets(done.stdout + done.stderr, "wrong-password-1")

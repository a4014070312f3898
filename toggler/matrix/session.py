"""The bot's one Matrix device: client creation, login, stored credentials, restore and re-login.

`Session.open()` builds an encrypted nio `AsyncClient` whose vodozemac store lives in `store_path`, restores
the credentials saved there (`credentials.json`, mode 0600: user id, device id, access token) and checks them
with `whoami`. A dead token means logging in again **with the same device id**, so a restart never makes a
new device. How the bot logs in is a `LoginMethod` (password here; JWT plugs in the same way).
Secrets (password, access token) are registered for log redaction and never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from nio import AsyncClient, AsyncClientConfig, ErrorResponse, LoginResponse, WhoamiResponse
from pydantic import SecretStr

from toggler.config import MatrixConfig
from toggler.logs import register_secret
from toggler.matrix import logguard
from toggler.matrix.state import write_private

log = logging.getLogger(__name__)
CREDENTIALS_FILE = "credentials.json"
UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
PERMANENT_LOGIN_ERRORS = frozenset({"M_FORBIDDEN", "M_USER_DEACTIVATED", "M_INVALID_USERNAME"})
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class LoginFailed(Exception):
    """Login did not work. `permanent`: retrying will not help (wrong password, deactivated account)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def describe(response: ErrorResponse) -> str:
    """A log-safe one-liner for an error response (never the request, never a token)."""
    return f"{type(response).__name__} {response.status_code or '?'}: {response.message}"


@dataclass(frozen=True)
class Credentials:
    """What it takes to resume the bot's device."""

    user_id: str
    device_id: str
    access_token: str = field(repr=False)

    def as_json(self) -> str:
        return json.dumps({"user_id": self.user_id, "device_id": self.device_id, "access_token": self.access_token})

    @classmethod
    def parse(cls, text: str) -> Credentials | None:
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            return None
        user_id, device_id, token = (data.get(key) for key in ("user_id", "device_id", "access_token"))
        if not (isinstance(user_id, str) and isinstance(device_id, str) and isinstance(token, str)):
            return None
        return cls(user_id, device_id, token) if user_id and device_id and token else None


class CredentialsFile:
    """`credentials.json` next to the crypto store, written atomically with mode 0600."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / CREDENTIALS_FILE

    def load(self) -> Credentials | None:
        try:
            creds = Credentials.parse(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable credentials file %s (%s)", self.path, type(exc).__name__)
            return None
        if creds is not None:
            register_secret(creds.access_token)
        return creds

    def save(self, creds: Credentials) -> None:
        register_secret(creds.access_token)
        write_private(self.path, creds.as_json())


class LoginMethod(Protocol):
    """A way to obtain an access token for `client.user`, reusing `client.device_id` when it is set."""

    async def login(self, client: AsyncClient, *, device_name: str) -> LoginResponse | ErrorResponse:
        """Log in; on success nio has stored the token in `client` and loaded its crypto store."""
        ...


class PasswordLogin:
    """`m.login.password` with the account password."""

    def __init__(self, password: SecretStr) -> None:
        register_secret(password.get_secret_value())
        self._password = password

    async def login(self, client: AsyncClient, *, device_name: str) -> LoginResponse | ErrorResponse:
        response: LoginResponse | ErrorResponse = await client.login(
            password=self._password.get_secret_value(), device_name=device_name
        )
        return response


def login_method(config: MatrixConfig) -> LoginMethod:
    """The login for `config.auth.method`: `PasswordLogin`, or `JwtLogin` for `jwt`."""
    if config.auth.method == "jwt":
        from toggler.matrix.jwt import JwtLogin  # noqa: PLC0415 (toggler.matrix.jwt imports this module)

        return JwtLogin(config)
    if config.password is None:
        raise LoginFailed("no Matrix password configured (matrix.password or matrix.password_file)", permanent=True)
    return PasswordLogin(config.password)


def _same_account(configured: str, user_id: str) -> bool:
    if configured.startswith("@"):
        return configured == user_id
    return user_id[1:].split(":", 1)[0] == configured


class Session:
    """Owns the `AsyncClient` of the bot's single device."""

    def __init__(
        self, config: MatrixConfig, *, login: LoginMethod | None = None, client_config: AsyncClientConfig | None = None
    ) -> None:
        logguard.install()
        self.config = config
        self.store = Path(config.store_path)
        self.credentials = CredentialsFile(self.store)
        self._login = login or login_method(config)
        self._client_config = client_config or AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=False, max_timeouts=2, request_timeout=30
        )
        self._client: AsyncClient | None = None
        self._creds: Credentials | None = None
        self._relogin_lock = asyncio.Lock()

    @property
    def client(self) -> AsyncClient:
        """The client (after `open`)."""
        assert self._client is not None, "Session.open() first"
        return self._client

    @property
    def logged_in(self) -> bool:
        """Whether the client holds an access token."""
        return self._client is not None and bool(self._client.access_token)

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    def _new_client(self, user: str, device_id: str | None) -> AsyncClient:
        self.store.mkdir(parents=True, exist_ok=True, mode=0o700)
        return AsyncClient(
            self.config.homeserver.rstrip("/"),
            user,
            device_id=device_id,
            store_path=str(self.store),
            config=self._client_config,
        )

    async def open(self) -> AsyncClient:
        """Restore the saved device (checked with `whoami`) or log in as a new one; raises `LoginFailed`."""
        if self._client is not None and self.logged_in:
            return self._client
        creds = self._creds or self.credentials.load()
        if creds is not None and not _same_account(self.config.user_id, creds.user_id):
            log.warning(
                "stored credentials are for %s, not %s: logging in as a new device", creds.user_id, self.config.user_id
            )
            creds = None
        if creds is None:
            await self._first_login()
        else:
            await self._restore(creds)
        return self.client

    async def _first_login(self) -> None:
        self._client = self._client or self._new_client(self.config.user_id, None)
        await self._do_login()
        log.info("logged in as %s with new device %s", self.user_id, self.device_id)

    async def _restore(self, creds: Credentials) -> None:
        self._creds = creds
        if self._client is None:
            self._client = self._new_client(creds.user_id, creds.device_id)
            self._client.restore_login(creds.user_id, creds.device_id, creds.access_token)
        try:
            response = await self._client.whoami()
        except NETWORK_ERRORS as exc:
            log.warning(
                "could not check the stored session of %s (%s); trying it anyway", creds.user_id, type(exc).__name__
            )
            return
        if isinstance(response, WhoamiResponse) and response.device_id in (None, creds.device_id):
            log.info("resumed %s on device %s", creds.user_id, creds.device_id)
            return
        if isinstance(response, ErrorResponse) and response.status_code != UNKNOWN_TOKEN:
            log.warning("whoami failed (%s); trying the stored session anyway", describe(response))
            return
        log.info(
            "stored access token of %s is no longer valid: logging in again on device %s",
            creds.user_id,
            creds.device_id,
        )
        await self.relogin()

    async def relogin(self, dead_token: str | None = None) -> None:
        """Log in again with the same device id (dead token, soft logout). Raises `LoginFailed`.

        With `dead_token`, nothing happens when another caller has already replaced that token.
        """
        async with self._relogin_lock:
            client = self.client
            if dead_token is not None and client.access_token and client.access_token != dead_token:
                return
            if self._creds is not None:
                client.user = self._creds.user_id
                client.device_id = self._creds.device_id
            client.access_token = ""
            await self._do_login()
            log.info("logged in again as %s on device %s", self.user_id, self.device_id)

    async def _do_login(self) -> None:
        client = self.client
        wanted = client.device_id or None
        try:
            response = await self._login.login(client, device_name=self.config.device_name)
        except NETWORK_ERRORS as exc:
            raise LoginFailed(f"homeserver unreachable ({type(exc).__name__})", permanent=False) from None
        if isinstance(response, ErrorResponse):
            permanent = response.status_code in PERMANENT_LOGIN_ERRORS
            raise LoginFailed(f"login failed: {describe(response)}", permanent=permanent)
        if wanted and response.device_id != wanted:
            log.error("homeserver gave device %s instead of %s", response.device_id, wanted)
        self._creds = Credentials(response.user_id, response.device_id, response.access_token)
        self.credentials.save(self._creds)

    async def close(self) -> None:
        """Close the HTTP session; the device stays (no logout)."""
        if self._client is not None:
            await self._client.close()

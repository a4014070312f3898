"""JWT login: a Keycloak password grant (ROPC), then a Matrix token login with the configured login type.

`JwtLogin` is a `toggler.matrix.session.LoginMethod`. Each login first checks that the homeserver offers the
configured type (`GET /_matrix/client/v3/login`), then asks the token endpoint (`keycloak.effective_token_url`)
for an access token for the bot's localpart, and logs in with it through `AsyncClient.login_raw`, passing the
client's device id so the bot keeps its one device. Every failure is one `LoginFailed` line, `permanent`
when retrying cannot help. The password, the client secret and every token are registered for log redaction
and never logged. Must not import kubernetes or apscheduler.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from nio import AsyncClient, ErrorResponse, LoginResponse

from toggler.config import KeycloakConfig, MatrixConfig
from toggler.logs import register_secret
from toggler.matrix.session import LoginFailed, describe

log = logging.getLogger(__name__)
# The famedly types resolve the user from an `m.id.user` identifier; Synapse's own JWT type only from the token.
WITH_IDENTIFIER = frozenset({"com.famedly.login.token.oauth", "com.famedly.login.token"})
TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=5)
TRANSIENT_ERRCODES = frozenset({"M_LIMIT_EXCEEDED"})
MAX_DETAIL = 200


def localpart(user_id: str) -> str:
    """`toggler` for `@toggler:example.org` (and for a bare `toggler`)."""
    return user_id[1:].split(":", 1)[0] if user_id.startswith("@") else user_id


def one_line(text: object, limit: int = MAX_DETAIL) -> str:
    """`text` on one line, at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def login_body(login_type: str, token: str, *, user: str, device_id: str | None, device_name: str) -> dict[str, Any]:
    """The `POST /login` body for `login_type` (the same device id again when there is one)."""
    body: dict[str, Any] = {"type": login_type, "token": token, "initial_device_display_name": device_name}
    if login_type in WITH_IDENTIFIER:
        body["identifier"] = {"type": "m.id.user", "user": user}
    if device_id:
        body["device_id"] = device_id
    return body


class JwtLogin:
    """Keycloak password grant with the bot's localpart and password, then a Matrix JWT login."""

    def __init__(self, config: MatrixConfig, *, timeout: aiohttp.ClientTimeout = TIMEOUT) -> None:
        keycloak = config.auth.keycloak
        if keycloak is None:
            raise LoginFailed("auth.method jwt needs matrix.auth.keycloak (url, realm, client_id)", permanent=True)
        if config.password is None:
            raise LoginFailed("no password for the Keycloak user (matrix.password or matrix.password_file)",
                              permanent=True)
        self.keycloak: KeycloakConfig = keycloak
        self.login_type = config.auth.login_type
        self.username = localpart(config.user_id)
        self._password = config.password
        self._timeout = timeout
        register_secret(config.password.get_secret_value())
        if keycloak.client_secret is not None:
            register_secret(keycloak.client_secret.get_secret_value())

    async def login(self, client: AsyncClient, *, device_name: str) -> LoginResponse | ErrorResponse:
        """Check the login type is offered, get a JWT, log in with it. Raises `LoginFailed`."""
        await self._check_offered(client)
        token = await self.fetch_token()
        body = login_body(self.login_type, token, user=self.username, device_id=client.device_id or None,
                          device_name=device_name)
        response: LoginResponse | ErrorResponse = await client.login_raw(body)
        if isinstance(response, ErrorResponse):
            raise self._refused(response)
        return response

    async def _check_offered(self, client: AsyncClient) -> None:
        response = await client.login_info()
        if isinstance(response, ErrorResponse):
            raise LoginFailed(f"cannot read the homeserver's login types ({describe(response)})", permanent=False)
        flows = [str(flow) for flow in response.flows]
        if self.login_type not in flows:
            raise LoginFailed(f"the homeserver does not offer login type {self.login_type} "
                              f"(it offers: {', '.join(flows) or 'nothing'})", permanent=True)

    def _form(self) -> dict[str, str]:
        form = {"grant_type": "password", "client_id": self.keycloak.client_id, "username": self.username,
                "password": self._password.get_secret_value()}
        if self.keycloak.client_secret is not None:
            form["client_secret"] = self.keycloak.client_secret.get_secret_value()
        return form

    async def fetch_token(self) -> str:
        """An access token from the password grant at the token endpoint. Raises `LoginFailed`."""
        url = self.keycloak.effective_token_url
        log.debug("requesting a token for %s from %s", self.username, url)
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as http, http.post(url, data=self._form()) as resp:
                status, body = resp.status, await _json_body(resp)
        except TimeoutError:
            raise LoginFailed(f"Keycloak did not answer in time at {url} (timeout {self._timeout.total:g} s)",
                              permanent=False) from None
        except aiohttp.ClientError as exc:
            raise LoginFailed(f"Keycloak unreachable at {url} ({one_line(exc) or type(exc).__name__})",
                              permanent=False) from None
        for key in ("access_token", "refresh_token", "id_token"):
            if isinstance(body.get(key), str):
                register_secret(body[key])
        token = body.get("access_token")
        if status != 200 or not isinstance(token, str) or not token:
            raise self._token_error(url, status, body)
        log.debug("Keycloak issued a token for %s", self.username)
        return token

    def _token_error(self, url: str, status: int, body: dict[str, Any]) -> LoginFailed:
        error, detail = one_line(body.get("error") or ""), one_line(body.get("error_description") or "")
        what = f"{status} {error}".strip() + (f": {detail}" if detail else "")
        if status == 200:
            return LoginFailed(f"Keycloak answered without an access token at {url}; is token_url right?",
                               permanent=True)
        if error == "invalid_grant":
            return LoginFailed(f"Keycloak refused the credentials of user {self.username!r} ({what})", permanent=True)
        if error == "invalid_client":
            return LoginFailed(f"Keycloak refused client {self.keycloak.client_id!r} ({what}); "
                               "check client_id and client_secret", permanent=True)
        if status == 404:
            return LoginFailed(f"no token endpoint at {url} (HTTP 404); check keycloak url, realm or token_url",
                               permanent=True)
        if 400 <= status < 500:
            return LoginFailed(f"Keycloak rejected the token request ({what})", permanent=True)
        return LoginFailed(f"Keycloak token endpoint failed ({what})", permanent=False)

    def _refused(self, response: ErrorResponse) -> LoginFailed:
        http_status = getattr(response.transport_response, "status", 0) or 0
        transient = response.status_code in TRANSIENT_ERRCODES or http_status >= 500
        hint = "; does it trust this realm's signing key and issuer?" if response.status_code == "M_FORBIDDEN" else ""
        return LoginFailed(f"the homeserver refused the JWT for login type {self.login_type} "
                           f"({describe(response)}){hint}", permanent=not transient)


async def _json_body(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The response's JSON object, or `{}` for anything else (an HTML error page, say)."""
    try:
        data: Any = await resp.json(content_type=None)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}

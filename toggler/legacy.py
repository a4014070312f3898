"""The predecessor's (openclaw-k8s-toggle-operator) env variables as a one-target config.

`build_data(env)` returns the same plain data a YAML file would hold, so after loading there is one
code path. The single target is named after `DEPLOYMENT_NAME`, usable by `ALLOWED_USERS` in any room
the bot is in, with no auto-stop. Pure module: reads only the mapping it is given.
Must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_HOMESERVER = "http://synapse.matrix.svc.cluster.local:8008"
REQUIRED = ("MATRIX_USER", "MATRIX_PASSWORD", "ALLOWED_USERS")
JWT_REQUIRED = ("KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID")
VARIABLES = (
    "MATRIX_HOMESERVER", "MATRIX_USER", "MATRIX_PASSWORD", "ALLOWED_USERS", "DEPLOYMENT_NAME",
    "DEPLOYMENT_NAMESPACE", "CRYPTO_STORE_PATH", "ECHO_MODE", "LOGURU_LEVEL", "AUTH_METHOD",
    "KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID", "KEYCLOAK_CLIENT_SECRET", "JWT_LOGIN_TYPE",
)
_LOG_LEVELS = {"TRACE": "DEBUG", "SUCCESS": "INFO", "CRITICAL": "ERROR"}

# Where each config field came from, so validation errors name the variable people set.
FIELD_VARIABLES: dict[tuple[str, ...], str] = {
    ("matrix", "homeserver"): "MATRIX_HOMESERVER",
    ("matrix", "user_id"): "MATRIX_USER",
    ("matrix", "password"): "MATRIX_PASSWORD",
    ("matrix", "store_path"): "CRYPTO_STORE_PATH",
    ("matrix", "auth", "login_type"): "JWT_LOGIN_TYPE",
    ("matrix", "auth", "keycloak", "url"): "KEYCLOAK_URL",
    ("rooms", "*", "users"): "ALLOWED_USERS",
    ("targets",): "DEPLOYMENT_NAME",
    ("logging", "level"): "LOGURU_LEVEL",
}


class LegacyError(ValueError):
    """Missing or invalid legacy variables; `problems` are `VARIABLE: message` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def present(env: Mapping[str, str]) -> list[str]:
    """The legacy variables set (non-empty) in `env`."""
    return [name for name in VARIABLES if env.get(name, "").strip()]


def _get(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, "").strip() or default


def _flag(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def variable_for(loc: tuple[str | int, ...]) -> str | None:
    """The legacy variable behind a config field path, if any (longest prefix wins)."""
    if loc[:1] == ("targets",) and len(loc) > 2 and loc[2] == "namespace":
        return "DEPLOYMENT_NAMESPACE"
    for size in range(len(loc), 0, -1):
        name = FIELD_VARIABLES.get(tuple(str(part) for part in loc[:size]))
        if name:
            return name
    return None


def _missing(env: Mapping[str, str], method: str) -> list[str]:
    needed = REQUIRED + (JWT_REQUIRED if method == "jwt" else ())
    problems = [f"{name}: required environment variable is not set" for name in needed if not _get(env, name)]
    if method not in ("password", "jwt"):
        problems.append(f"AUTH_METHOD: must be 'password' or 'jwt', got {method!r}")
    return problems


def _auth(env: Mapping[str, str], method: str) -> dict[str, Any]:
    if method != "jwt":
        return {"method": "password"}
    keycloak: dict[str, Any] = {
        "url": _get(env, "KEYCLOAK_URL"),
        "realm": _get(env, "KEYCLOAK_REALM"),
        "client_id": _get(env, "KEYCLOAK_CLIENT_ID"),
    }
    if _get(env, "KEYCLOAK_CLIENT_SECRET"):
        keycloak["client_secret"] = _get(env, "KEYCLOAK_CLIENT_SECRET")
    return {
        "method": "jwt",
        "keycloak": keycloak,
        "login_type": _get(env, "JWT_LOGIN_TYPE", "com.famedly.login.token.oauth"),
    }


def build_data(env: Mapping[str, str]) -> dict[str, Any]:
    """Config data equivalent to the predecessor's behaviour, or `LegacyError` naming each problem."""
    method = _get(env, "AUTH_METHOD", "password").lower()
    problems = _missing(env, method)
    if problems:
        raise LegacyError(problems)
    name = _get(env, "DEPLOYMENT_NAME", "clawdbot")
    level = _get(env, "LOGURU_LEVEL", "DEBUG").upper()
    users = [user.strip() for user in _get(env, "ALLOWED_USERS").split(",") if user.strip()]
    return {
        "matrix": {
            "homeserver": _get(env, "MATRIX_HOMESERVER", DEFAULT_HOMESERVER),
            "user_id": _get(env, "MATRIX_USER"),
            "password": _get(env, "MATRIX_PASSWORD"),
            "store_path": _get(env, "CRYPTO_STORE_PATH", "/data/crypto_store"),
            "echo": _flag(_get(env, "ECHO_MODE", "true")),
            "auth": _auth(env, method),
        },
        "defaults": {"auto_stop_after": None},
        "targets": {name: {"namespace": _get(env, "DEPLOYMENT_NAMESPACE", "clawdbot"), "auto_stop_after": None}},
        "rooms": {"*": {"users": users, "targets": ["*"]}},
        "logging": {"level": _LOG_LEVELS.get(level, level)},
    }

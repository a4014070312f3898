"""The configuration model: one frozen pydantic tree, `extra="forbid"`, documented fields.

Owns the shape and the cross-field rules of a toggler config. Loading files, env overrides and secret
files lives in `toggler.loader`; the predecessor's variables in `toggler.legacy`.
Must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    WithJsonSchema,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from toggler.cron import validate_cron
from toggler.durations import DURATION_PATTERN, format_duration, parse_duration

MXID_RE = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:\d{1,5})?$")
LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")
ROOM_ID_RE = re.compile(r"^![A-Za-z0-9._~+/=\-]+(:[A-Za-z0-9.\-]+(:\d{1,5})?)?$")
ROOM_ALIAS_RE = re.compile(r"^#[^\s:#]+:[A-Za-z0-9.\-]+(:\d{1,5})?$")
K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
WORD_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
ANY_ROOM = "*"


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("write durations with a unit, like 90s, 45m, 2h, 1h30m, 1d")
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["90s", "45m", "2h", "1h30m"]}),
]


def _mxid(value: str) -> str:
    if not MXID_RE.match(value):
        raise ValueError(f"{value!r} is not a full Matrix user ID like @alice:example.org")
    return value


def _matrix_user(value: str) -> str:
    if value.startswith("@"):
        return _mxid(value)
    if not LOCALPART_RE.match(value):
        raise ValueError(f"{value!r} is neither a full Matrix ID (@bot:example.org) nor a localpart")
    return value


def _room_key(value: str) -> str:
    if value != ANY_ROOM and not (ROOM_ID_RE.match(value) or ROOM_ALIAS_RE.match(value)):
        raise ValueError(f"{value!r} is not a room id (!abc:server) or alias (#name:server)")
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def _k8s_name(value: str) -> str:
    if not K8S_NAME_RE.match(value) or len(value) > 253:
        raise ValueError(f"{value!r} is not a valid Kubernetes name (lowercase letters, digits, '-')")
    return value


def _word(value: str) -> str:
    low = value.strip().lower()
    if not WORD_RE.match(low):
        raise ValueError(f"{value!r} must be one word of letters, digits, '.', '_' or '-'")
    return low


MatrixId = Annotated[str, AfterValidator(_mxid)]
MatrixUser = Annotated[str, AfterValidator(_matrix_user)]
RoomKey = Annotated[str, AfterValidator(_room_key)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
K8sName = Annotated[str, AfterValidator(_k8s_name)]
Word = Annotated[str, AfterValidator(_word)]
CronExpr = Annotated[str, AfterValidator(validate_cron)]
Action = Literal["start", "stop", "extend", "status"]
ACTIONS: tuple[Action, ...] = ("start", "stop", "extend", "status")


class Model(BaseModel):
    """Base for every config model: frozen, no unknown keys, docstrings become descriptions."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class KeycloakConfig(Model):
    """Keycloak (or any OIDC provider) used for the password grant before a Matrix JWT login."""

    url: str
    """Base URL of Keycloak, e.g. `https://sso.example.org`."""
    realm: str
    """Realm that holds the bot's user."""
    client_id: str
    """OIDC client that allows the password (direct access) grant."""
    client_secret: SecretStr | None = None
    """Client secret for confidential clients. Prefer `client_secret_file` or the environment."""
    client_secret_file: Path | None = None
    """File holding the client secret (a mounted Kubernetes Secret)."""
    token_url: str | None = None
    """Explicit token endpoint; default `{url}/realms/{realm}/protocol/openid-connect/token`."""

    @property
    def effective_token_url(self) -> str:
        """The token endpoint to call."""
        base = self.url.rstrip("/")
        return self.token_url or f"{base}/realms/{self.realm}/protocol/openid-connect/token"


class AuthConfig(Model):
    """How the bot logs in to the homeserver."""

    method: Literal["password", "jwt"] = "password"
    """`password`: Matrix password login. `jwt`: Keycloak password grant, then a Matrix token login."""
    keycloak: KeycloakConfig | None = None
    """Keycloak settings; required when `method` is `jwt`."""
    login_type: Literal["com.famedly.login.token.oauth", "com.famedly.login.token", "org.matrix.login.jwt"] = (
        "com.famedly.login.token.oauth"
    )
    """Matrix login type used with the JWT."""

    @model_validator(mode="after")
    def _needs_keycloak(self) -> AuthConfig:
        if self.method == "jwt" and self.keycloak is None:
            raise ValueError("method jwt needs a keycloak block (url, realm, client_id)")
        return self


class MatrixConfig(Model):
    """The bot's Matrix account and local encryption store."""

    homeserver: str = Field(pattern=r"^https?://")
    """Client-server API base URL, e.g. `https://matrix.example.org`."""
    user_id: MatrixUser
    """The bot's Matrix ID, e.g. `@toggler:example.org` (a bare localpart is completed at login)."""
    password: SecretStr | None = None
    """Account password (also the Keycloak user's password for JWT). Prefer `password_file` or env."""
    password_file: Path | None = None
    """File holding the password (a mounted Kubernetes Secret)."""
    device_name: str = "toggler"
    """Display name of the bot's single device."""
    store_path: Path = Path("/data/store")
    """Directory for the vodozemac crypto store, credentials and sync token. Keep it on a volume."""
    auth: AuthConfig = AuthConfig()
    """Login method."""
    sync_timeout: Duration = timedelta(seconds=30)
    """Long-poll timeout of `/sync`; `/readyz` fails when no sync succeeded for twice this long."""
    echo: bool = False
    """Echo every command back first (`🦞 <body>`), as the predecessor did. Legacy `ECHO_MODE`."""

    @model_validator(mode="after")
    def _needs_password(self) -> MatrixConfig:
        if self.password is None and self.password_file is None:
            raise ValueError("set password_file (or password, or env TOGGLER_MATRIX__PASSWORD)")
        return self


class Defaults(Model):
    """Defaults for every target and bot-wide behaviour."""

    auto_stop_after: Duration | None = timedelta(hours=2)
    """Stop a started target after this long unless the target says otherwise; null means never."""
    warn_before: Duration = timedelta(minutes=5)
    """Warn the room this long before an auto-stop."""
    max_duration: Duration = timedelta(hours=12)
    """Upper bound for `start … for` and `extend`."""
    max_command_age: Duration = timedelta(minutes=5)
    """Commands older than this (sent while the bot was offline) are not executed."""
    ready_timeout: Duration = timedelta(minutes=10)
    """How long `start` waits for the target to become ready before reporting a failure."""
    timezone: TimeZone = "UTC"
    """Time zone for times shown in chat and for cron schedules without their own zone."""
    dry_run: bool = False
    """Write nothing to the cluster; replies and logs say what would have happened."""


class Schedule(Model):
    """Cron schedules (minute hour day month weekday) that stop and/or start a target."""

    stop: CronExpr | None = None
    """When to stop the target, e.g. `0 20 * * *`."""
    start: CronExpr | None = None
    """When to start the target, e.g. `0 8 * * mon-fri`."""
    timezone: TimeZone | None = None
    """Time zone of the expressions; default `defaults.timezone`."""

    @model_validator(mode="after")
    def _not_empty(self) -> Schedule:
        if self.stop is None and self.start is None:
            raise ValueError("a schedule needs `stop` and/or `start`")
        return self


class Target(Model):
    """A workload toggler may scale between 0 and its `replicas`."""

    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    """Workload kind."""
    namespace: K8sName
    """Namespace of the workload."""
    name: K8sName | None = None
    """Object name in the cluster; defaults to the target's key."""
    aliases: tuple[Word, ...] = ()
    """Other words that name this target in chat (case-insensitive)."""
    description: str | None = None
    """Short text shown by `list`."""
    replicas: int = Field(default=1, ge=1)
    """Replica count when "on" (unless toggler restores the count it saw when it stopped it)."""
    auto_stop_after: Duration | None = None
    """Auto-stop after this long; null means never; absent means `defaults.auto_stop_after`."""
    max_duration: Duration | None = None
    """Cap for `for`/`extend` on this target; absent means `defaults.max_duration`."""
    schedule: Schedule | None = None
    """Optional cron schedule."""
    notify_room: RoomKey | None = None
    """Room for warnings and auto-stop reports when no room started the target."""


class RoomConfig(Model):
    """Who may do what in one room. Deny by default."""

    users: tuple[MatrixId, ...] = ()
    """Users who may use every target in `targets`."""
    targets: tuple[str, ...] = ()
    """Target names (or `*` for all) that `users` may use here."""
    grants: dict[MatrixId, tuple[str, ...]] = {}
    """Finer grants: user → target names (or `*`) that user may use here, in addition to the above."""
    actions: tuple[Action, ...] = ACTIONS
    """Actions allowed in this room (`list` and `help` always are)."""
    require_encryption: bool = False
    """Refuse commands sent unencrypted in this room."""
    command_prefix: str | None = Field(default=None, min_length=1, max_length=16)
    """Only messages starting with this prefix (e.g. `!t`) are commands here."""


class LoggingConfig(Model):
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level."""
    format: Literal["text", "json"] = "text"
    """`json` writes one JSON object per line."""


class HealthConfig(Model):
    """The HTTP server for probes and metrics (`/healthz`, `/readyz`, `/metrics`)."""

    enabled: bool = True
    """Serve the endpoints at all."""
    host: str = "127.0.0.1"
    """Address to bind; the container image sets `TOGGLER_HEALTH__HOST=0.0.0.0` so kubelet can probe it."""
    port: int = Field(default=8080, ge=0, le=65535)
    """Port to bind (0 picks a free one)."""


class KubernetesConfig(Model):
    """How to reach the Kubernetes API (in-cluster config is used when available)."""

    kubeconfig: Path | None = None
    """Kubeconfig file used outside a cluster; default `$KUBECONFIG` or `~/.kube/config`."""
    context: str | None = None
    """Kubeconfig context to use."""
    request_timeout: Duration = timedelta(seconds=10)
    """Timeout of every API request."""


class ConfigProblems(ValueError):
    """Cross-field problems, each with its own field path (the loader expands them)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
        self.problems = problems


class Config(BaseSettings):
    """A toggler configuration: the bot's account, defaults, targets and rooms."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        env_prefix="TOGGLER_",
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

    matrix: MatrixConfig
    """The bot's Matrix account."""
    defaults: Defaults = Defaults()
    """Defaults for all targets."""
    targets: dict[K8sName, Target] = Field(min_length=1)
    """Workloads by name. The name is how people call them in chat (plus `aliases`)."""
    rooms: dict[RoomKey, RoomConfig] = {}
    """Rooms by id or alias, and who may do what there; `*` means any room the bot is in."""
    kubernetes: KubernetesConfig = KubernetesConfig()
    """Kubernetes API access."""
    logging: LoggingConfig = LoggingConfig()
    """Log level and format."""
    health: HealthConfig = HealthConfig()
    """Probe and metrics server."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment (`TOGGLER_…`) overrides the file, which is passed as init values."""
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        from toggler.config_rules import cross_field_problems  # noqa: PLC0415 (avoids a cycle)

        problems = cross_field_problems(self)
        if problems:
            raise ConfigProblems(problems)
        return self

    def object_name(self, target: str) -> str:
        """The cluster object name of a target."""
        return self.targets[target].name or target

    def auto_stop_after(self, target: str) -> timedelta | None:
        """Effective auto-stop: the target's own value (even null) when set, else the default."""
        spec = self.targets[target]
        if "auto_stop_after" in spec.model_fields_set:
            return spec.auto_stop_after
        return self.defaults.auto_stop_after

    def max_duration(self, target: str) -> timedelta:
        """Effective cap for `for` and `extend`."""
        return self.targets[target].max_duration or self.defaults.max_duration

    def schedule_timezone(self, target: str) -> str:
        """Time zone of a target's cron schedule."""
        schedule = self.targets[target].schedule
        return (schedule.timezone if schedule else None) or self.defaults.timezone

"""Load a `Config` from YAML, `TOGGLER_…` env overrides, secret files, or the legacy variables.

Every failure becomes a `ConfigError` holding lines `<field path>: <message> (line N)`; callers exit 2.
Precedence (highest first): `TOGGLER_…` env variables, the YAML file, model defaults. Secrets: the
inline value (env or YAML) wins over its `*_file`. With no file at the default path, the predecessor's
variables build the config (see `toggler.legacy`). `TOGGLER_DEFAULT_CONFIG` moves that default path
(an image or a test can point it elsewhere); unlike `TOGGLER_CONFIG` its file may be absent.
Must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from toggler import legacy
from toggler.config import Config, ConfigProblems

log = logging.getLogger(__name__)

DEFAULT_PATH = Path("/etc/toggler/config.yaml")
Loc = tuple[str | int, ...]


class ConfigError(Exception):
    """An unusable configuration; `problems` are ready-to-print lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Loaded:
    """A loaded config and where it came from."""

    config: Config
    source: str
    warnings: list[str] = field(default_factory=list)


def format_loc(loc: Loc) -> str:
    """`("targets", "web", "aliases", 0)` → `targets.web.aliases[0]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _clean_message(err: Mapping[str, Any]) -> str:
    kind, msg = err["type"], str(err["msg"])
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """Line (1-based) of the deepest YAML node along `loc` that exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value if not isinstance(value, yaml.ScalarNode) else key
                    line = key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def problem_pairs(exc: ValidationError) -> list[tuple[Loc, str]]:
    """(field path, message) for each error, cross-field problems expanded to their own paths."""
    pairs: list[tuple[Loc, str]] = []
    for err in exc.errors():
        loc: Loc = tuple(p for p in err["loc"] if p != "[key]" and not str(p).startswith("function-"))
        inner = (err.get("ctx") or {}).get("error")
        subs = inner.problems if isinstance(inner, ConfigProblems) else [((), _clean_message(err))]
        pairs.extend((loc + tuple(sub), message) for sub, message in subs)
    return pairs


def problems_from(exc: ValidationError, root: yaml.Node | None) -> list[str]:
    """Readable lines `<field path>: <message> (line N)`."""
    lines = []
    for loc, message in problem_pairs(exc):
        where = _line_of(root, loc)
        lines.append(f"{format_loc(loc)}: {message}" + (f" (line {where})" if where else ""))
    return lines


def _legacy_config(env: Mapping[str, str]) -> Config:
    try:
        return Config(**legacy.build_data(env))
    except legacy.LegacyError as exc:
        head = "no config file found; legacy environment variables are incomplete:"
        raise ConfigError([head, *exc.problems]) from None
    except ValidationError as exc:
        lines = [f"{legacy.variable_for(loc) or format_loc(loc)}: {msg}" for loc, msg in problem_pairs(exc)]
        raise ConfigError(lines) from None


def read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node]:
    """Parse a YAML mapping and its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read ({exc.__class__.__name__}: {exc})"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"(yaml): {problem}{where}"]) from None
    if data is None or node is None:
        raise ConfigError([f"(root): {path} is empty; see config/minimal.yaml"])
    if not isinstance(data, dict):
        raise ConfigError(["(root): must be a mapping with matrix, targets and rooms (line 1)"])
    return data, node


def validate(data: Mapping[str, Any], root: yaml.Node | None = None) -> Config:
    """Build a `Config` (env overrides applied) or raise `ConfigError`."""
    try:
        return Config(**data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, root)) from None


def _read_secret(path: Path, where: str) -> SecretStr:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read {path} ({exc.strerror or exc})"]) from None
    if not value:
        raise ConfigError([f"{where}: {path} is empty"])
    return SecretStr(value)


def resolve_secrets(cfg: Config) -> Config:
    """Read `*_file` secrets the inline values do not already provide."""
    matrix = cfg.matrix
    if matrix.password is None and matrix.password_file is not None:
        matrix = matrix.model_copy(update={"password": _read_secret(matrix.password_file, "matrix.password_file")})
    keycloak = matrix.auth.keycloak
    if keycloak and keycloak.client_secret is None and keycloak.client_secret_file is not None:
        secret = _read_secret(keycloak.client_secret_file, "matrix.auth.keycloak.client_secret_file")
        auth = matrix.auth.model_copy(update={"keycloak": keycloak.model_copy(update={"client_secret": secret})})
        matrix = matrix.model_copy(update={"auth": auth})
    return cfg.model_copy(update={"matrix": matrix})


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config path and whether it was asked for explicitly (`--config` or `TOGGLER_CONFIG`)."""
    if explicit:
        return Path(explicit), True
    if env.get("TOGGLER_CONFIG"):
        return Path(env["TOGGLER_CONFIG"]), True
    return Path(env.get("TOGGLER_DEFAULT_CONFIG") or DEFAULT_PATH), False


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    read_secrets: bool = True,
) -> Loaded:
    """Load from the file, or from the legacy variables when no file exists at the default path."""
    env = os.environ if env is None else env
    path, asked = config_path(explicit, env)
    if not asked and not path.exists():
        cfg = _legacy_config(env)
        return Loaded(resolve_secrets(cfg) if read_secrets else cfg, "legacy environment")
    data, node = read_yaml(path)
    cfg = validate(data, node)
    ignored = legacy.present(env)
    warnings = [f"config file {path} wins; ignoring legacy variables: {', '.join(ignored)}"] if ignored else []
    return Loaded(resolve_secrets(cfg) if read_secrets else cfg, str(path), warnings)

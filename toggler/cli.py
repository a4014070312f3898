"""The `toggler` command line: a small registry of subcommands, global options and exit codes.

Exit codes: 0 ok, 1 unexpected failure, 2 invalid configuration or usage. A subcommand is a function
`(args) -> int` registered with `@subcommand(name, help, arguments=...)`; import heavy adapters inside
the function, so `check-config`, `schema` and `version` stay light. `main` sets up logging at `--log-level`
(default WARNING) before dispatch; a long-running subcommand may call `logs.setup_logging` again with the
config's level and format.
Must not import nio, kubernetes, apscheduler or aiohttp at module level.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from toggler import __version__, cli_run, conntest, logs, rbac
from toggler.config import ANY_ROOM, Config, KeycloakConfig, MatrixConfig, RoomConfig, Target
from toggler.durations import format_duration
from toggler.loader import ConfigError, Loaded, load_config
from toggler.policy import Policy

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Subcommand:
    """One `toggler <name>` entry: its help line, extra arguments and handler."""

    name: str
    help: str
    handler: Handler
    arguments: Arguments | None = None


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, help: str, *, arguments: Arguments | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated function as `toggler <name>`."""

    def register(handler: Handler) -> Handler:
        SUBCOMMANDS[name] = Subcommand(name, help, handler, arguments)
        return handler

    return register


def build_parser() -> argparse.ArgumentParser:
    """The parser with global options and every registered subcommand."""
    parser = argparse.ArgumentParser(prog="toggler", description="Switch Kubernetes workloads on and off from Matrix.")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $TOGGLER_CONFIG, else /etc/toggler/config.yaml if it exists, else the legacy "
        "environment variables)",
    )
    parser.add_argument("--log-level", choices=logs.LEVELS, type=str.upper, help="log level (default WARNING)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for spec in SUBCOMMANDS.values():
        sub = commands.add_parser(spec.name, help=spec.help, description=spec.help)
        if spec.arguments:
            spec.arguments(sub)
        if not any("--config" in action.option_strings for action in sub._actions):
            # `toggler run --config X` works as well as `toggler --config X run`
            sub.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file")
        sub.set_defaults(handler=spec.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, set up logging, run the subcommand; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    logs.setup_logging(args.log_level or "WARNING")
    handler: Handler = args.handler
    return handler(args)


def register_config_secrets(cfg: Config) -> None:
    """Redact the config's inline secrets from all log output."""
    if cfg.matrix.password:
        logs.register_secret(cfg.matrix.password.get_secret_value())
    keycloak = cfg.matrix.auth.keycloak
    if keycloak and keycloak.client_secret:
        logs.register_secret(keycloak.client_secret.get_secret_value())


def _duration(value: timedelta | None) -> str:
    return "never" if value is None else format_duration(value)


def _password_source(matrix: MatrixConfig) -> str:
    if matrix.password is not None:
        return "set inline or from the environment"
    return f"read from {matrix.password_file} at start"


def _matrix_lines(cfg: Config) -> Iterator[str]:
    matrix = cfg.matrix
    yield f"matrix: {matrix.user_id} on {matrix.homeserver}, device {matrix.device_name!r}, store {matrix.store_path}"
    yield f"  password: {_password_source(matrix)}"
    auth, keycloak = matrix.auth, matrix.auth.keycloak
    if auth.method == "jwt" and keycloak is not None:
        yield f"  login: jwt ({auth.login_type}) via Keycloak {keycloak.effective_token_url}"
        yield f"    client: {keycloak.client_id}, secret: {_client_secret_source(keycloak)}"
    else:
        yield "  login: password"
    yield f"  echo commands: {'yes' if matrix.echo else 'no'}"


def _client_secret_source(keycloak: KeycloakConfig) -> str:
    if keycloak.client_secret is not None:
        return "set inline or from the environment"
    path = keycloak.client_secret_file
    return f"read from {path} at start" if path else "none (public client)"


def _defaults_lines(cfg: Config) -> Iterator[str]:
    d = cfg.defaults
    yield (
        f"defaults: auto-stop {_duration(d.auto_stop_after)}, warn {format_duration(d.warn_before)} before, "
        f"max duration {format_duration(d.max_duration)}, max command age {format_duration(d.max_command_age)}, "
        f"time zone {d.timezone}{', DRY RUN' if d.dry_run else ''}"
    )
    yield f"logging: {cfg.logging.level}, {cfg.logging.format}"


def _schedule(cfg: Config, name: str, target: Target) -> str:
    if target.schedule is None:
        return "none"
    pairs = (("stop", target.schedule.stop), ("start", target.schedule.start))
    parts = [f"{word} '{expr}'" for word, expr in pairs if expr]
    return f"{', '.join(parts)} ({cfg.schedule_timezone(name)})"


def _target_lines(cfg: Config) -> Iterator[str]:
    yield f"targets ({len(cfg.targets)}):"
    for name, target in cfg.targets.items():
        about = f" — {target.description}" if target.description else ""
        yield f"  {name}: {target.kind} {target.namespace}/{cfg.object_name(name)}{about}"
        yield f"    aliases: {', '.join(target.aliases) or '-'}"
        yield (
            f"    replicas: {target.replicas}, auto-stop: {_duration(cfg.auto_stop_after(name))}, "
            f"max duration: {format_duration(cfg.max_duration(name))}"
        )
        yield f"    schedule: {_schedule(cfg, name, target)}"
        if target.notify_room:
            yield f"    notify room: {target.notify_room}"


def _room_users(room: RoomConfig) -> list[str]:
    return list(dict.fromkeys([*room.users, *room.grants]))


def _room_lines(cfg: Config) -> Iterator[str]:
    policy = Policy(cfg)
    yield f"rooms ({len(cfg.rooms)}):" if cfg.rooms else "rooms: none (nobody can use the bot)"
    for key, room in cfg.rooms.items():
        label = f"{key} (any room)" if key == ANY_ROOM else key
        yield f"  {label}:"
        yield (
            f"    require encryption: {'yes' if room.require_encryption else 'no'}, "
            f"prefix: {room.command_prefix or '-'}, actions: {', '.join(room.actions)}"
        )
        for user in _room_users(room):
            yield f"    {user} may use: {', '.join(policy.usable_targets(user, key)) or '-'}"


def summary(loaded: Loaded) -> list[str]:
    """A readable description of a valid config: source, account, targets, rooms, warnings."""
    cfg = loaded.config
    lines = [f"config OK: {loaded.source}", *_matrix_lines(cfg), *_defaults_lines(cfg)]
    lines += ["", *_target_lines(cfg), "", *_room_lines(cfg)]
    if loaded.warnings:
        lines += ["", f"warnings ({len(loaded.warnings)}):", *(f"  {w}" for w in loaded.warnings)]
    return lines


def _check_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", metavar="PATH", help="config file to check (default: as `--config`)")


@subcommand("check-config", "validate a config and print what it allows", arguments=_check_config_arguments)
def check_config(args: argparse.Namespace) -> int:
    """Load without reading secret files; print the summary, or every problem on stderr (exit 2)."""
    try:
        loaded = load_config(args.path or args.config, read_secrets=False)
        text = "\n".join(summary(loaded))
    except ConfigError as exc:
        count = sum(1 for line in exc.problems if not line.endswith(":"))
        print(f"invalid config ({count} problem{'' if count == 1 else 's'}):", file=sys.stderr)
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # the one place a bug must not become a traceback
        log.debug("check-config failed", exc_info=True)
        print(f"check-config failed unexpectedly: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    register_config_secrets(loaded.config)
    print(text)
    return EXIT_OK


@subcommand("schema", "print the config's JSON Schema")
def schema(args: argparse.Namespace) -> int:
    """The JSON Schema of `Config`, as committed in schemas/toggler.schema.json."""
    print(json.dumps(Config.model_json_schema(), indent=2))
    return EXIT_OK


@subcommand("version", "print the version")
def version(args: argparse.Namespace) -> int:
    """`toggler <version>`."""
    print(f"toggler {__version__}")
    return EXIT_OK


subcommand("rbac", rbac.HELP, arguments=rbac.add_arguments)(rbac.run_rbac)
subcommand("run", cli_run.HELP, arguments=cli_run.add_arguments)(cli_run.run)
subcommand("conntest", conntest.HELP, arguments=conntest.add_arguments)(conntest.run)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interactive", action="store_true", help="type as Alice instead of the script")
    parser.add_argument("--workdir", default=".demo", help="where the demo keeps its data (wiped at start)")


@subcommand("demo", "run the embedded demo: local Synapse, Kubernetes emulator, the bot and a scripted chat",
            arguments=_demo_arguments)
def demo(args: argparse.Namespace) -> int:
    """Imported lazily: the demo needs the `test` extra (kmock) and the Synapse virtualenv."""
    from toggler import demo as demo_module  # noqa: PLC0415

    logs.setup_logging(args.log_level or "WARNING")
    if not args.log_level:
        logging.getLogger("nio").setLevel(logging.ERROR)  # key-sharing chatter would drown the transcript
    return demo_module.run(args)

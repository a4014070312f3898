"""`toggler run`: load the config (secrets included), set up logging, run the app until SIGTERM/SIGINT.

Exit codes: 0 after a clean shutdown, 1 when the bot cannot log in for good, 2 for an invalid config.
Heavy adapters (nio, kubernetes, apscheduler) are imported only when this command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from toggler import logs
from toggler.loader import ConfigError, load_config

log = logging.getLogger(__name__)
HELP = "run the bot: Matrix sync, Kubernetes watches, timers and the health server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--dry-run` (no writes to the cluster)."""
    parser.add_argument("--dry-run", action="store_true", default=None,
                        help="write nothing to the cluster; replies and logs say what would happen")


def run(args: argparse.Namespace) -> int:
    """The `run` handler."""
    try:
        loaded = load_config(args.config, read_secrets=True)
    except ConfigError as exc:
        print(f"invalid config ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    cfg = loaded.config
    logs.setup_logging(args.log_level or cfg.logging.level, cfg.logging.format)
    from toggler.cli import register_config_secrets  # noqa: PLC0415 (cli imports this module)

    register_config_secrets(cfg)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    log.info("config from %s", loaded.source)
    return asyncio.run(_serve(cfg, dry_run=args.dry_run))


async def _serve(cfg: object, *, dry_run: bool | None) -> int:
    from toggler.app import App  # noqa: PLC0415 (heavy imports only for `run`)
    from toggler.config import Config  # noqa: PLC0415
    from toggler.matrix.session import LoginFailed  # noqa: PLC0415

    assert isinstance(cfg, Config)
    app = App(cfg, dry_run=dry_run)
    app.install_signals()
    try:
        await app.run()
    except LoginFailed:  # the bot already logged the one line that says why
        return 1
    return 0

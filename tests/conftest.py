"""Shared pytest set-up. Fixtures for real servers live in tests/support/ and are registered here."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.support.keycloak", "tests.support.kube", "tests.support.synapse"]


@pytest.fixture(autouse=True)
def _logger_levels() -> Iterator[None]:
    """CLI commands run in-process set logger levels (e.g. `nio` to ERROR); undo that after each test."""
    levels = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
              if isinstance(logger, logging.Logger)}
    root = logging.getLogger().level
    yield
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            logger.setLevel(levels.get(name, logging.NOTSET))
    logging.getLogger().setLevel(root)

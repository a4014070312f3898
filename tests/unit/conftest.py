"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from toggler import legacy, logs


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No inherited TOGGLER_/legacy variables, the default config path at a missing file; root logging and
    the registered secrets restored afterwards (the CLI configures both)."""
    for name in [*legacy.VARIABLES, *(key for key in os.environ if key.startswith("TOGGLER_"))]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOGGLER_DEFAULT_CONFIG", str(tmp_path / "absent.yaml"))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logs.forget_secrets()

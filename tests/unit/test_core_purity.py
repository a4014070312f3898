"""The pure core imports none of the adapter libraries (nio, kubernetes, apscheduler, aiohttp)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = [
    "config",
    "config_rules",
    "loader",
    "legacy",
    "commands",
    "policy",
    "service",
    "replies",
    "replies_text",
    "cluster_cache",
    "pods",
    "replies_status",
    "rbac",
    "configdoc",
    "outcomes",
    "ports",
    "durations",
    "cron",
    "logs",
]
FORBIDDEN = ("nio", "kubernetes", "apscheduler", "aiohttp")
PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))))
"""


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_adapter_library(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, f"toggler.{module}", ",".join(FORBIDDEN)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"toggler.{module} pulls in {result.stdout.strip()}"


def test_probe_detects_a_forbidden_import() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "aiohttp", ",".join(FORBIDDEN)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "aiohttp" in result.stdout.split(",")

"""`make demo` runs `toggler demo`: the whole scripted conversation must play out, then everything stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(240)]
TOGGLER = Path(sys.executable).parent / "toggler"


def test_demo_plays_the_whole_script(tmp_path: Path) -> None:
    result = subprocess.run([str(TOGGLER), "demo", "--workdir", str(tmp_path / "demo")],
                            capture_output=True, text=True, timeout=200, check=False)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    for line in ("your targets here: `web`, `worker`",            # help
                 "`web` (also `site`) — Deployment",               # list
                 "starting `web` (0/2 ready)…",                    # start …
                 "(edited) `web` is on — 2/2 ready after",         # … edited once ready
                 "`web` is on, 2/2 ready, stops at",               # status
                 "`web` now stops at",                             # extend
                 "`web` is not a target you can use here",         # mallory refused
                 "stopped `web` (was 2 replicas)",                 # stop
                 "`web` is off",                                   # final status
                 "script done."):
        assert line in out, f"missing {line!r} in:\n{out}"
    assert "Traceback" not in out + result.stderr

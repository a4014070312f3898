"""`toggler run` as a real process: a kubeconfig for the emulator, a password file, SIGTERM shutdown,
and DEBUG logs that never contain the password or the access token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.kube import eventually
from tests.support.synapse import Account, Synapse, UserClient, ask, open_room
from toggler.devenv.kube import KubeServer, write_kubeconfig
from toggler.devenv.synapse import free_port

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(120)]
TOGGLER = Path(sys.executable).parent / "toggler"



def write_config(tmp: Path, synapse: Synapse, bot: Account, alias: str, alice: str, kube: KubeServer,
                 port: int) -> Path:
    (tmp / "password").write_text(bot.password + "\n")
    config = {
        "matrix": {"homeserver": synapse.base_url, "user_id": bot.user_id, "password_file": str(tmp / "password"),
                   "store_path": str(tmp / "store"), "sync_timeout": "5s"},
        "targets": {"web": {"namespace": "apps"}},
        "rooms": {alias: {"users": [alice], "targets": ["web"]}},
        "kubernetes": {"kubeconfig": str(write_kubeconfig(tmp / "kubeconfig", kube.url))},
        "health": {"port": port},
        "logging": {"level": "DEBUG", "format": "json"},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def test_run_serves_commands_and_stops_cleanly_on_sigterm(
    people: dict[str, UserClient], running_synapse: Synapse, bot_account: Account, kube: KubeServer, tmp_path: Path
) -> None:
    kube.seed("Deployment", "apps", "web", replicas=0)
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    port = free_port()
    config = write_config(tmp_path, running_synapse, bot_account, alias, alice.user_id, kube, port)
    log_path = tmp_path / "toggler.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOGGLER_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: ASYNC220 (the bot under test is its own process)
            [str(TOGGLER), "run", "--config", str(config)], stdout=log, stderr=log, env=env)
    try:
        await eventually(lambda: ready(port) or process.poll() is not None, timeout=45, what="readyz")
        assert process.poll() is None, log_path.read_text()
        await alice.wait_member(room_id, bot_account.user_id, timeout=30)
        assert "`web` is off" in await ask(alice, room_id, "status", timeout=20)
        begun = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
        took = time.monotonic() - begun
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    print(f"toggler run stopped {took:.2f} s after SIGTERM")
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(r.get("message", "").startswith("toggler stopped") for r in records), text[-2000:]
    assert "Traceback" not in text
    assert bot_account.password not in text
    credentials = json.loads((tmp_path / "store" / "credentials.json").read_text())
    assert credentials["access_token"] not in text

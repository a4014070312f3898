"""The child processes of `bench/roundtrip.py` and the files they run on.

Run as a script, this module is one of the children: `kmock` (the Kubernetes emulator with the benchmark's
Deployments; prints its URL, serves until stdin closes) or `echo SETTINGS` (the bare nio echo bot, until
SIGTERM). The parent imports the rest: `Child` (a started process with its log), the target list, the
generated toggler config and `memory()` (VmRSS/VmHWM from /proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAMESPACES = 4
TARGETS = 100
MIB = 1024


# --- child processes -----------------------------------------------------------------------------------
def kmock_child() -> int:
    """Child: kmock with 100 Deployments; prints its URL, serves until stdin closes."""
    from toggler.devenv.kube import KubeServer, workload  # noqa: PLC0415 (child process only)

    kube = KubeServer().start()
    try:
        kube.put_objects([workload("Deployment", namespace, name, replicas=i % 3) for i, (_, namespace, name)
                          in enumerate(target_list())])
        print(kube.url, flush=True)
        sys.stdin.read()
    finally:
        kube.close()
    return 0


def echo_child(settings_path: str) -> int:
    """Child: the bare nio echo bot, until SIGTERM/SIGINT."""
    settings = json.loads(Path(settings_path).read_text())
    Path(settings["store"]).mkdir(parents=True, exist_ok=True)
    return asyncio.run(echo_bot(**settings))


async def echo_bot(*, homeserver: str, user_id: str, password: str, store: str) -> int:
    """Log in, join pending invites, answer every text message with an `m.notice` reply; encrypted."""
    from nio import AsyncClient, AsyncClientConfig, ErrorResponse, MatrixRoom, RoomMessageText  # noqa: PLC0415

    config = AsyncClientConfig(store_sync_tokens=True, encryption_enabled=True)
    client = AsyncClient(homeserver, user_id, store_path=store, config=config)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        response = await client.login(password, device_name="echo-bot")
        if isinstance(response, ErrorResponse):
            print(f"echo bot: login failed: {response}", file=sys.stderr)
            return 1
        first = await client.sync(timeout=0, full_state=True)  # room history: not answered
        if isinstance(first, ErrorResponse):
            print(f"echo bot: first sync failed: {first}", file=sys.stderr)
            return 1
        for room_id in first.rooms.invite:
            await client.join(room_id)

        async def answer(room: MatrixRoom, event: RoomMessageText) -> None:
            if event.sender == client.user_id:
                return
            content = {"msgtype": "m.notice", "body": event.body,
                       "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}}}
            await client.room_send(room.room_id, "m.room.message", content, ignore_unverified_devices=True)

        client.add_event_callback(answer, RoomMessageText)
        syncing = asyncio.create_task(client.sync_forever(timeout=30000))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({syncing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (syncing, stopping):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await syncing
        return 0
    finally:
        await client.close()


# --- the parent's view of the children -----------------------------------------------------------------
def target_list() -> list[tuple[str, str, str]]:
    """(target, namespace, deployment) for the 100 targets."""
    return [(f"t{i:03d}", f"ns{i % NAMESPACES}", f"app{i:03d}") for i in range(TARGETS)]


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / MIB
    return values


@dataclass
class Child:
    """A child process started here, with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None
    stdin: bool = False
    process: subprocess.Popen[bytes] | None = None
    stop_seconds: float | None = None

    def start(self) -> Child:
        out = self.log.open("ab")
        try:
            self.process = subprocess.Popen(  # own process group: Ctrl-C reaches the parent, which stops us
                self.args, stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL, stdout=subprocess.PIPE
                if self.stdin else out, stderr=out, cwd=ROOT, env=self.env, process_group=0)
        finally:
            out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def read_line(self, timeout: float) -> str:
        """The first line the child prints (its URL)."""
        assert self.process is not None and self.process.stdout is not None
        stdout: IO[bytes] = self.process.stdout
        result: list[bytes] = []

        def read() -> None:
            result.append(stdout.readline())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")
        return result[0].decode().strip()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        began = time.monotonic()
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        self.stop_seconds = time.monotonic() - began
        if process.stdout is not None:
            process.stdout.close()

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def child_env() -> dict[str, str]:
    """This environment without `TOGGLER_…` variables (they would override the generated config)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("TOGGLER_")}


def write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path



def toggler_config(work: Path, *, homeserver: str, bot_id: str, user_id: str, rooms: list[str],
                   kube_url: str, health_port: int) -> Path:
    """config.yaml (JSON is YAML) for 100 targets and 20 rooms, secrets in files."""
    from toggler.devenv.kube import write_kubeconfig  # noqa: PLC0415 (the parent only)

    password = work / "secrets" / "toggler-password"
    config = {
        "matrix": {"homeserver": homeserver, "user_id": bot_id, "password_file": str(password),
                   "device_name": "toggler-bench", "store_path": str(work / "toggler-store")},
        "targets": {target: {"namespace": namespace, "name": name, "description": f"benchmark app {name}"}
                    for target, namespace, name in target_list()},
        "rooms": {room: {"users": [user_id], "targets": ["*"], "require_encryption": True} for room in rooms},
        "kubernetes": {"kubeconfig": str(write_kubeconfig(work / "kubeconfig", kube_url))},
        "health": {"host": "127.0.0.1", "port": health_port},
        "logging": {"level": "INFO"},
    }
    return write_private(work / "toggler.yaml", json.dumps(config, indent=1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["kmock"]:
        return kmock_child()
    if len(argv) == 2 and argv[0] == "echo":
        return echo_child(argv[1])
    print("usage: roundtrip_stage.py kmock | echo SETTINGS (started by bench/roundtrip.py)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

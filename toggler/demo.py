"""`toggler demo`: the whole product on this machine, with nothing of the user's.

Starts Synapse on 127.0.0.1 (its own virtualenv, data under `.demo/`), a kmock Kubernetes emulator seeded
with two Deployments and a controller that makes status follow spec after two seconds, `toggler run` on
`config/demo.yaml` in this process, and Alice's chat client in an encrypted room. Alice plays a script
(or, with `--interactive`, you type as Alice); Mallory tries once and is refused. The transcript and the
replica table are printed as they change. Ctrl-C or the end of the script stops every process started here.
Needs the `test` extra (kmock) and the Synapse virtualenv (`make synapse`); `make demo` sets both up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from toggler.app import App
from toggler.devenv.chat import Seen, UserClient
from toggler.devenv.kube import KubeServer
from toggler.devenv.synapse import Account, Synapse, synapse_python
from toggler.loader import load_config

SCRIPT: tuple[tuple[str, str], ...] = (
    ("alice", "help"),
    ("alice", "list"),
    ("alice", "start web for 1m"),
    ("alice", "status"),
    ("alice", "extend web 5m"),
    ("mallory", "start web"),
    ("alice", "stop web"),
    ("alice", "status web"),
)
REPLY_TIMEOUT = 30.0


@dataclass
class Stage:
    """Everything the demo started."""

    synapse: Synapse
    kube: KubeServer
    app: App
    alice: UserClient
    mallory: UserClient
    room: str


def run(args: argparse.Namespace) -> int:
    """The `demo` handler."""
    try:
        return asyncio.run(_demo(Path(args.workdir).resolve(), interactive=args.interactive))
    except KeyboardInterrupt:
        print("\ninterrupted; everything the demo started is stopped.")
        return 130


def say(who: str, text: str) -> None:
    """One transcript line."""
    pad = f"{who:>8} │ "
    lines = text.splitlines() or [""]
    print(pad + lines[0] + "".join(f"\n{' ' * 8} │ {line}" for line in lines[1:]), flush=True)


def replica_table(app: App) -> str:
    """target, state, ready/desired, deadline — straight from the watch cache."""
    rows = [f"{'target':<8} {'state':<9} {'ready':>7}  stops at"]
    for name in app.config.targets:
        status = app.service.status(name)
        deadline = status.stop_at.strftime("%H:%M:%S") if status.stop_at else "—"
        rows.append(f"{name:<8} {status.state.value:<9} {status.ready:>3}/{status.desired:<3}  {deadline}")
    return "\n".join(rows)


async def _demo(workdir: Path, *, interactive: bool) -> int:
    async with _stage(workdir) as stage:
        print(f"\nencrypted room {stage.room} (#demo:localhost); bot {stage.app.config.matrix.user_id}\n")
        print(replica_table(stage.app) + "\n")
        if interactive:
            await _interactive(stage)
        else:
            await _scripted(stage)
    return 0


async def _scripted(stage: Stage) -> None:
    people = {"alice": stage.alice, "mallory": stage.mallory}
    for who, text in SCRIPT:
        await _exchange(stage, people[who], who, text)
        if who == "alice" and text.startswith(("start", "stop", "extend")):
            if text.startswith("stop"):
                await asyncio.sleep(2.5)  # the emulator's controller takes 2 s to remove the pods
            print("\n" + replica_table(stage.app) + "\n", flush=True)
    print("script done.")


async def _exchange(stage: Stage, person: UserClient, who: str, text: str) -> None:
    say(who, text)
    event_id = await person.send(stage.room, text)
    try:
        reply = await stage.alice.reply_to(stage.room, event_id, REPLY_TIMEOUT)
    except TimeoutError:
        say("toggler", "(no reply — refused senders may get silence)")
        return
    say("toggler", reply.body)
    if text.startswith(("start", "on ")) and "starting" in reply.body:
        edit = await _final_edit(stage.alice, reply)
        if edit is not None:
            say("toggler", f"(edited) {edit.body}")


async def _final_edit(person: UserClient, reply: Seen) -> Seen | None:
    with contextlib.suppress(TimeoutError):
        return await person.edit_of(reply.event.event_id, REPLY_TIMEOUT)
    return None


async def _interactive(stage: Stage) -> None:
    print("type commands as Alice (empty line or Ctrl-D to quit)")
    seen = len(stage.alice.seen)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line.strip():
            return
        await stage.alice.send(stage.room, line.strip())
        await asyncio.sleep(2.5)
        for item in stage.alice.notices(stage.room)[seen:]:
            say("toggler", ("(edited) " if item.replaces else "") + item.body)
        seen = len(stage.alice.notices(stage.room))
        print(replica_table(stage.app), flush=True)


@contextlib.asynccontextmanager
async def _stage(workdir: Path) -> AsyncIterator[Stage]:
    await asyncio.to_thread(_fresh, workdir)
    async with contextlib.AsyncExitStack() as stack:
        synapse = Synapse(workdir / "synapse", synapse_python())
        print(f"starting Synapse on {synapse.base_url} …", flush=True)
        await asyncio.to_thread(synapse.start)
        stack.callback(synapse.stop)
        kube = _kube()
        stack.callback(kube.close)
        bot, alice_account, mallory_account = [await synapse.register(name) for name in ("toggler", "alice", "mallory")]
        alice = await _person(stack, synapse, alice_account, workdir / "alice")
        mallory = await _person(stack, synapse, mallory_account, workdir / "mallory")
        room = await alice.create_room(invite=[bot.user_id, mallory.user_id], alias="demo")
        await mallory.join(room)
        app = _app(workdir, synapse, bot, kube)
        task = asyncio.create_task(app.run(), name="toggler")
        stack.push_async_callback(_stop_app, app, task)
        await alice.wait_member(room, bot.user_id, timeout=60)
        yield Stage(synapse, kube, app, alice, mallory, room)


def _fresh(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)


def _kube() -> KubeServer:
    kube = KubeServer(controller_delay=2.0).start()
    for name in ("web", "worker"):
        kube.seed("Deployment", "demo", name, replicas=0)
    print(f"Kubernetes emulator on {kube.url} with Deployments demo/web and demo/worker", flush=True)
    return kube


async def _person(stack: contextlib.AsyncExitStack, synapse: Synapse, account: Account, store: Path) -> UserClient:
    person = await UserClient(synapse.base_url, account, store).start()
    stack.push_async_callback(person.close)
    return person


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True)
    path.write_text(value)
    path.chmod(0o600)


def _app(workdir: Path, synapse: Synapse, bot: Account, kube: KubeServer) -> App:
    secret = workdir / "secrets" / "toggler-password"
    _write_secret(secret, bot.password)
    overrides = {
        "TOGGLER_MATRIX__HOMESERVER": synapse.base_url,
        "TOGGLER_MATRIX__PASSWORD_FILE": str(secret),
        "TOGGLER_MATRIX__STORE_PATH": str(workdir / "store"),
        "TOGGLER_HEALTH__PORT": "0",
    }
    os.environ.update(overrides)
    config_path = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
    loaded = load_config(os.environ.get("TOGGLER_DEMO_CONFIG", str(config_path)))
    return App(loaded.config, kube_configuration=kube.configuration())


async def _stop_app(app: App, task: asyncio.Task[None]) -> None:
    app.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 15)

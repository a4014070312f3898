"""Benchmark: command round trip through a real Synapse, toggler against a bare nio echo bot (`make bench`).

One Synapse on 127.0.0.1 (fresh data dir), one user (`UserClient`) and, each in its own child process
(`bench/roundtrip_stage.py`):

- toggler (`python -m toggler run`) on a generated config: 100 targets in 4 namespaces of a kmock
  Kubernetes emulator (also a child process, reached through a generated kubeconfig), 20 encrypted rooms
  the user created and invited it to, one of them the benchmark room;
- a bare matrix-nio echo bot (the floor): an encrypted `AsyncClient` that answers every message in its own
  encrypted room (same user) with an `m.notice` reply.

Round trip = the user's send until the bot's reply is decrypted by the user's client. After a few warm-up
messages, `status <target>` commands go to both bots in turn (toggler, echo, toggler, …; same Synapse state
for both), one at a time. Then toggler gets the rest of its 2,000 commands (sequentially by default) and its
RSS (VmRSS of its own process, from /proc) is read again. Prints one table with the goals of issue 4 and
exits 1 when a goal is missed (the table is printed first in every case). Everything started here is
stopped at the end, on Ctrl-C and on errors; every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STAGE = str(Path(__file__).with_name("roundtrip_stage.py"))

from bench.roundtrip_stage import (  # noqa: E402 (after the path set-up)
    TARGETS,
    Child,
    child_env,
    memory,
    target_list,
    toggler_config,
    write_private,
)

ROOMS = 20
WARMUP = 5
MEASURED = 200
COMMANDS = 2000
REPLY_TIMEOUT = 30.0
FIRST_REPLY_TIMEOUT = 60.0
IDLE_SETTLE = 3.0
GOAL_RATIO = 1.15
GOAL_IDLE_MIB = 96.0
GOAL_GROWTH_MIB = 5.0


# --- measuring ---------------------------------------------------------------------------------------
@dataclass
class Results:
    """Everything the table shows."""

    toggler: list[float] = field(default_factory=list)
    echo: list[float] = field(default_factory=list)
    first: dict[str, float] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=lambda: {"toggler": 0, "echo": 0})
    rss: dict[str, dict[str, float]] = field(default_factory=dict)
    commands: int = 0
    bulk: tuple[int, float, int] = (0, 0.0, 1)
    """(commands, seconds, window) of the phase after the measured one."""
    shutdown: float | None = None
    trend: list[tuple[int, float]] = field(default_factory=list)
    """(commands so far, toggler VmRSS MiB) during the bulk phase."""
    setup: float = 0.0
    notes: list[str] = field(default_factory=list)


async def round_trip(user: Any, room: str, text: str, timeout: float = REPLY_TIMEOUT) -> float | None:
    """Seconds from the send until the reply is decrypted by the user; None when no reply came."""
    user.seen.clear()  # the reply is looked for among the events seen since this send
    began = time.perf_counter()
    event_id = await user.send(room, text)
    try:
        await user.reply_to(room, event_id, timeout)
    except TimeoutError:
        return None
    return time.perf_counter() - began


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def ready(url: str) -> bool:
    import aiohttp  # noqa: PLC0415

    try:
        async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(2)) as r:
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def knows_devices(user: Any, user_id: str) -> bool:
    """The user's client has the device keys of `user_id` (so the first message is encrypted for it)."""
    if user.client.should_query_keys:
        await user.client.keys_query()
    return bool(list(user.client.device_store.active_user_devices(user_id)))


@dataclass
class Stage:
    """What `setup` started."""

    user: Any
    toggler: Child
    echo: Child
    room: str
    echo_room: str
    rooms: list[str]
    bot_id: str
    echo_id: str
    health: int


async def setup(stack: contextlib.AsyncExitStack, work: Path) -> Stage:
    from toggler.devenv.chat import UserClient  # noqa: PLC0415
    from toggler.devenv.synapse import Synapse, free_port, synapse_python  # noqa: PLC0415

    synapse = Synapse(work / "synapse", synapse_python())
    print(f"Synapse on {synapse.base_url} …", flush=True)
    stack.callback(synapse.stop)
    await asyncio.to_thread(synapse.start)
    kmock = Child("kmock", [sys.executable, STAGE, "kmock"], work / "kmock.log", stdin=True).start()
    stack.callback(kmock.stop)
    kube_url = await asyncio.to_thread(kmock.read_line, 60)
    bot, echo, alice = [await synapse.register(name) for name in ("toggler", "echo", "alice")]
    user = await UserClient(synapse.base_url, alice, work / "alice").start()
    stack.push_async_callback(user.close)
    rooms = [await user.create_room(invite=[bot.user_id], alias=None) for _ in range(ROOMS)]
    echo_room = await user.create_room(invite=[echo.user_id])
    health = free_port()
    write_private(work / "secrets" / "toggler-password", bot.password)
    config = toggler_config(work, homeserver=synapse.base_url, bot_id=bot.user_id, user_id=alice.user_id,
                            rooms=rooms, kube_url=kube_url, health_port=health)
    toggler = Child("toggler", [sys.executable, "-m", "toggler", "--config", str(config), "run"],
                    work / "toggler.log", env=child_env()).start()
    stack.callback(toggler.stop)
    settings = write_private(work / "echo.json", json.dumps(
        {"homeserver": synapse.base_url, "user_id": echo.user_id, "password": echo.password,
         "store": str(work / "echo-store")}))
    echo_bot_ = Child("echo bot", [sys.executable, STAGE, "echo", str(settings)], work / "echo.log").start()
    stack.callback(echo_bot_.stop)
    print(f"toggler pid {toggler.pid}, echo bot pid {echo_bot_.pid}, kmock pid {kmock.pid}; "
          f"user {alice.user_id} created {ROOMS} + 1 encrypted rooms", flush=True)
    return Stage(user, toggler, echo_bot_, rooms[0], echo_room, rooms, bot.user_id, echo.user_id, health)


async def wait_started(stage: Stage) -> None:
    """toggler ready (logged in, synced, watches up), in all its rooms; both bots' device keys known."""
    async def alive_and_ready() -> bool:
        for child in (stage.toggler, stage.echo):
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
        return await ready(f"http://127.0.0.1:{stage.health}/readyz")

    await wait_until(alive_and_ready, "toggler /readyz", 90)
    for room in stage.rooms:
        await stage.user.wait_member(room, stage.bot_id, timeout=60)
    await stage.user.wait_member(stage.echo_room, stage.echo_id, timeout=60)
    await wait_until(lambda: knows_devices(stage.user, stage.bot_id), "toggler's device keys", 30)
    await wait_until(lambda: knows_devices(stage.user, stage.echo_id), "the echo bot's device keys", 30)


async def warm_up(stage: Stage, results: Results) -> None:
    for name, room in (("toggler", stage.room), ("echo", stage.echo_room)):
        for i in range(WARMUP):
            took = await round_trip(stage.user, room, f"status {target_list()[i][0]}", FIRST_REPLY_TIMEOUT)
            if took is None:
                raise RuntimeError(f"{name}: no reply to warm-up message {i + 1}")
            if i == 0:
                results.first[name] = took
    results.commands += WARMUP


async def measured(stage: Stage, results: Results, count: int) -> None:
    targets = target_list()
    for i in range(count):
        text = f"status {targets[(WARMUP + i) % TARGETS][0]}"
        for name, room, times in (("toggler", stage.room, results.toggler), ("echo", stage.echo_room, results.echo)):
            took = await round_trip(stage.user, room, text)
            if took is None:
                results.missing[name] += 1
            else:
                times.append(took)
        if (i + 1) % 50 == 0:
            print(f"  measured {i + 1}/{count}", flush=True)
    results.commands += count


async def bulk(stage: Stage, results: Results, count: int, window: int) -> None:
    """The rest of toggler's commands: `window` at a time (1 = strictly sequential)."""
    targets = target_list()
    began = time.perf_counter()
    sent = 0
    while sent < count:
        batch = min(window, count - sent)
        texts = [f"status {targets[(results.commands + sent + k) % TARGETS][0]}" for k in range(batch)]
        if batch == 1:
            took = [await round_trip(stage.user, stage.room, texts[0])]
        else:
            took = await batch_round_trip(stage, texts)
        results.missing["toggler"] += sum(1 for t in took if t is None)
        sent += batch
        if sent % 250 < batch:
            rss = memory(stage.toggler.pid)["VmRSS"]
            results.trend.append((results.commands + sent, rss))
            print(f"  bulk {sent}/{count}, toggler RSS {rss:.1f} MiB", flush=True)
    results.bulk = (count, time.perf_counter() - began, window)
    results.commands += count


async def batch_round_trip(stage: Stage, texts: list[str]) -> list[float | None]:
    user = stage.user
    user.seen.clear()
    ids = [await user.send(stage.room, text) for text in texts]

    async def one(event_id: str) -> float | None:
        try:
            await user.reply_to(stage.room, event_id, REPLY_TIMEOUT)
        except TimeoutError:
            return None
        return 0.0
    return list(await asyncio.gather(*(one(event_id) for event_id in ids)))


def new_workdir(path: str) -> Path:
    work = Path(path).resolve()
    work.mkdir(parents=True, exist_ok=False)
    return work


async def run(args: argparse.Namespace) -> Results:
    results = Results()
    began = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        work = new_workdir(args.workdir) if args.workdir else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="toggler-bench-")))
        stage = await setup(stack, work)
        try:
            await wait_started(stage)
            await asyncio.sleep(IDLE_SETTLE)
            results.rss["idle"] = memory(stage.toggler.pid)
            results.rss["echo idle"] = memory(stage.echo.pid)
            results.setup = time.perf_counter() - began
            print(f"set up in {results.setup:.0f} s; toggler idle RSS {results.rss['idle']['VmRSS']:.1f} MiB",
                  flush=True)
            await warm_up(stage, results)
            results.rss["warm"] = memory(stage.toggler.pid)
            print(f"warmed up; {args.measured} commands to each bot, in turn …", flush=True)
            await measured(stage, results, args.measured)
            rest = max(0, args.commands - results.commands)
            how = "sequential" if args.window == 1 else f"{args.window} at a time"
            print(f"{rest} more commands to toggler ({how}) …", flush=True)
            await bulk(stage, results, rest, args.window)
            await asyncio.sleep(IDLE_SETTLE)
            results.rss["after"] = memory(stage.toggler.pid)
            results.rss["echo after"] = memory(stage.echo.pid)
            stage.toggler.stop()
            results.shutdown = stage.toggler.stop_seconds
            if stage.toggler.log.exists():
                warnings = [line for line in stage.toggler.log.read_text(errors="replace").splitlines()
                            if " WARNING " in line or " ERROR " in line]
                results.notes += [f"toggler log: {line}" for line in warnings[:10]]
        except BaseException:
            for child in (stage.toggler, stage.echo):
                print(f"--- {child.name} log tail ---\n{child.tail()}", file=sys.stderr)
            raise
    return results


# --- the table ---------------------------------------------------------------------------------------
def percentile(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def rows(results: Results, args: argparse.Namespace) -> Iterator[tuple[str, str, str, bool | None]]:
    ms = 1000
    nan = [float("nan")]
    t_med, e_med = statistics.median(results.toggler or nan), statistics.median(results.echo or nan)
    t_p95, e_p95 = percentile(results.toggler, 95), percentile(results.echo, 95)
    ratio, ratio95 = t_med / e_med, t_p95 / e_p95
    n = args.measured
    yield (f"toggler round trip, median of {len(results.toggler)}", f"{t_med * ms:.0f} ms", "—", None)
    yield (f"echo bot round trip, median of {len(results.echo)}", f"{e_med * ms:.0f} ms", "—", None)
    yield ("toggler round trip, p95", f"{t_p95 * ms:.0f} ms", "—", None)
    yield ("echo bot round trip, p95", f"{e_p95 * ms:.0f} ms", "—", None)
    yield ("ratio toggler / echo, median", f"{ratio:.2f}", f"≤ {GOAL_RATIO}", ratio <= GOAL_RATIO)
    yield ("ratio toggler / echo, p95", f"{ratio95:.2f}", "—", None)
    pairs = [t - e for t, e in zip(results.toggler, results.echo, strict=False)]
    if pairs:
        yield ("toggler − echo, median of the paired differences", f"{statistics.median(pairs) * ms:+.0f} ms", "—",
               None)
    yield ("first message (key claim), toggler / echo",
           f"{results.first.get('toggler', 0) * ms:.0f} / {results.first.get('echo', 0) * ms:.0f} ms", "—", None)
    missing = sum(results.missing.values())
    yield (f"replies missing (of {n} + {n} measured, {results.commands} toggler)",
           f"{results.missing['toggler']} / {results.missing['echo']}", "0", missing == 0)
    idle, after = results.rss["idle"]["VmRSS"], results.rss["after"]["VmRSS"]
    yield (f"toggler RSS idle ({TARGETS} targets, {ROOMS} rooms, synced)", f"{idle:.1f} MiB",
           f"≤ {GOAL_IDLE_MIB:.0f} MiB", idle <= GOAL_IDLE_MIB)
    yield ("toggler RSS after warm-up", f"{results.rss['warm']['VmRSS']:.1f} MiB", "—", None)
    yield (f"toggler RSS after {results.commands} commands", f"{after:.1f} MiB", "—", None)
    yield ("toggler RSS growth (after − idle)", f"{after - idle:+.1f} MiB", f"≤ {GOAL_GROWTH_MIB:.0f} MiB",
           after - idle <= GOAL_GROWTH_MIB)
    yield ("toggler peak RSS (VmHWM)", f"{results.rss['after']['VmHWM']:.1f} MiB", "—", None)
    yield ("echo bot RSS idle / after", f"{results.rss['echo idle']['VmRSS']:.1f} / "
           f"{results.rss['echo after']['VmRSS']:.1f} MiB", "—", None)
    count, seconds, window = results.bulk
    if count:
        how = "sequential" if window == 1 else f"{window} in flight"
        yield (f"bulk phase: {count} commands, {how}", f"{count / seconds:.1f} /s", "—", None)
    if results.shutdown is not None:
        yield ("toggler SIGTERM → exit", f"{results.shutdown:.1f} s", "—", None)


def table(results: Results, args: argparse.Namespace) -> tuple[str, bool]:
    lines_ = list(rows(results, args))
    width = max(len(row[0]) for row in lines_)
    out = [f"{'metric':<{width}}  {'measured':>17}  {'goal':>9}  ok", "-" * (width + 35)]
    for name, value, goal, ok in lines_:
        mark = "" if ok is None else ("yes" if ok else "NO")
        out.append(f"{name:<{width}}  {value:>17}  {goal:>9}  {mark}")
    if results.trend:
        out.append("toggler RSS during the bulk phase: "
                   + ", ".join(f"{n}: {rss:.1f}" for n, rss in results.trend) + " MiB")
    out += results.notes
    return "\n".join(out), all(ok is not False for *_, ok in lines_)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measured", type=int, default=MEASURED, help="measured commands per bot (default 200)")
    parser.add_argument("--commands", type=int, default=COMMANDS,
                        help="toggler commands in all before the last RSS reading (default 2000)")
    parser.add_argument("--window", type=int, default=1,
                        help="commands in flight in the bulk phase after the measured one (default 1: sequential)")
    parser.add_argument("--workdir", help="keep data and logs in this new directory (default: a temp dir)")
    args = parser.parse_args()
    logging.getLogger("nio").setLevel(logging.ERROR)  # the user's client: "Missing session for device …"
    print(f"toggler round trip vs a bare nio echo bot: Synapse on 127.0.0.1, encrypted rooms, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)", flush=True)
    began = time.perf_counter()
    try:
        results = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("\ninterrupted; everything the benchmark started is stopped.")
        return 130
    text, ok = table(results, args)
    print()
    print(text)
    print(f"total runtime {time.perf_counter() - began:.0f} s (set-up {results.setup:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

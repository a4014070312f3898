"""Benchmark: the watch cache with 1000 targets in 10 namespaces (run by `make bench`, never by the tests).

The Kubernetes API is kmock's emulator, served from a child process (so this process's RSS is toggler's
own). Prints one table with the goals of issue 3 next to the measurements:

- cache warm-up: `start()` until every namespace is listed;
- `status` of all 1000 targets (in-process, median of 20 rounds);
- API requests per `status` round, from kmock's request log (goal 0);
- RSS (VmRSS) before and after the cache fills, and the cache's own live allocations (tracemalloc,
  a second adapter; allocations whose stack passes through toggler's code) — goal ≤ 10 MiB.

Exits 0 when every goal is met, 1 otherwise; stops the emulator it started in every case.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAMESPACES = 10
PER_NAMESPACE = 100
ROUNDS = 20
BASELINE_ROUNDS = 3
BASELINE_SAMPLE = 20  # the baseline reads every 20th target and scales up: kmock answers reads slowly
MIB = 1024 * 1024


def serve(conn: Connection) -> None:
    """Child process: kmock with 1000 Deployments; answers `count` and `stop` over the pipe."""
    from toggler.devenv.kube import KubeServer, workload  # noqa: PLC0415 (child process only)

    kube = KubeServer().start()
    try:
        kube.put_objects([workload("Deployment", f"ns{n}", f"app{i:03d}", replicas=i % 3)
                          for n in range(NAMESPACES) for i in range(PER_NAMESPACE)])
        conn.send(kube.url)
        while (command := conn.recv()) != "stop":
            assert command == "count"
            requests = kube.api_requests()
            conn.send({"total": len(requests),
                       "watch": sum(1 for r in requests if r.action and r.action.value.lower() == "watch")})
    finally:
        kube.close()
        conn.send("stopped")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Emulator:
    """The child process and its pipe."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child,), name="kmock-bench", daemon=True)

    def __enter__(self) -> Emulator:
        self.process.start()
        if not self.conn.poll(60):
            raise RuntimeError("the emulator did not start")
        self.url: str = self.conn.recv()
        return self

    def counts(self) -> dict[str, int]:
        self.conn.send("count")
        answer: dict[str, int] = self.conn.recv()
        return answer

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.send("stop")
            self.conn.poll(20)
        finally:
            self.process.join(10)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(5)


async def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.02)


async def measure(emulator: Emulator) -> dict[str, Any]:
    from kubernetes import client  # noqa: PLC0415

    from toggler.cluster import KubeCluster  # noqa: PLC0415
    from toggler.ports import State, TargetRef  # noqa: PLC0415

    refs = [TargetRef(f"t{n}-{i}", "Deployment", f"ns{n}", f"app{i:03d}")
            for n in range(NAMESPACES) for i in range(PER_NAMESPACE)]
    configuration = client.Configuration()
    configuration.host = emulator.url
    gc.collect()
    results: dict[str, Any] = {"rss_before": rss_mib()}

    cluster = KubeCluster(refs, configuration=configuration)
    began = time.perf_counter()
    await cluster.start()
    if not await cluster.wait_warm(120):
        raise RuntimeError(f"cache not warm: {cluster.watch_problems()}")
    results["warmup"] = time.perf_counter() - began
    await wait_for(lambda: emulator.counts()["watch"] >= NAMESPACES)  # every watch is open
    gc.collect()
    results["rss_after"] = rss_mib()

    before = emulator.counts()["total"]
    rounds = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        statuses = [cluster.status(ref) for ref in refs]
        rounds.append(time.perf_counter() - began)
    results["requests_per_status"] = (emulator.counts()["total"] - before) / ROUNDS
    results["status_all"] = statistics.median(rounds)
    results["states"] = {state.value: sum(1 for s in statuses if s.state is state) for state in State}
    await cluster.stop()
    results["baseline"] = await baseline_status(refs, configuration, emulator)
    results["cache_bytes"] = await traced_cache_size(refs, configuration)
    return results


async def baseline_status(refs: list[Any], configuration: Any, emulator: Emulator) -> dict[str, float]:
    """The predecessor's way, in the same run: one `read_namespaced_deployment` per target per `status`."""
    from kubernetes import client  # noqa: PLC0415

    api = client.AppsV1Api(client.ApiClient(configuration))
    sample = refs[::BASELINE_SAMPLE]
    before = emulator.counts()["total"]
    rounds = []
    for _ in range(BASELINE_ROUNDS):
        began = time.perf_counter()
        await asyncio.to_thread(lambda: [api.read_namespaced_deployment(r.name, r.namespace) for r in sample])
        rounds.append(time.perf_counter() - began)
    scale = len(refs) / len(sample)
    return {"status_all": statistics.median(rounds) * scale,
            "requests": (emulator.counts()["total"] - before) / BASELINE_ROUNDS * scale}


async def traced_cache_size(refs: list[Any], configuration: Any) -> int:
    """Live allocations made through toggler's code once a second adapter's cache is warm."""
    from toggler.cluster import KubeCluster  # noqa: PLC0415

    gc.collect()
    tracemalloc.start(30)
    cluster = KubeCluster(refs, configuration=configuration)
    try:
        await cluster.start()
        await cluster.wait_warm(120)
        await asyncio.sleep(0.5)  # let the watches' initial ADDED events settle
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
    finally:
        await cluster.stop()
        tracemalloc.stop()
    ours = snapshot.filter_traces([tracemalloc.Filter(True, str(ROOT / "toggler" / "*"), all_frames=True)])
    return sum(stat.size for stat in ours.statistics("filename"))


def table(results: dict[str, Any]) -> tuple[str, bool]:
    growth = results["rss_after"] - results["rss_before"]
    cache = results["cache_bytes"] / MIB
    rows = [
        ("cache warm-up (start → all 10 namespaces listed)", f"{results['warmup'] * 1000:.0f} ms", "—", True),
        ("status of all 1000 targets (median of 20)", f"{results['status_all'] * 1000:.2f} ms", "≤ 50 ms",
         results["status_all"] <= 0.050),
        ("API requests per status (kmock request log)", f"{results['requests_per_status']:g}", "0",
         results["requests_per_status"] == 0),
        ("RSS before the cache fills", f"{results['rss_before']:.1f} MiB", "—", True),
        ("RSS after the cache fills", f"{results['rss_after']:.1f} MiB", "—", True),
        ("RSS growth (cache + 10 watch threads + buffers)", f"{growth:.1f} MiB", "≤ 10 MiB", growth <= 10),
        ("cache memory (tracemalloc, live via toggler code)", f"{cache:.2f} MiB", "≤ 10 MiB", cache <= 10),
    ]
    width = max(len(row[0]) for row in rows)
    lines = [f"{'metric':<{width}}  {'measured':>12}  {'goal':>9}  ok", "-" * (width + 30)]
    lines += [f"{name:<{width}}  {value:>12}  {goal:>9}  {'yes' if ok else 'NO'}" for name, value, goal, ok in rows]
    base = results["baseline"]
    lines.append(f"baseline (one API read per target, as the predecessor did; median of {BASELINE_ROUNDS}): "
                 f"{base['status_all'] * 1000:.0f} ms (extrapolated from every {BASELINE_SAMPLE}th target)\n  and "
                 f"{base['requests']:g} API requests per status of all "
                 f"targets — the cache is {base['status_all'] / results['status_all']:,.0f}× faster")
    lines.append(f"states seen: {results['states']}")
    return "\n".join(lines), all(row[3] for row in rows)


def main() -> int:
    print(f"toggler watch cache: {NAMESPACES * PER_NAMESPACE} Deployments in {NAMESPACES} namespaces, "
          f"kmock in a child process, Python {sys.version.split()[0]}")
    with Emulator() as emulator:
        results = asyncio.run(measure(emulator))
    text, ok = table(results)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Kernel micro-benchmarks: corofw against asyncio (stock loop) and trio.

Five workloads, each written as the same program in every framework:

``pingpong``  two tasks bounce a 1-byte message over a socketpair
``spawn``     spawn many tasks that finish at once, then join them all
``sleep``     many tasks each sleep a random (seeded) 0-1 s; how late do they wake?
``fanout``    one writer sends round-robin over 1,000 socketpairs, one reader task each
``idle``      memory per task parked in a socket read

Each (workload, implementation) runs in its own fresh subprocess, pinned to
one core with ``taskset -c 1``; the parent interleaves the implementations,
takes the median of the runs, prints Markdown tables and, after a full run,
rewrites the "Kernel" section of ``benchmarks/RESULTS.md``::

    python benchmarks/kernel_bench.py                 # full run, updates RESULTS.md
    python benchmarks/kernel_bench.py --quick         # smoke run: small counts, 1 run
    python benchmarks/kernel_bench.py --only pingpong

Only the workload itself is timed, inside the running loop; interpreter start,
imports and loop set-up are not. The garbage collector stays on, as in
production.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import math
import os
import platform
import random
import re
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

import corofw
from corofw import current_time, gather, read_wait, sleep, spawn
from corofw.net import Socket

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"

FULL = {"pingpong": 100_000, "spawn": 100_000, "sleep": 10_000, "fanout": 100_000,
        "idle": 10_000}
QUICK = {"pingpong": 10_000, "spawn": 10_000, "sleep": 1_000, "fanout": 10_000,
         "idle": 1_000}
FANOUT_PAIRS = 1_000
MESSAGE = b"m" * 16
SEED = 20240601
FD_RESERVE = 64  # stdio, epoll, wake-up sockets, ...
CPU = 1

perf = time.perf_counter


# -- helpers run inside the child ------------------------------------------


def run_corofw(coro: corofw.Coro[float]) -> float:
    """``corofw.run`` with its default blocked-loop watchdog, unless
    COROFW_BENCH_WATCHDOG=0 (to measure what the watchdog costs)."""
    off = os.environ.get("COROFW_BENCH_WATCHDOG") == "0"
    return corofw.run(coro, watchdog=None if off else 0.1)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def rss_bytes() -> int:
    """Resident set size after a full collection, from /proc/self/status."""
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def socketpairs(count: int) -> list[tuple[socket.socket, socket.socket]]:
    pairs = [socket.socketpair() for _ in range(count)]
    for a, b in pairs:
        a.setblocking(False)
        b.setblocking(False)
    return pairs


def idle_socketpairs(wanted: int) -> list[tuple[socket.socket, socket.socket]]:
    """Raise the soft fd limit to the hard one; make as many of the wanted
    socketpairs as fit under it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, (hard - FD_RESERVE) // 2)
    return socketpairs(wanted)


def run_asyncio(main: object) -> object:
    asyncio.set_event_loop_policy(None)  # the stock policy: never uvloop's
    return asyncio.run(main)  # type: ignore[arg-type]


def noop_corofw() -> corofw.Coro[None]:
    """A corofw task that finishes at once (a generator that never yields)."""
    yield from ()


async def noop_async() -> None:
    """An asyncio or trio task that finishes at once."""


# -- 1. ping-pong ------------------------------------------------------------


def pingpong_result(n: int, seconds: float) -> dict:
    return {"round_trips_per_s": n / seconds, "us_per_round_trip": seconds / n * 1e6}


def pingpong_corofw(n: int) -> dict:
    (a, b), = socketpairs(1)

    def server(s: Socket) -> corofw.Coro[None]:
        for _ in range(n):
            yield from s.recv(1)
            yield from s.send_all(b"x")

    def main() -> corofw.Coro[float]:
        ping, pong = Socket(a), Socket(b)
        start = perf()
        task = yield from spawn(server(pong))
        for _ in range(n):
            yield from ping.send_all(b"x")
            yield from ping.recv(1)
        yield from task.join()
        return perf() - start

    return pingpong_result(n, run_corofw(main()))


def pingpong_corofw_raw(n: int) -> dict:
    """The kernel alone: wait for readability first, then one recv."""
    (a, b), = socketpairs(1)
    fa, fb = a.fileno(), b.fileno()

    def server() -> corofw.Coro[None]:
        for _ in range(n):
            yield read_wait(fb)
            b.recv(1)
            b.send(b"x")

    def main() -> corofw.Coro[float]:
        start = perf()
        task = yield from spawn(server())
        for _ in range(n):
            a.send(b"x")
            yield read_wait(fa)
            a.recv(1)
        yield from task.join()
        return perf() - start

    return pingpong_result(n, run_corofw(main()))


def pingpong_asyncio(n: int) -> dict:
    (a, b), = socketpairs(1)

    async def server(loop: asyncio.AbstractEventLoop) -> None:
        for _ in range(n):
            await loop.sock_recv(b, 1)
            await loop.sock_sendall(b, b"x")

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = perf()
        task = asyncio.create_task(server(loop))
        for _ in range(n):
            await loop.sock_sendall(a, b"x")
            await loop.sock_recv(a, 1)
        await task
        return perf() - start

    return pingpong_result(n, run_asyncio(main()))


def pingpong_trio(n: int) -> dict:
    (a, b), = socketpairs(1)

    async def server(s: trio.socket.SocketType) -> None:
        for _ in range(n):
            await s.recv(1)
            await s.send(b"x")

    async def main() -> float:
        ping, pong = trio.socket.from_stdlib_socket(a), trio.socket.from_stdlib_socket(b)
        start = perf()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server, pong)
            for _ in range(n):
                await ping.send(b"x")
                await ping.recv(1)
        return perf() - start

    return pingpong_result(n, trio.run(main))


# -- 2. spawn and join -------------------------------------------------------


def spawn_corofw_join(n: int) -> dict:
    def main() -> corofw.Coro[float]:
        start = perf()
        tasks = []
        for _ in range(n):
            tasks.append((yield from spawn(noop_corofw())))
        for task in tasks:
            yield from task.join()
        return perf() - start

    return {"tasks_per_s": n / run_corofw(main())}


def spawn_corofw_gather(n: int) -> dict:
    def main() -> corofw.Coro[float]:
        start = perf()
        yield from gather(*[noop_corofw() for _ in range(n)])
        return perf() - start

    return {"tasks_per_s": n / run_corofw(main())}


def spawn_asyncio_gather(n: int) -> dict:
    async def main() -> float:
        start = perf()
        await asyncio.gather(*[noop_async() for _ in range(n)])
        return perf() - start

    return {"tasks_per_s": n / run_asyncio(main())}


def spawn_asyncio_create_task(n: int) -> dict:
    async def main() -> float:
        start = perf()
        tasks = [asyncio.create_task(noop_async()) for _ in range(n)]
        for task in tasks:
            await task
        return perf() - start

    return {"tasks_per_s": n / run_asyncio(main())}


def spawn_trio(n: int) -> dict:
    async def main() -> float:
        start = perf()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(noop_async)
        return perf() - start

    return {"tasks_per_s": n / trio.run(main)}


# -- 3. sleeping tasks ---------------------------------------------------------


def sleep_delays(n: int) -> list[float]:
    rng = random.Random(SEED)
    return [rng.random() for _ in range(n)]


def sleep_result(total: float, lateness: list[float]) -> dict:
    return {
        "total_s": total,
        "p99_late_ms": percentile(lateness, 99) * 1e3,
        "p50_late_ms": percentile(lateness, 50) * 1e3,
        "max_late_ms": max(lateness) * 1e3,
    }


def sleep_corofw(n: int) -> dict:
    lateness: list[float] = []

    def sleeper(delay: float) -> corofw.Coro[None]:
        start = yield from current_time()
        yield from sleep(delay)
        lateness.append((yield from current_time()) - start - delay)

    def main() -> corofw.Coro[float]:
        start = yield from current_time()
        yield from gather(*[sleeper(d) for d in sleep_delays(n)])
        return (yield from current_time()) - start

    return sleep_result(run_corofw(main()), lateness)


def sleep_asyncio(n: int) -> dict:
    lateness: list[float] = []

    async def sleeper(loop: asyncio.AbstractEventLoop, delay: float) -> None:
        start = loop.time()
        await asyncio.sleep(delay)
        lateness.append(loop.time() - start - delay)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*[sleeper(loop, d) for d in sleep_delays(n)])
        return loop.time() - start

    return sleep_result(run_asyncio(main()), lateness)


def sleep_trio(n: int) -> dict:
    lateness: list[float] = []

    async def sleeper(delay: float) -> None:
        start = trio.current_time()
        await trio.sleep(delay)
        lateness.append(trio.current_time() - start - delay)

    async def main() -> float:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for delay in sleep_delays(n):
                nursery.start_soon(sleeper, delay)
        return trio.current_time() - start

    return sleep_result(trio.run(main), lateness)


# -- 4. fan-out: one writer, 1,000 readers ------------------------------------
#
# The writer sends one message to each socket in turn and yields to the
# scheduler once per round (sleep(0)), so each reader is woken by the
# reactor about once per round instead of draining one full buffer at the end.


def fanout_result(n: int, seconds: float) -> dict:
    return {"messages_per_s": n / seconds}


def fanout_corofw(n: int) -> dict:
    pairs = socketpairs(FANOUT_PAIRS)
    per_reader = n // FANOUT_PAIRS * len(MESSAGE)

    def reader(s: Socket) -> corofw.Coro[None]:
        got = 0
        while got < per_reader:
            got += len((yield from s.recv(65536)))

    def main() -> corofw.Coro[float]:
        writers = [Socket(w) for w, _ in pairs]
        start = perf()
        readers = []
        for _, r in pairs:
            readers.append((yield from spawn(reader(Socket(r)))))
        for i in range(n):
            yield from writers[i % FANOUT_PAIRS].send_all(MESSAGE)
            if i % FANOUT_PAIRS == FANOUT_PAIRS - 1:
                yield from sleep(0)
        for task in readers:
            yield from task.join()
        return perf() - start

    return fanout_result(n, run_corofw(main()))


def fanout_asyncio(n: int) -> dict:
    pairs = socketpairs(FANOUT_PAIRS)
    per_reader = n // FANOUT_PAIRS * len(MESSAGE)

    async def reader(loop: asyncio.AbstractEventLoop, s: socket.socket) -> None:
        got = 0
        while got < per_reader:
            got += len(await loop.sock_recv(s, 65536))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = perf()
        readers = [asyncio.create_task(reader(loop, r)) for _, r in pairs]
        for i in range(n):
            await loop.sock_sendall(pairs[i % FANOUT_PAIRS][0], MESSAGE)
            if i % FANOUT_PAIRS == FANOUT_PAIRS - 1:
                await asyncio.sleep(0)
        for task in readers:
            await task
        return perf() - start

    return fanout_result(n, run_asyncio(main()))


def fanout_trio(n: int) -> dict:
    pairs = socketpairs(FANOUT_PAIRS)
    per_reader = n // FANOUT_PAIRS * len(MESSAGE)

    async def reader(s: trio.socket.SocketType) -> None:
        got = 0
        while got < per_reader:
            got += len(await s.recv(65536))

    async def main() -> float:
        wrap = trio.socket.from_stdlib_socket
        writers = [wrap(w) for w, _ in pairs]
        start = perf()
        async with trio.open_nursery() as nursery:
            for _, r in pairs:
                nursery.start_soon(reader, wrap(r))
            for i in range(n):
                await writers[i % FANOUT_PAIRS].send(MESSAGE)
                if i % FANOUT_PAIRS == FANOUT_PAIRS - 1:
                    await trio.sleep(0)
        return perf() - start

    return fanout_result(n, trio.run(main))


# -- 5. memory per idle task -------------------------------------------------
#
# The socketpairs (plain stdlib sockets, the same in every framework) exist
# before the first RSS reading; the delta is the framework's own cost: its
# socket wrapper, the task, the coroutine frames and the read registration.


def idle_result(tasks: int, delta: int) -> dict:
    return {"bytes_per_task": delta / tasks, "tasks": tasks}


def idle_corofw(n: int) -> dict:
    pairs = idle_socketpairs(n)

    def idle(s: Socket) -> corofw.Coro[None]:
        yield from s.recv(1)

    def main() -> corofw.Coro[int]:
        before = rss_bytes()
        tasks = []
        for a, _ in pairs:
            tasks.append((yield from spawn(idle(Socket(a)))))
        yield from sleep(0.2)
        delta = rss_bytes() - before
        for task in tasks:
            task.cancel()
        return delta

    return idle_result(len(pairs), run_corofw(main()))


def idle_asyncio(n: int) -> dict:
    pairs = idle_socketpairs(n)

    async def idle(loop: asyncio.AbstractEventLoop, s: socket.socket) -> None:
        await loop.sock_recv(s, 1)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        before = rss_bytes()
        tasks = [asyncio.create_task(idle(loop, a)) for a, _ in pairs]
        await asyncio.sleep(0.2)
        delta = rss_bytes() - before
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return delta

    return idle_result(len(pairs), run_asyncio(main()))


def idle_trio(n: int) -> dict:
    pairs = idle_socketpairs(n)

    async def idle(s: trio.socket.SocketType) -> None:
        await s.recv(1)

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            before = rss_bytes()
            for a, _ in pairs:
                nursery.start_soon(idle, trio.socket.from_stdlib_socket(a))
            await trio.sleep(0.2)
            delta = rss_bytes() - before
            nursery.cancel_scope.cancel()
        return delta

    return idle_result(len(pairs), trio.run(main))


# -- what to run and how to report it -----------------------------------------

WORKLOADS: dict[str, dict[str, Callable[[int], dict]]] = {
    "pingpong": {
        "corofw": pingpong_corofw,
        "corofw-raw": pingpong_corofw_raw,
        "asyncio": pingpong_asyncio,
        "trio": pingpong_trio,
    },
    "spawn": {
        "corofw-spawn-join": spawn_corofw_join,
        "corofw-gather": spawn_corofw_gather,
        "asyncio-gather": spawn_asyncio_gather,
        "asyncio-create-task": spawn_asyncio_create_task,
        "trio-nursery": spawn_trio,
    },
    "sleep": {"corofw": sleep_corofw, "asyncio": sleep_asyncio, "trio": sleep_trio},
    "fanout": {"corofw": fanout_corofw, "asyncio": fanout_asyncio, "trio": fanout_trio},
    "idle": {"corofw": idle_corofw, "asyncio": idle_asyncio, "trio": idle_trio},
}


@dataclass
class Row:
    """One line of the comparison table: a metric of three implementations."""

    label: str
    workload: str
    metric: str
    unit: str
    corofw: str = "corofw"
    asyncio: str = "asyncio"
    trio: str = "trio"


ROWS = [
    Row("ping-pong, `Socket` API", "pingpong", "round_trips_per_s", "round trips/s ↑"),
    Row("ping-pong, `Socket` API", "pingpong", "us_per_round_trip", "µs / round trip ↓"),
    Row("ping-pong, raw `read_wait`", "pingpong", "round_trips_per_s", "round trips/s ↑",
        corofw="corofw-raw"),
    Row("ping-pong, raw `read_wait`", "pingpong", "us_per_round_trip", "µs / round trip ↓",
        corofw="corofw-raw"),
    Row("spawn + join each", "spawn", "tasks_per_s", "tasks/s ↑", "corofw-spawn-join",
        "asyncio-create-task", "trio-nursery"),
    Row("gather", "spawn", "tasks_per_s", "tasks/s ↑", "corofw-gather", "asyncio-gather",
        "trio-nursery"),
    Row("sleepers", "sleep", "total_s", "total s ↓"),
    Row("sleepers", "sleep", "p50_late_ms", "p50 lateness ms ↓"),
    Row("sleepers", "sleep", "p99_late_ms", "p99 lateness ms ↓"),
    Row("sleepers", "sleep", "max_late_ms", "max lateness ms ↓"),
    Row("fan-out, 1,000 readers", "fanout", "messages_per_s", "messages/s ↑"),
    Row("idle tasks parked in recv", "idle", "bytes_per_task", "bytes / task ↓"),
]


@dataclass
class Target:
    """A goal from the issue: ``mine / other`` must be ``>=`` or ``<=`` a bound."""

    label: str
    workload: str
    metric: str
    mine: str
    other: str
    op: str
    bound: float


TARGETS = [
    Target("ping-pong (`Socket` API) ≥ 3× asyncio", "pingpong", "round_trips_per_s",
           "corofw", "asyncio", ">=", 3.0),
    Target("ping-pong (`Socket` API) ≥ 2.5× trio", "pingpong", "round_trips_per_s",
           "corofw", "trio", ">=", 2.5),
    Target("ping-pong (raw `read_wait`) ≥ 3× asyncio", "pingpong", "round_trips_per_s",
           "corofw-raw", "asyncio", ">=", 3.0),
    Target("ping-pong (raw `read_wait`) ≥ 2.5× trio", "pingpong", "round_trips_per_s",
           "corofw-raw", "trio", ">=", 2.5),
    Target("spawn + join ≥ 4.5× asyncio.gather", "spawn", "tasks_per_s",
           "corofw-spawn-join", "asyncio-gather", ">=", 4.5),
    Target("gather ≥ 3× asyncio.gather", "spawn", "tasks_per_s",
           "corofw-gather", "asyncio-gather", ">=", 3.0),
    Target("p99 timer lateness ≤ ⅓ of asyncio's", "sleep", "p99_late_ms",
           "corofw", "asyncio", "<=", 1 / 3),
    Target("memory per idle task ≤ 0.7× asyncio's", "idle", "bytes_per_task",
           "corofw", "asyncio", "<=", 0.7),
]

Results = dict[str, dict[str, list[dict]]]


def pin_prefix() -> tuple[list[str], str]:
    """The command prefix pinning a child to one core, and how it was done."""
    if not shutil.which("taskset"):
        return [], "unpinned (taskset not found)"
    cpus = sorted(os.sched_getaffinity(0))
    cpu = CPU if CPU in cpus else cpus[-1]
    return ["taskset", "-c", str(cpu)], f"pinned with `taskset -c {cpu}`"


def run_child(prefix: list[str], workload: str, impl: str, quick: bool) -> dict | None:
    cmd = [*prefix, sys.executable, str(Path(__file__).resolve()), "--child", workload, impl]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        print(f"  {workload}/{impl} failed (exit {proc.returncode}):\n{proc.stderr}",
              file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_all(names: list[str], runs: int, quick: bool, prefix: list[str]) -> Results:
    """Run every implementation of each workload ``runs`` times, interleaved so
    that a noisy moment on the machine does not hit one framework only."""
    results: Results = {name: {impl: [] for impl in WORKLOADS[name]} for name in names}
    for name in names:
        for run in range(runs):
            for impl in WORKLOADS[name]:
                started = time.monotonic()
                result = run_child(prefix, name, impl, quick)
                took = time.monotonic() - started
                print(f"  {name:<8} {impl:<20} run {run + 1}/{runs}  {took:5.1f} s  {result}",
                      file=sys.stderr)
                if result is not None:
                    results[name][impl].append(result)
    return results


def median(results: Results, workload: str, impl: str, metric: str) -> float | None:
    values = [r[metric] for r in results.get(workload, {}).get(impl, [])]
    return statistics.median(values) if values else None


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def ratio(mine: float | None, other: float | None) -> float | None:
    return None if mine is None or not other else mine / other


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def comparison_table(results: Results) -> str:
    lines = [
        "| workload | metric | corofw | asyncio | trio | corofw ÷ asyncio | corofw ÷ trio |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for row in ROWS:
        if row.workload not in results:
            continue
        mine, aio, tri = (median(results, row.workload, impl, row.metric)
                          for impl in (row.corofw, row.asyncio, row.trio))
        lines.append(
            f"| {row.label} | {row.unit} | {fmt(mine)} | {fmt(aio)} | {fmt(tri)} "
            f"| {fmt_ratio(ratio(mine, aio))} | {fmt_ratio(ratio(mine, tri))} |")
    return "\n".join(lines)


def targets_table(results: Results) -> str:
    lines = ["| target | corofw | other | ratio | result |", "|---|--:|--:|--:|---|"]
    for t in TARGETS:
        if t.workload not in results:
            continue
        mine = median(results, t.workload, t.mine, t.metric)
        other = median(results, t.workload, t.other, t.metric)
        r = ratio(mine, other)
        if r is None:
            verdict = "no data"
        else:
            ok = r >= t.bound if t.op == ">=" else r <= t.bound
            verdict = "**pass**" if ok else "**FAIL**"
        lines.append(f"| {t.label} | {fmt(mine)} | {fmt(other)} | {fmt_ratio(r)} | {verdict} |")
    return "\n".join(lines)


def runs_table(results: Results) -> str:
    """Every run, so the spread on a shared machine is visible."""
    lines = ["| workload | implementation | metric | median | runs |", "|---|---|---|--:|---|"]
    for name, impls in results.items():
        metrics = sorted({row.metric for row in ROWS if row.workload == name})
        for impl, runs in impls.items():
            for metric in metrics:
                values = [r[metric] for r in runs]
                lines.append(f"| {name} | {impl} | {metric} | "
                             f"{fmt(median(results, name, impl, metric))} | "
                             f"{', '.join(fmt(v) for v in values) or 'failed'} |")
    return "\n".join(lines)


def git_state() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "corofw")
    return f"`{rev}`" + (" plus uncommitted changes in `corofw/`" if dirty else "")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


NOTES = (
    "- Notes: p50 lateness shows the timer resolution (all three wait in `epoll_wait`, whose "
    "timeout is whole milliseconds, rounded up); with thousands of sleepers started together, p99 is "
    "dominated by how long starting them all takes, as sleepers due before then wake late. "
    "Idle memory: the stdlib socketpairs exist before the first RSS reading, so the delta is "
    "each framework's own cost (socket wrapper, task, coroutine frames, read registration)."
)


def report(results: Results, counts: dict[str, int], runs: int, pinning: str,
           load: tuple[tuple[float, ...], tuple[float, ...]], code_before: str) -> str:
    idle_tasks = [r["tasks"] for r in results.get("idle", {}).get("corofw", [])]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    before, after = (", ".join(f"{x:.2f}" for x in avg) for avg in load)
    idle = ", ".join(f"{n:,}" for n in sorted(set(idle_tasks))) or "—"
    code = git_state()
    if code != code_before:
        code = f"{code_before} when the run started and {code} when it ended"
    same = " (`make bench-kernel` runs the same)" if len(sys.argv) == 1 else ""
    lines = [
        f"- Command: `{shlex.join(sys.orig_argv)}` from the repository root{same}, {now}.",
        f"- Code: corofw at {code}.",
        f"- Machine: {os.cpu_count()}-core shared VM ({cpu_model()}), Linux "
        f"{platform.release()}, Python {platform.python_version()}, trio {trio.__version__}, "
        "asyncio with its stock selector event loop (no uvloop).",
        f"- Method: every run is a fresh subprocess {pinning}; median of {runs} run(s), "
        "implementations interleaved; only the workload is timed, inside the running loop.",
        f"- Load average (1/5/15 min) before / after: {before} / {after}. Other developers may "
        "have been running tests on this machine at the same time: treat differences under "
        "~10 % as noise.",
        f"- Counts: ping-pong {counts['pingpong']:,} round trips of 1 byte; spawn "
        f"{counts['spawn']:,} tasks; {counts['sleep']:,} sleepers of 0–1 s (seeded); fan-out "
        f"{counts['fanout']:,} messages of {len(MESSAGE)} bytes over {FANOUT_PAIRS:,} "
        f"socketpairs, the writer yielding once per round; idle memory with {idle} tasks "
        f"(as many as the hard `RLIMIT_NOFILE` allows, up to {counts['idle']:,}).",
        "- Reading: ↑ higher is better, ↓ lower is better; a ratio is corofw's value divided "
        "by the other's.",
        NOTES,
    ]
    return "\n".join(lines) + f"""

### Comparison

{comparison_table(results)}

### Targets

{targets_table(results)}

### Every run

{runs_table(results)}
"""


def write_section(body: str) -> None:
    """Replace the "## Kernel" section of RESULTS.md (or append it), leaving
    every other section alone."""
    section = "## Kernel\n\n" + body.strip() + "\n\n"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(r"^## Kernel\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small counts, one run, RESULTS.md untouched")
    parser.add_argument("--only", choices=list(WORKLOADS), action="append",
                        help="run only this workload (repeatable); RESULTS.md untouched")
    parser.add_argument("--runs", type=int, help="runs per implementation (default 3)")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL

    if args.child:
        workload, impl = args.child
        result = WORKLOADS[workload][impl](counts[workload])
        print(json.dumps(result))
        return

    runs = args.runs or (1 if args.quick else 3)
    names = args.only or list(WORKLOADS)
    prefix, pinning = pin_prefix()
    print(f"kernel benchmarks: {', '.join(names)}; {runs} run(s) each, {pinning}",
          file=sys.stderr)
    load_before, code_before = os.getloadavg(), git_state()
    results = run_all(names, runs, args.quick, prefix)
    body = report(results, counts, runs, pinning, (load_before, os.getloadavg()), code_before)
    print(body)
    if args.quick or args.only or args.runs:
        print("(partial, quick or non-default run: RESULTS.md not updated)", file=sys.stderr)
    else:
        write_section(body)
        print(f"updated the Kernel section of {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()

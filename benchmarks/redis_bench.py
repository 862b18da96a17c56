"""Redis GET throughput: corofw's client against redis-py's asyncio client.

64 concurrent tasks each GET a 100-byte value in a loop, through the
client's connection pool, for a fixed time. Each client runs in a fresh
process pinned to CPU 0 (``taskset``); redis-server (Debian's, started here
in a temporary directory with persistence off) is pinned to CPU 1. Both
clients parse replies with hiredis; redis-py runs on the stock asyncio
loop. The clients alternate within each round; the median round is shown::

    python benchmarks/redis_bench.py              # 3 rounds of 10 s, updates RESULTS.md
    python benchmarks/redis_bench.py --quick      # 1 round of 3 s, prints only

Only the measured window is counted: each worker first runs for a warm-up
second with every task going, then counts completed GETs for ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bench_util import (
    PYTHON,
    ROOT,
    free_port,
    git_revision,
    load_average,
    machine_line,
    median,
    now_utc,
    pinned,
    write_section,
)

CLIENT_CPU, SERVER_CPU = 0, 1
KEY = "bench:value"
VALUE = b"v" * 100
TASKS = 64
WARMUP = 1.0
CLIENTS = ("corofw", "redis-py asyncio")
TARGET = 1.5


# -- the workers (each in its own process, importing only its own client) ----------------

def corofw_worker(port: int, seconds: float) -> int:
    from corofw import gather, run, sleep
    from corofw.data.redis import Redis

    counted = [0]
    state = {"counting": False, "running": True}

    def task(r):
        while state["running"]:
            value = yield from r.get(KEY)
            if state["counting"]:
                counted[0] += 1
        assert value == VALUE

    def timer():
        yield from sleep(WARMUP)
        state["counting"] = True
        yield from sleep(seconds)
        state["counting"] = False
        state["running"] = False

    def main():
        with Redis(port=port, max_connections=TASKS) as r:
            yield from gather(timer(), *[task(r) for _ in range(TASKS)])

    run(main())
    return counted[0]


def redis_py_worker(port: int, seconds: float) -> int:
    import asyncio

    import redis.asyncio
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE, "redis-py should parse with hiredis for this comparison"
    counted = [0]
    state = {"counting": False, "running": True}

    async def task(r):
        while state["running"]:
            value = await r.get(KEY)
            if state["counting"]:
                counted[0] += 1
        assert value == VALUE

    async def timer():
        await asyncio.sleep(WARMUP)
        state["counting"] = True
        await asyncio.sleep(seconds)
        state["counting"] = False
        state["running"] = False

    async def main():
        r = redis.asyncio.Redis(host="127.0.0.1", port=port, max_connections=TASKS)
        try:
            await asyncio.gather(timer(), *[task(r) for _ in range(TASKS)])
        finally:
            await r.aclose()

    asyncio.run(main())
    return counted[0]


WORKERS = {"corofw": corofw_worker, "redis-py asyncio": redis_py_worker}


def worker_main(name: str, port: int, seconds: float) -> None:
    count = WORKERS[name](port, seconds)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"ops": count, "seconds": seconds,
                      "cpu": usage.ru_utime + usage.ru_stime,
                      "rss_mib": usage.ru_maxrss / 1024}))


# -- the parent ------------------------------------------------------------------------------

def start_redis(directory: Path, port: int) -> subprocess.Popen:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(directory), "--daemonize", "no",
               "--logfile", str(directory / "redis.log")]
    process = subprocess.Popen(pinned(SERVER_CPU, command), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_command(port, f"SET {KEY} {VALUE.decode()}") == b"+OK\r\n":
            return process
        time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start (make redis installs it)")


def redis_command(port: int, command: str) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(command.encode() + b"\r\n")
            return sock.recv(1024)
    except OSError:
        return b""


def run_worker(name: str, port: int, seconds: float) -> dict:
    command = pinned(CLIENT_CPU, [PYTHON, __file__, "--worker", name, "--port", str(port),
                                  "--seconds", str(seconds)])
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            timeout=seconds + 60)
    if result.returncode != 0:
        raise SystemExit(f"{name} worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s, prints only")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.port, args.seconds)
        return
    rounds, seconds = (1, 3.0) if args.quick else (args.rounds, args.seconds)
    load_before = load_average()
    runs: dict[str, list[dict]] = {name: [] for name in CLIENTS}
    with tempfile.TemporaryDirectory(prefix="corofw-redis-bench-") as directory:
        port = free_port()
        server = start_redis(Path(directory), port)
        try:
            for number in range(rounds):
                for name in CLIENTS:
                    result = run_worker(name, port, seconds)
                    runs[name].append(result)
                    print(f"round {number + 1}: {name}: {result['ops'] / seconds:,.0f} GET/s",
                          flush=True)
        finally:
            server.terminate()
            server.wait(timeout=10)
    report(runs, rounds, seconds, load_before, args.quick)


def report(runs: dict[str, list[dict]], rounds: int, seconds: float, load_before: str,
           quick: bool) -> None:
    rates = {name: median([r["ops"] / seconds for r in results])
             for name, results in runs.items()}
    ratio = rates["corofw"] / rates["redis-py asyncio"]
    rows = ["| client | GET/s | CPU s per run | peak RSS MiB | corofw ÷ client |",
            "|---|--:|--:|--:|--:|"]
    for name in CLIENTS:
        cpu = median([r["cpu"] for r in runs[name]])
        rss = median([r["rss_mib"] for r in runs[name]])
        versus = "—" if name == "corofw" else f"{rates['corofw'] / rates[name]:.2f}×"
        rows.append(f"| {name} | {rates[name]:,.0f} | {cpu:.1f} | {rss:.0f} | {versus} |")
    verdict = "**pass**" if ratio >= TARGET else "**fail**"
    body = "\n".join([
        f"- Command: `make bench-redis` (`.venv/bin/python benchmarks/redis_bench.py`), "
        f"{now_utc()}, corofw at `{git_revision()}`.",
        f"- Machine: {machine_line()}. Load average before / after: {load_before} / "
        f"{load_average()}.",
        f"- Method: {TASKS} concurrent tasks each GET a {len(VALUE)}-byte value in a loop "
        f"through the client's pool ({TASKS} connections at most) for {seconds:g} s after a "
        f"{WARMUP:g} s warm-up; each client in a fresh process pinned to CPU {CLIENT_CPU}, "
        f"redis-server {_redis_version()} pinned to CPU {SERVER_CPU}; both clients parse "
        f"with hiredis, redis-py on the stock asyncio loop; {rounds} round(s), clients "
        f"alternating, medians shown.",
        "",
        *rows,
        "",
        "| target | ratio | result |",
        "|---|--:|---|",
        f"| corofw ≥ {TARGET}× redis-py asyncio | {ratio:.2f}× | {verdict} |",
    ])
    print()
    print(body)
    if not quick:
        write_section("Redis GET", body)


def _redis_version() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return "(unknown version)"


if __name__ == "__main__":
    main()

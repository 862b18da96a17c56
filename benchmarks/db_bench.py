"""The TechEmpower database tests and database waits: corofw's PostgreSQL
client against sync psycopg in threads, aiohttp + asyncpg and uvicorn +
Starlette + asyncpg.

The benchmark starts its own throwaway PostgreSQL and Redis (as the tests
do: tests/pg_server.py, tests/redis_server.py), fills the TechEmpower
schema, then runs wrk on ``/db``, ``/queries?queries=20``, ``/fortunes`` and
``/updates?queries=20`` at 64 and 256 connections for each server. Every
server is one process pinned to CPU 0; wrk, PostgreSQL and Redis share CPU
1. Servers are interleaved within each round (each started afresh); the
table shows the median of the rounds::

    python benchmarks/db_bench.py                 # 3 rounds x 8 s, updates RESULTS.md
    python benchmarks/db_bench.py --quick         # 1 round x 3 s, prints only
    python benchmarks/db_bench.py --only corofw,aiohttp --tests /db --seconds 3 --no-waits

Then the waits: 100 concurrent requests whose handlers each run ``SELECT
pg_sleep(1)`` (all sent at once on 100 connections, timed until the last
response), and for corofw one request running ten ``pg_sleep(1)`` through
``gather``.
"""

from __future__ import annotations

import argparse
import selectors
import shutil
import socket
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from bench_util import (
    PYTHON,
    ROOT,
    Service,
    free_port,
    git_revision,
    load_average,
    machine_line,
    median,
    now_utc,
    pin_tree,
    proc_stats,
    run_queue_seconds,
    write_section,
    wrk,
)

sys.path.insert(0, str(ROOT))

from apps.tfb import create_schema  # noqa: E402
from corofw import run  # noqa: E402
from corofw.data import pg  # noqa: E402
from tests.pg_server import PgServer, find_bindir  # noqa: E402
from tests.redis_server import REDIS_SERVER, RedisServer  # noqa: E402

SERVER_CPU, LOAD_CPU = 0, 1
CONNECTIONS = (64, 256)
TESTS = ("/db", "/queries?queries=20", "/fortunes", "/updates?queries=20")
POOL_SIZE = 32  # connections per async server's pool in the throughput runs
WAIT_REQUESTS, WAIT_SECONDS, GATHERED = 100, 1.0, 10
CUT = "--no-access-log", "--log-level", "warning"
#: --only's short names, and the servers' names in the tables
SERVERS = {"corofw": "corofw", "threads": "corofw + threads", "aiohttp": "aiohttp + asyncpg",
           "starlette": "uvicorn + Starlette + asyncpg"}
#: (test, name of a peer, factor): corofw's req/s must be at least factor x the peer's
TARGETS = [
    ("/db", "aiohttp + asyncpg", 2.5), ("/db", "corofw + threads", 1.2),
    ("/fortunes", "aiohttp + asyncpg", 2.5), ("/fortunes", "corofw + threads", 1.2),
    ("/queries?queries=20", "aiohttp + asyncpg", 1.5),
    ("/updates?queries=20", "aiohttp + asyncpg", 1.5),
]


def command(name: str, port: int, waits: bool = False) -> list[str]:
    """How to start server ``name`` on ``port``; ``waits``: the variant with
    the ``/sleep`` routes (corofw's own app has none)."""
    corofw_app = "benchmarks.peers.corofw_waits:routes" if waits else "apps.tfb:routes"
    return {
        "corofw": [PYTHON, "-m", "corofw", "run", corofw_app, "--port", str(port), *CUT],
        "corofw + threads": [PYTHON, "-m", "corofw", "run",
                             "benchmarks.peers.corofw_threads:routes", "--port", str(port),
                             *CUT],
        "aiohttp + asyncpg": [PYTHON, "benchmarks/peers/aiohttp_tfb.py", str(port)],
        "uvicorn + Starlette + asyncpg": [
            PYTHON, "-m", "uvicorn", "benchmarks.peers.starlette_tfb:app", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", *CUT],
    }[name]


# -- the databases -------------------------------------------------------------------------

@contextmanager
def databases(cpu: int) -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL (filled with the TechEmpower schema) and Redis,
    pinned to ``cpu``; yields their URLs."""
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (make postgres installs it)")
    if REDIS_SERVER is None:
        raise SystemExit("redis-server is not installed (make redis installs it)")
    directory = Path(tempfile.mkdtemp(prefix="corofw-db-bench-"))
    server = PgServer(bindir, directory)
    redis = RedisServer(REDIS_SERVER, directory / "redis")
    try:
        server.init()
        server.start()
        pin_tree(int((server.data / "postmaster.pid").read_text().split()[0]), cpu)
        (directory / "redis").mkdir()
        redis.start()
        assert redis.process is not None
        pin_tree(redis.process.pid, cpu)
        run(fill(server.dsn))
        yield server.dsn, redis.url
    finally:
        try:
            redis.stop()
            server.stop()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def fill(dsn: str):
    yield from create_schema(dsn)
    conn = yield from pg.connect(dsn)
    with conn:
        yield from conn.execute("VACUUM ANALYZE world")
        yield from conn.execute("VACUUM ANALYZE fortune")


def start(name: str, port: int, dsn: str, redis_url: str, pool_size: int,
          waits: bool = False) -> Service:
    env = {"DATABASE_URL": dsn, "REDIS_URL": redis_url, "DATABASE_POOL_SIZE": str(pool_size)}
    return Service(name, command(name, port, waits), port, SERVER_CPU, env)


# -- throughput ------------------------------------------------------------------------------

Results = dict[tuple[str, str, int], list[dict]]


def throughput(names: list[str], tests: list[str], rounds: int, seconds: float, dsn: str,
               redis_url: str, pool_size: int) -> tuple[Results, dict[str, list[float]]]:
    results: Results = defaultdict(list)
    peak_rss: dict[str, list[float]] = defaultdict(list)
    for round_no in range(rounds):
        for name in names:
            port = free_port()
            with start(name, port, dsn, redis_url, pool_size) as service:
                base = f"http://127.0.0.1:{port}"
                for test in tests:
                    wrk(base + test, 64, 1, LOAD_CPU)  # warm up: pools, statements, caches
                for test in tests:
                    for conns in CONNECTIONS:
                        cpu_before, _ = proc_stats(service.pid)
                        queued_before = run_queue_seconds(service.pid)
                        result = wrk(base + test, conns, seconds, LOAD_CPU)
                        result["cpu"] = proc_stats(service.pid)[0] - cpu_before
                        result["queued"] = run_queue_seconds(service.pid) - queued_before
                        results[(name, test, conns)].append(result)
                        print(f"round {round_no + 1}: {name:29} {test:20} c={conns:<4}"
                              f"{result['rps']:9,.0f} req/s  p99 {result.get('p99', 0):7.2f} ms"
                              f"  cpu {result['cpu']:5.2f} s  queued {result['queued']:5.2f} s"
                              f"  errors {result['errors']:.0f}  non-2xx {result['non2xx']:.0f}",
                              flush=True)
                peak_rss[name].append(proc_stats(service.pid)[1] / 2**20)
    return results, peak_rss


def rate(results: Results, name: str, test: str, conns: int) -> float | None:
    runs = results.get((name, test, conns))
    return median([r["rps"] for r in runs]) if runs else None


def per_cpu_second(results: Results, name: str, test: str, conns: int) -> float | None:
    """Requests served per second of the server's CPU time (median of the
    rounds): throughput with the machine's other load taken out."""
    runs = results.get((name, test, conns))
    if not runs:
        return None
    return median([r["requests"] / r["cpu"] if r.get("cpu") else 0.0 for r in runs])


def table(names: list[str], tests: list[str], results: Results,
          peak_rss: dict[str, list[float]]) -> str:
    lines = ["| test | server | connections | req/s | p99 ms | server CPU s | waiting for "
             "CPU 0 s | req per CPU s | errors + non-2xx | corofw ÷ server (req/s) | "
             "corofw ÷ server (req per CPU s) |", "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for test in tests:
        for conns in CONNECTIONS:
            base = rate(results, "corofw", test, conns)
            base_cpu = per_cpu_second(results, "corofw", test, conns)
            for name in names:
                runs = results[(name, test, conns)]
                rps = median([r["rps"] for r in runs])
                p99 = median([r.get("p99", float("nan")) for r in runs])
                cpu = median([r["cpu"] for r in runs])
                queued = median([r["queued"] for r in runs])
                efficiency = per_cpu_second(results, name, test, conns) or 0.0
                bad = sum(r["errors"] + r["non2xx"] for r in runs)
                ratio = f"{base / rps:.2f}×" if base and rps and name != "corofw" else "—"
                ratio_cpu = (f"{base_cpu / efficiency:.2f}×" if base_cpu and efficiency
                             and name != "corofw" else "—")
                lines.append(f"| `{test}` | {name} | {conns} | {rps:,.0f} | {p99:.2f} | "
                             f"{cpu:.1f} | {queued:.1f} | {efficiency:,.0f} | {bad:.0f} | "
                             f"{ratio} | {ratio_cpu} |")
    lines += ["", "| server | peak RSS MiB (median of the rounds) |", "|---|--:|"]
    lines += [f"| {name} | {median(peak_rss[name]):.0f} |" for name in names]
    return "\n".join(lines)


def targets(results: Results) -> str:
    lines = ["| target (req/s) | connections | ratio | result | ratio in req per CPU s |",
             "|---|--:|--:|---|--:|"]
    for test, peer, factor in TARGETS:
        for conns in CONNECTIONS:
            mine, theirs = rate(results, "corofw", test, conns), rate(results, peer, test, conns)
            if not mine or not theirs:
                continue
            verdict = "**pass**" if mine / theirs >= factor else "**FAIL**"
            mine_cpu = per_cpu_second(results, "corofw", test, conns)
            theirs_cpu = per_cpu_second(results, peer, test, conns)
            cpu_ratio = f"{mine_cpu / theirs_cpu:.2f}×" if mine_cpu and theirs_cpu else "—"
            lines.append(f"| `{test}`: corofw ≥ {factor:g}× {peer} | {conns} | "
                         f"{mine / theirs:.2f}× | {verdict} | {cpu_ratio} |")
    return "\n".join(lines)


# -- waits ----------------------------------------------------------------------------------

def burst(port: int, path: str, count: int, timeout: float = 120.0) -> tuple[float, int]:
    """Open ``count`` connections, send one GET on each at once, and return
    (seconds until the last full response, how many answered 200)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytearray] = {}
    try:
        started = time.monotonic()
        for sock in sockets:
            sock.sendall(request)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            received[sock] = bytearray()
        pending = count
        while pending:
            left = started + timeout - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                sock = key.fileobj
                data = sock.recv(65536)  # type: ignore[union-attr]
                if data:
                    received[sock] += data  # type: ignore[index]
                else:
                    selector.unregister(sock)
                    pending -= 1
        elapsed = time.monotonic() - started
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
    return elapsed, sum(1 for data in received.values() if data.startswith(b"HTTP/1.1 200"))


def waits(names: list[str], dsn: str, redis_url: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in names:
        port = free_port()
        with start(name, port, dsn, redis_url, WAIT_REQUESTS, waits=True) as service:
            burst(port, "/sleep?seconds=0.2", WAIT_REQUESTS)  # warm up: open the pool
            cpu_before, _ = proc_stats(service.pid)
            elapsed, ok = burst(port, f"/sleep?seconds={WAIT_SECONDS:g}", WAIT_REQUESTS)
            result = {"elapsed": elapsed, "ok": ok,
                      "cpu": proc_stats(service.pid)[0] - cpu_before}
            if name == "corofw":
                gathered, gathered_ok = burst(
                    port, f"/sleep-gather?seconds={WAIT_SECONDS:g}&count={GATHERED}", 1)
                result.update(gathered=gathered, gathered_ok=gathered_ok)
            out[name] = result
            print(f"waits: {name:29} {WAIT_REQUESTS} x pg_sleep({WAIT_SECONDS:g}) at once: "
                  f"{elapsed:.2f} s, {ok} answered 200, server CPU {result['cpu']:.2f} s"
                  + (f"; ten through gather in one request: {result['gathered']:.2f} s"
                     if "gathered" in result else ""), flush=True)
    return out


def waits_table(names: list[str], found: dict[str, dict]) -> str:
    lines = [f"| server | {WAIT_REQUESTS} requests × `pg_sleep({WAIT_SECONDS:g})` at once: "
             f"all answered after (s) | answered 200 | server CPU s |", "|---|--:|--:|--:|"]
    for name in names:
        result = found[name]
        lines.append(f"| {name} | {result['elapsed']:.2f} | {result['ok']} | "
                     f"{result['cpu']:.2f} |")
    if "gathered" in found.get("corofw", {}):
        lines += ["", f"corofw, one request running {GATHERED} × `pg_sleep({WAIT_SECONDS:g})` "
                  f"through `gather`: **{found['corofw']['gathered']:.2f} s**."]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round x 3 s, prints only")
    parser.add_argument("--only", default="", help=f"comma-separated, among "
                        f"{','.join(SERVERS)}; prints only")
    parser.add_argument("--tests", default="", help="comma-separated paths; prints only")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE)
    parser.add_argument("--no-waits", action="store_true")
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args()
    names = [SERVERS[key] for key in (args.only.split(",") if args.only else SERVERS)]
    tests = args.tests.split(",") if args.tests else list(TESTS)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    partial = bool(args.quick or args.only or args.tests or args.no_waits
                   or args.no_throughput)
    before = load_average()
    started = time.monotonic()
    with databases(LOAD_CPU) as (dsn, redis_url):
        report = ""
        if not args.no_throughput:
            results, peak_rss = throughput(names, tests, rounds, seconds, dsn, redis_url,
                                           args.pool_size)
            report = table(names, tests, results, peak_rss) + "\n\n" + targets(results)
        if not args.no_waits:
            report += "\n\n" + waits_table(names, waits(names, dsn, redis_url))
    print("\n" + report.strip())
    print(f"\n({(time.monotonic() - started) / 60:.1f} min)")
    if partial:
        return
    write_section("PostgreSQL: TechEmpower tests and waits", f"""
- Command: `make bench-db` (`.venv/bin/python benchmarks/db_bench.py`), {now_utc()}, corofw at `{git_revision()}`; the whole run took {(time.monotonic() - started) / 60:.0f} min.
- Machine: {machine_line()}. Load average before / after: {before} / {load_average()}.
- Method: a throwaway PostgreSQL {_pg_version()} (fsync off, as in the tests) and Redis, pinned to CPU {LOAD_CPU} with wrk; the TechEmpower schema (10,000 `world` rows, 12 fortunes). Each server is one process pinned to CPU {SERVER_CPU} (`taskset`), started afresh in each of {rounds} rounds (servers interleaved), warmed for 1 s per test at 64 connections, then `wrk -t1 -cN -d{seconds:g}s --latency` per cell; medians of the rounds. Server CPU s is the server's CPU time during the cell's {seconds:g} s (from /proc); peak RSS is its high-water mark after all cells.
- Servers: **corofw** serves `apps.tfb:routes` (`corofw run`, access log off; a pool of up to {args.pool_size} connections; `/queries` sends its 20 SELECTs in one pipeline, `/updates` its SELECTs in one pipeline and its UPDATEs in another); **corofw + threads** is the same framework with sync psycopg {_version('psycopg')} through `run_in_thread` (the kernel's default pool of min(32, cores + 4) = 6 threads, one connection each; `benchmarks/peers/corofw_threads.py`); **aiohttp + asyncpg** (aiohttp {_version('aiohttp')} on the stock asyncio loop, `benchmarks/peers/aiohttp_tfb.py`) and **uvicorn + Starlette + asyncpg** (uvicorn {_version('uvicorn')} with uvloop + httptools, Starlette {_version('starlette')}, `benchmarks/peers/starlette_tfb.py`) each use an asyncpg {_version('asyncpg')} pool of {args.pool_size} connections opened at start, and run the same queries one by one (asyncpg prepares and caches them; `/updates` writes with `executemany`).
- Waits: each server started with a pool of {WAIT_REQUESTS} connections (the thread version keeps its 6 threads, what a user gets by default), warmed by one burst of {WAIT_REQUESTS} × `pg_sleep(0.2)`; then {WAIT_REQUESTS} requests sent at once on {WAIT_REQUESTS} connections, each running `SELECT pg_sleep({WAIT_SECONDS:g})`, timed until the last response; one round.

{report.strip()}
""")


def _version(package: str) -> str:
    return version(package)


def _pg_version() -> str:
    bindir = find_bindir()
    return bindir.parent.name if bindir is not None else "?"


if __name__ == "__main__":
    main()

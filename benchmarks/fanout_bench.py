"""Fan-out under load: each request makes ten 1-second backend calls.

The same fan-out app runs on corofw (``apps.fanout``), on trio (hypercorn's
trio worker + httpx.AsyncClient) and on aiohttp (server + ClientSession),
one process pinned to CPU 0, against one corofw backend (``apps.backend``,
1.0 s per call) on CPU 1, where wrk also runs. wrk holds 1, 100 or 1,000
keep-alive connections, so that many fan-outs (10x as many backend calls)
are in flight at once::

    python benchmarks/fanout_bench.py                 # 3 rounds, updates RESULTS.md
    python benchmarks/fanout_bench.py --quick         # 1 round, short runs, prints only
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from bench_util import (
    PYTHON,
    Service,
    free_port,
    git_revision,
    load_average,
    machine_line,
    median,
    now_utc,
    proc_stats,
    write_section,
    wrk,
)

APP_CPU, OTHER_CPU = 0, 1
LEVELS = (1, 100, 1000)
# wrk opens all its connections at once: at 1,000 the first fan-outs (and their
# 10,000 backend calls) arrive in phase; 30 s keeps that wave a few percent of a run.
SECONDS = {1: 12.0, 100: 12.0, 1000: 30.0}


def commands(port: int) -> dict[str, list[str]]:
    return {
        "corofw": [PYTHON, "-m", "corofw", "run", "apps.fanout:routes", "--port", str(port),
                   "--no-access-log", "--log-level", "warning", "--backlog", "4096"],
        "trio + httpx": [PYTHON, "-m", "hypercorn", "--worker-class", "trio", "--backlog",
                         "4096", "--bind", f"127.0.0.1:{port}",
                         "benchmarks.peers.trio_fanout:app"],
        "aiohttp": [PYTHON, "benchmarks/peers/aiohttp_fanout.py", str(port)],
    }


def run(names: list[str], rounds: int,
        seconds: dict[int, float]) -> dict[tuple[str, int], list[dict]]:
    """Each app gets a backend of its own on a loopback address of its own:
    the 10,000 connections a previous app closed linger in TIME_WAIT for a
    minute, and would otherwise make the next app's connects to the same
    address search a nearly exhausted ephemeral port range."""
    results: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for round_no in range(rounds):
        for index, name in enumerate(names):
            backend_host = f"127.0.{round_no + 1}.{index + 1}"
            backend_port = free_port()
            backend_cmd = [PYTHON, "-m", "corofw", "run", "apps.backend:routes", "--host",
                           backend_host, "--port", str(backend_port), "--no-access-log",
                           "--log-level", "warning", "--backlog", "4096",
                           "--max-connections", "19000", "--keep-alive-timeout", "60"]
            env = {"BACKEND_URL": f"http://{backend_host}:{backend_port}",
                   "BACKEND_DELAY": "1.0"}
            port = free_port()
            with Service("backend", backend_cmd, backend_port, OTHER_CPU, env,
                         host=backend_host), \
                    Service(name, commands(port)[name], port, APP_CPU, env) as app:
                url = f"http://127.0.0.1:{port}/fanout"
                for conns in LEVELS:
                    warm = 2 if conns == 1 else (3 if conns < 1000 else 8)
                    wrk(url, conns, warm, OTHER_CPU, timeout=30)  # open the pools' connections
                    if conns > 1:
                        time.sleep(3)  # let the fan-outs the warm-up left behind finish
                    cpu_before, _ = proc_stats(app.pid)
                    result = wrk(url, conns, seconds[conns], OTHER_CPU, timeout=30)
                    cpu_after, peak = proc_stats(app.pid)
                    result["cpu"] = cpu_after - cpu_before
                    result["rss"] = peak
                    results[(name, conns)].append(result)
                    print(f"round {round_no + 1}: {name:13} c={conns:<5} "
                          f"{result['rps']:8,.1f} req/s  p50 {result.get('p50', 0):8.1f} ms"
                          f"  p99 {result.get('p99', 0):8.1f} ms  errors "
                          f"{result['errors'] + result['non2xx']:.0f}  cpu "
                          f"{result['cpu']:.1f} s  peak RSS {peak / 2**20:.0f} MiB",
                          flush=True)
    return results


def table(names: list[str], results: dict[tuple[str, int], list[dict]],
          seconds: dict[int, float]) -> str:
    lines = ["| app | concurrent fan-outs | run s | req/s | p50 ms | p99 ms | errors | "
             "CPU s per run | peak RSS MiB | corofw ÷ app (req/s) |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for conns in LEVELS:
        base = median([r["rps"] for r in results[("corofw", conns)]]) \
            if ("corofw", conns) in results else None
        for name in names:
            runs = results[(name, conns)]

            def med(key: str, runs: list[dict] = runs) -> float:
                return median([r.get(key, float("nan")) for r in runs])

            errors = sum(r["errors"] + r["non2xx"] for r in runs)
            rps = med("rps")
            if not rps:
                lines.append(f"| {name} | {conns:,} | {seconds[conns]:g} "
                             f"| 0 (no request finished within a run) "
                             f"| — | — | {errors:.0f} | {med('cpu'):.1f} | "
                             f"{med('rss') / 2**20:.0f} | — |")
                continue
            ratio = f"{base / rps:.2f}×" if base and name != "corofw" and rps else "—"
            lines.append(f"| {name} | {conns:,} | {seconds[conns]:g} | {rps:,.1f} | "
                         f"{med('p50'):,.1f} | "
                         f"{med('p99'):,.1f} | {errors:.0f} | {med('cpu'):.1f} | "
                         f"{med('rss') / 2**20:.0f} | {ratio} |")
    return "\n".join(lines)


def targets(results: dict[tuple[str, int], list[dict]]) -> str:
    lines = ["| target | measured | result |", "|---|--:|---|"]

    def med(name: str, conns: int, key: str) -> float:
        return median([r.get(key, float("nan")) for r in results.get((name, conns), [])] or [0])

    if ("corofw", 1) in results:
        p50 = med("corofw", 1, "p50")
        lines.append(f"| concurrency 1: latency within 20 ms of the 1.0 s floor (p50) | "
                     f"{p50:.1f} ms | {'**pass**' if p50 <= 1020 else '**FAIL**'} |")
    if ("corofw", 1000) in results:
        errors = sum(r["errors"] + r["non2xx"] for r in results[("corofw", 1000)])
        p99 = med("corofw", 1000, "p99")
        lines.append(f"| concurrency 1,000: zero errors | {errors:.0f} | "
                     f"{'**pass**' if errors == 0 else '**FAIL**'} |")
        lines.append(f"| concurrency 1,000: p99 ≤ 1.5 s | {p99:,.0f} ms | "
                     f"{'**pass**' if p99 <= 1500 else '**FAIL**'} |")
        if ("aiohttp", 1000) in results:
            ratio = med("corofw", 1000, "rps") / med("aiohttp", 1000, "rps")
            lines.append(f"| concurrency 1,000: ≥ 3× aiohttp's req/s | {ratio:.2f}× | "
                         f"{'**pass**' if ratio >= 3 else '**FAIL**'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    names = list(commands(0))
    if args.only:
        names = [n for n in names if n.split()[0] in args.only.split(",")]
    rounds = args.rounds or (1 if args.quick else 3)
    if args.seconds or args.quick:
        seconds = dict.fromkeys(LEVELS, args.seconds or 5.0)
    else:
        seconds = SECONDS
    before = load_average()
    results = run(names, rounds, seconds)
    report = table(names, results, seconds)
    print("\n" + report + "\n\n" + targets(results))
    if args.quick or args.only:
        return
    write_section("Fan-out under load", f"""
- Command: `make bench-fanout` (`.venv/bin/python benchmarks/fanout_bench.py`), {now_utc()}, corofw at `{git_revision()}`.
- Machine: {machine_line()}. Load average before / after: {before} / {load_average()}.
- Method: the fan-out app (one process) pinned to CPU {APP_CPU}; a fresh corofw backend (1.0 s per call, on a loopback address of its own) and `wrk -t1 -cN` pinned to CPU {OTHER_CPU} for 12 s at 1 and 100 connections and 30 s at 1,000 (wrk opens its connections all at once, which puts the first 1,000 fan-outs, and their 10,000 backend calls, in phase; over 30 s that start-up wave is a few percent of the requests); each level warmed first (2-8 s: at 1,000 the pools open 10,000 connections), then 3 s for the warm-up's requests to drain; {rounds} round(s), apps interleaved, medians shown (errors summed). N concurrent fan-outs mean 10·N backend calls in flight. CPU seconds and peak RSS are the fan-out process's own (from /proc).

{report}

{targets(results)}
""")


if __name__ == "__main__":
    main()

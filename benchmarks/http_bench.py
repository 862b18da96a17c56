"""Hello-world throughput: corofw against aiohttp, uvicorn and a trio server.

Every server answers ``GET /`` with ``Hello, World!`` (text/plain) from one
process pinned to CPU 0; wrk runs on CPU 1 with keep-alive connections.
Servers are interleaved within each round; the table shows the median of
the rounds::

    python benchmarks/http_bench.py                  # 3 rounds x 8 s, updates RESULTS.md
    python benchmarks/http_bench.py --quick          # 1 round x 3 s, prints only
    python benchmarks/http_bench.py --only corofw,aiohttp
"""

from __future__ import annotations

import argparse
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
    write_section,
    wrk,
)

SERVER_CPU, LOAD_CPU = 0, 1
CONNECTIONS = (64, 256)


def commands(port: int) -> dict[str, list[str]]:
    return {
        "corofw": [PYTHON, "-m", "corofw", "run", "apps.hello:routes", "--port", str(port),
                   "--no-access-log", "--log-level", "warning"],
        "aiohttp": [PYTHON, "benchmarks/peers/aiohttp_hello.py", str(port)],
        "uvicorn": [PYTHON, "-m", "uvicorn", "benchmarks.peers.asgi_hello:app",
                    "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                    "--no-access-log", "--log-level", "warning"],
        "trio + h11": [PYTHON, "benchmarks/peers/trio_h11.py", "hello", str(port)],
        "trio (hypercorn)": [PYTHON, "-m", "hypercorn", "--worker-class", "trio",
                             "--bind", f"127.0.0.1:{port}", "benchmarks.peers.asgi_hello:app"],
    }


def run(names: list[str], rounds: int, seconds: float) -> dict[tuple[str, int], list[dict]]:
    results: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for round_no in range(rounds):
        for name in names:
            port = free_port()
            with Service(name, commands(port)[name], port, SERVER_CPU):
                url = f"http://127.0.0.1:{port}/"
                wrk(url, 16, 1, LOAD_CPU)  # warm up
                for conns in CONNECTIONS:
                    result = wrk(url, conns, seconds, LOAD_CPU)
                    results[(name, conns)].append(result)
                    print(f"round {round_no + 1}: {name:17} c={conns:<4} "
                          f"{result['rps']:9,.0f} req/s  p99 {result.get('p99', 0):7.2f} ms  "
                          f"errors {result['errors']:.0f}", flush=True)
    return results


def table(names: list[str], results: dict[tuple[str, int], list[dict]]) -> str:
    lines = ["| server | connections | req/s | p99 latency (ms) | corofw ÷ server |",
             "|---|--:|--:|--:|--:|"]
    for conns in CONNECTIONS:
        base = median([r["rps"] for r in results[("corofw", conns)]]) \
            if ("corofw", conns) in results else None
        for name in names:
            runs = results[(name, conns)]
            rps = median([r["rps"] for r in runs])
            p99 = median([r.get("p99", float("nan")) for r in runs])
            ratio = f"{base / rps:.2f}×" if base and name != "corofw" else "—"
            lines.append(f"| {name} | {conns} | {rps:,.0f} | {p99:.2f} | {ratio} |")
    return "\n".join(lines)


def targets(results: dict[tuple[str, int], list[dict]]) -> str:
    wanted = [("aiohttp", 2.0), ("uvicorn", 1.5), ("trio + h11", 5.0), ("trio (hypercorn)", 5.0)]
    lines = ["| target | connections | ratio | result |", "|---|--:|--:|---|"]
    for conns in CONNECTIONS:
        if ("corofw", conns) not in results:
            continue
        base = median([r["rps"] for r in results[("corofw", conns)]])
        for name, factor in wanted:
            if (name, conns) not in results:
                continue
            ratio = base / median([r["rps"] for r in results[(name, conns)]])
            verdict = "**pass**" if ratio >= factor else "**FAIL**"
            lines.append(f"| corofw ≥ {factor:g}× {name} | {conns} | {ratio:.2f}× | {verdict} |")
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
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    before = load_average()
    results = run(names, rounds, seconds)
    report = table(names, results)
    print("\n" + report + "\n\n" + targets(results))
    if args.quick or args.only:
        return
    write_section("HTTP hello world", f"""
- Command: `make bench-http` (`.venv/bin/python benchmarks/http_bench.py`), {now_utc()}, corofw at `{git_revision()}`.
- Machine: {machine_line()}. Load average before / after: {before} / {load_average()}.
- Method: each server is one process pinned to CPU {SERVER_CPU} (`taskset`); `wrk -t1 -cN -d{seconds:g}s --latency` pinned to CPU {LOAD_CPU}; keep-alive; servers interleaved in each of {rounds} rounds; median of the rounds. Peers: aiohttp (`web.run_app`, access log off), uvicorn with uvloop + httptools serving a raw ASGI app, a trio + h11 server (`benchmarks/peers/trio_h11.py`, one task per connection) and hypercorn's trio worker serving the same ASGI app; corofw serves `apps.hello:routes` through its router with `--no-access-log`.

{report}

{targets(results)}
""")


if __name__ == "__main__":
    main()

"""Hello-world throughput: corofw against aiohttp, uvicorn and a trio server,
and against the ceiling for one pure-Python process (a bare epoll loop that
answers every request head with a canned response).

Every server answers ``GET /`` with ``Hello, World!`` (text/plain) from one
process pinned to CPU 0; wrk runs on CPU 1 with keep-alive connections.
Servers are interleaved within each round; the table shows the median of
the rounds. corofw runs twice: with ``--no-access-log``, and with its default
access log written to a file (stderr, at log level info), to show what the
log costs; the lines written are counted against the requests served::

    python benchmarks/http_bench.py                  # 3 rounds x 8 s, updates RESULTS.md
    python benchmarks/http_bench.py --quick          # 1 round x 3 s, prints only
    python benchmarks/http_bench.py --only corofw    # both corofw runs; updates the
                                                     # access-log section of RESULTS.md
    python benchmarks/http_bench.py --only corofw,aiohttp
"""

from __future__ import annotations

import argparse
import os
import tempfile
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

SERVER_CPU, LOAD_CPU = 0, 1
CONNECTIONS = (64, 256)
LOGGED = "corofw + access log"
ACCESS_LOG_FILE = os.path.join(tempfile.gettempdir(), "corofw-bench-access.log")
#: the logged run may cost at most this fraction of the unlogged one's throughput
LOG_COST_TARGET = 0.10
#: a bare epoll loop answering every head with a canned response: the ceiling
CEILING = "epoll ceiling"
#: corofw's share of the ceiling's throughput, at least
CEILING_TARGET = 0.8


def commands(port: int) -> dict[str, list[str]]:
    return {
        "corofw": [PYTHON, "-m", "corofw", "run", "apps.hello:routes", "--port", str(port),
                   "--no-access-log", "--log-level", "warning"],
        # stderr (the logging handler basicConfig sets up) appended to a file
        LOGGED: ["sh", "-c", 'exec "$@" 2>>"$0"', ACCESS_LOG_FILE,
                 PYTHON, "-m", "corofw", "run", "apps.hello:routes", "--port", str(port),
                 "--log-level", "info"],
        "aiohttp": [PYTHON, "benchmarks/peers/aiohttp_hello.py", str(port)],
        "uvicorn": [PYTHON, "-m", "uvicorn", "benchmarks.peers.asgi_hello:app",
                    "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                    "--no-access-log", "--log-level", "warning"],
        "trio + h11": [PYTHON, "benchmarks/peers/trio_h11.py", "hello", str(port)],
        "trio (hypercorn)": [PYTHON, "-m", "hypercorn", "--worker-class", "trio",
                             "--bind", f"127.0.0.1:{port}", "benchmarks.peers.asgi_hello:app"],
        CEILING: [PYTHON, "benchmarks/peers/epoll_ceiling.py", str(port)],
    }


def run(names: list[str], rounds: int, seconds: float) -> dict[tuple[str, int], list[dict]]:
    """wrk against each server in turn, ``rounds`` times; each result also
    has the server's CPU time per request (``cpu_us``), which a busy
    machine disturbs less than req/s."""
    results: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for round_no in range(rounds):
        for name in names:
            port = free_port()
            if name == LOGGED:
                open(ACCESS_LOG_FILE, "w").close()
            served = 0.0
            with Service(name, commands(port)[name], port, SERVER_CPU) as service:
                url = f"http://127.0.0.1:{port}/"
                served += wrk(url, 16, 1, LOAD_CPU).get("requests", 0.0)  # warm up
                for conns in CONNECTIONS:
                    cpu_before = proc_stats(service.pid)[0]
                    result = wrk(url, conns, seconds, LOAD_CPU)
                    result["cpu_us"] = (proc_stats(service.pid)[0] - cpu_before) \
                        / max(result.get("requests", 0.0), 1.0) * 1e6
                    served += result.get("requests", 0.0)
                    results[(name, conns)].append(result)
                    print(f"round {round_no + 1}: {name:19} c={conns:<4} "
                          f"{result['rps']:9,.0f} req/s  p99 {result.get('p99', 0):7.2f} ms  "
                          f"CPU {result['cpu_us']:5.1f} us/req  "
                          f"errors {result['errors']:.0f}", flush=True)
            if name == LOGGED:
                results[(LOGGED, 0)].append(check_log(served))
    return results


def check_log(served: float) -> dict:
    """Count the access log lines the logged run wrote (after its graceful
    stop) against the requests wrk saw answered; remove the file."""
    with open(ACCESS_LOG_FILE, encoding="utf-8", errors="replace") as file:
        lines = sum(1 for line in file if " corofw.access: " in line)
    os.remove(ACCESS_LOG_FILE)
    print(f"access log: {lines:,} lines for {served:,.0f} requests wrk saw answered",
          flush=True)
    if lines < served:
        raise RuntimeError(f"access log lost lines: {lines} lines, {served:.0f} requests")
    return {"lines": lines, "served": served}


def table(names: list[str], results: dict[tuple[str, int], list[dict]]) -> str:
    lines = ["| server | connections | req/s | p99 latency (ms) | corofw ÷ server |",
             "|---|--:|--:|--:|--:|"]
    names = [name for name in names if name != LOGGED]
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


def log_cost(results: dict[tuple[str, int], list[dict]]) -> str:
    """The logged corofw run beside the unlogged one: median req/s and
    server CPU per request of each, their ratio, and the target's verdict."""
    lines = ["| connections | req/s, no access log | req/s, access log | logged ÷ unlogged "
             "| CPU µs/request, no log / log | result |", "|--:|--:|--:|--:|--:|---|"]
    for conns in CONNECTIONS:
        if ("corofw", conns) not in results or (LOGGED, conns) not in results:
            continue
        plain = median([r["rps"] for r in results[("corofw", conns)]])
        logged = median([r["rps"] for r in results[(LOGGED, conns)]])
        cpu_plain = median([r["cpu_us"] for r in results[("corofw", conns)]])
        cpu_logged = median([r["cpu_us"] for r in results[(LOGGED, conns)]])
        ratio = logged / plain
        verdict = "**pass**" if ratio >= 1 - LOG_COST_TARGET else "**FAIL**"
        lines.append(f"| {conns} | {plain:,.0f} | {logged:,.0f} | {ratio:.3f} "
                     f"| {cpu_plain:.1f} / {cpu_logged:.1f} | {verdict} |")
    checks = results.get((LOGGED, 0), [])
    if checks:
        lines.append("")
        lines.append("Lines written / requests wrk saw answered, per round: " + ", ".join(
            f"{c['lines']:,} / {c['served']:,.0f}" for c in checks) + ".")
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
        if (CEILING, conns) in results:
            ratio = base / median([r["rps"] for r in results[(CEILING, conns)]])
            verdict = "**pass**" if ratio >= CEILING_TARGET else "**FAIL**"
            lines.append(f"| corofw ≥ {CEILING_TARGET:g}× the {CEILING} | {conns} "
                         f"| {ratio:.2f}× | {verdict} |")
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
    print("\n" + report + "\n\n" + targets(results) + "\n\n" + log_cost(results))
    if args.quick:
        return
    if "corofw" in names and LOGGED in names:
        write_section("HTTP hello world: the access log's cost", f"""
- Command: `.venv/bin/python benchmarks/http_bench.py{' --only ' + args.only if args.only else ''}{f' --rounds {rounds}' if args.rounds else ''}{f' --seconds {seconds:g}' if args.seconds else ''}`, {now_utc()}, corofw at `{git_revision()}`.
- Machine: {machine_line()}. Load average before / after: {before} / {load_average()}.
- Method: as in the "HTTP hello world" section: `apps.hello:routes` in one process pinned to CPU {SERVER_CPU}, `wrk -t1 -cN -d{seconds:g}s` pinned to CPU {LOAD_CPU}, the two runs interleaved in each of {rounds} rounds, medians. Unlogged: `--no-access-log --log-level warning`. Logged: the defaults (text format, request ids made and echoed) with `--log-level info`, the CLI's `logging.basicConfig` stream handler on stderr appended to a file. CPU µs/request is the server process's user + system time over the requests wrk counted (less disturbed than req/s by other work on the machine). Target: the log costs at most {LOG_COST_TARGET:.0%} of the throughput (logged ÷ unlogged ≥ {1 - LOG_COST_TARGET:.2f}).

{log_cost(results)}
""")
    if args.only:
        return
    write_section("HTTP hello world", f"""
- Command: `make bench-http` (`.venv/bin/python benchmarks/http_bench.py`), {now_utc()}, corofw at `{git_revision()}`.
- Machine: {machine_line()}. Load average before / after: {before} / {load_average()}.
- Method: each server is one process pinned to CPU {SERVER_CPU} (`taskset`); `wrk -t1 -cN -d{seconds:g}s --latency` pinned to CPU {LOAD_CPU}; keep-alive; servers interleaved in each of {rounds} rounds; median of the rounds. Peers: aiohttp (`web.run_app`, access log off), uvicorn with uvloop + httptools serving a raw ASGI app, a trio + h11 server (`benchmarks/peers/trio_h11.py`, one task per connection) and hypercorn's trio worker serving the same ASGI app; corofw serves `apps.hello:routes` through its router with `--no-access-log`. The {CEILING} (`benchmarks/peers/epoll_ceiling.py`) is the ceiling for one pure-Python process: an epoll loop that answers each request head it sees with a canned response, parsing nothing.

{report}

{targets(results)}
""")


if __name__ == "__main__":
    main()

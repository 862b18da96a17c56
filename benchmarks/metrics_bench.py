"""What Prometheus metrics cost on hello world: the same app with and without
``Metrics().install(routes)``, in the same run.

Each server is one process pinned to CPU 0; wrk runs on CPU 1 with
keep-alive connections. The servers alternate within each round; the table
shows the median of the rounds and the overhead (target: at most 5%); a
third server adds ``--request-costs`` to show what metering each request
costs (no target)::

    python benchmarks/metrics_bench.py             # 5 rounds x 8 s, updates RESULTS.md
    python benchmarks/metrics_bench.py --quick     # 1 round x 3 s, prints only
    python benchmarks/metrics_bench.py --micro     # in-process cost per request, no wrk

``--micro`` times the router's dispatch of ``GET /`` with and without the
metrics wrapper in this process (interleaved, best of each), which is
where all of the metrics' per-request work happens.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
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

from corofw import Request, Router
from corofw.web.metrics import Metrics

SERVER_CPU, LOAD_CPU = 0, 1
CONNECTIONS = (64, 256)
TARGET = 0.05


def hello_app(with_metrics: bool) -> Router:
    """apps.hello's ``GET /``, with metrics installed or not."""
    routes = Router()

    @routes.get("/")
    def hello(request):
        return "Hello, World!"

    if with_metrics:
        Metrics().install(routes)
    return routes


# What the servers serve (``corofw run metrics_bench:plain``, benchmarks/ on the path).
plain = hello_app(False)
measured = hello_app(True)

COSTS = "metrics + request costs"
SERVERS = {"without metrics": ("metrics_bench:plain",),
           "with metrics": ("metrics_bench:measured",),
           # no target: what --request-costs adds on top, for docs/guide.md
           COSTS: ("metrics_bench:measured", "--request-costs")}


def command(app: tuple[str, ...], port: int) -> list[str]:
    return [PYTHON, "-m", "corofw", "run", *app, "--port", str(port), "--no-access-log",
            "--log-level", "warning"]


def run(rounds: int, seconds: float) -> dict[tuple[str, int], list[dict]]:
    results: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for round_no in range(rounds):
        for name, app in SERVERS.items():
            port = free_port()
            with Service(name, command(app, port), port, SERVER_CPU,
                         env={"PYTHONPATH": "benchmarks"}) as service:
                url = f"http://127.0.0.1:{port}/"
                wrk(url, 16, 1, LOAD_CPU)  # warm up
                for conns in CONNECTIONS:
                    cpu_before = proc_stats(service.pid)[0]
                    result = wrk(url, conns, seconds, LOAD_CPU)
                    result["cpu_us"] = (proc_stats(service.pid)[0] - cpu_before) \
                        / max(result.get("requests", 0.0), 1.0) * 1e6
                    results[(name, conns)].append(result)
                    print(f"round {round_no + 1}: {name:16} c={conns:<4} "
                          f"{result['rps']:9,.0f} req/s  p99 {result.get('p99', 0):7.2f} ms  "
                          f"CPU {result['cpu_us']:5.1f} us/req  "
                          f"errors {result['errors']:.0f}", flush=True)
    return results


def table(results: dict[tuple[str, int], list[dict]]) -> str:
    lines = ["| server | connections | req/s | p99 latency (ms) | CPU µs/request "
             "| overhead by req/s | overhead by CPU | target ≤ 5% (by CPU) |",
             "|---|--:|--:|--:|--:|--:|--:|---|"]
    for conns in CONNECTIONS:
        base = median([r["rps"] for r in results[("without metrics", conns)]])
        base_cpu = median([r["cpu_us"] for r in results[("without metrics", conns)]])
        for name in SERVERS:
            runs = results[(name, conns)]
            rps = median([r["rps"] for r in runs])
            p99 = median([r.get("p99", float("nan")) for r in runs])
            cpu = median([r["cpu_us"] for r in runs])
            if name == "without metrics":
                lines.append(f"| {name} | {conns} | {rps:,.0f} | {p99:.2f} | {cpu:.1f} "
                             f"| — | — | — |")
                continue
            overhead = 1 - rps / base
            by_cpu = 1 - base_cpu / cpu  # the share of throughput the extra CPU costs
            verdict = "**pass**" if by_cpu <= TARGET else "**FAIL**"
            if name == COSTS:
                verdict = "(no target)"
            lines.append(f"| {name} | {conns} | {rps:,.0f} | {p99:.2f} | {cpu:.1f} "
                         f"| {overhead:.1%} | {by_cpu:.1%} | {verdict} |")
    return "\n".join(lines)


def micro(rounds: int = 15, number: int = 100_000) -> str:
    """Nanoseconds per dispatch of ``GET /`` without and with metrics."""
    handles = {False: plain.handle, True: measured.handle}
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for with_metrics, handle in handles.items():
            seconds = timeit.timeit(lambda handle=handle: handle(Request("GET", "/")),
                                    number=number)
            times[with_metrics].append(seconds / number * 1e9)
    best = {key: min(values) for key, values in times.items()}
    middle = {key: statistics.median(values) for key, values in times.items()}
    return (f"dispatch of GET / (request object included): without metrics "
            f"{best[False]:.0f} ns (median {middle[False]:.0f}), with metrics {best[True]:.0f} ns "
            f"(median {middle[True]:.0f}); metrics add {best[True] - best[False]:.0f} ns "
            f"per request (best of {rounds} x {number:,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--micro", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    if args.micro:
        print(micro())
        return
    rounds = args.rounds or (1 if args.quick else 5)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    before = load_average()
    results = run(rounds, seconds)
    report = table(results)
    in_process = micro()
    print("\n" + report + "\n\n" + in_process)
    if args.quick:
        return
    write_section("Metrics overhead", f"""
- Command: `.venv/bin/python benchmarks/metrics_bench.py{f' --rounds {rounds}' if args.rounds else ''}{f' --seconds {seconds:g}' if args.seconds else ''}`, {now_utc()}, corofw at `{git_revision()}`.
- Machine: {machine_line()}. Load average before / after: {before} / {load_average()}.
- Method: hello world (`GET /`, plain handler) served by `corofw run` with `--no-access-log`, once as is and once with `Metrics().install(routes)`; each server one process pinned to CPU {SERVER_CPU} (`taskset`); `wrk -t1 -cN -d{seconds:g}s --latency` pinned to CPU {LOAD_CPU}; keep-alive; the servers alternate in each of {rounds} rounds; median of the rounds. Overhead = 1 − req/s with ÷ req/s without; by CPU, 1 − CPU per request without ÷ CPU per request with (the server process's user + system time over the requests wrk counted: the throughput a CPU-bound server loses, and much less disturbed than req/s by other work on this shared machine, so the target is judged on it). The third server adds `--request-costs` (each request's time on the loop and its waits, counted by the kernel; no target).

{report}

In process: {in_process}.
""")


if __name__ == "__main__":
    main()

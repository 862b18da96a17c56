"""Tail tolerance under load: hedged fan-outs and retry budgets.

A backend whose latency has a heavy tail (99% of calls 50 ms, 1% 1 s) sits
behind a fan-out of ten calls per request, on 100 connections (wrk -c100),
in two kinds of load: closed (each connection sends its next request as
soon as the last is answered, which saturates the fan-out app's core), and
paced (each connection pauses a random 0-400 ms before each request, so the
app has CPU to spare and latency is not its own queue). In one run: corofw
without hedging, corofw hedging after the p95 of recent latencies but not
before 65 ms (as the guide advises for a backend whose usual latency is
tight), corofw hedging after the p95 alone, and aiohttp written the usual
way (one ClientSession, asyncio.gather); every hedge under a 5% budget.
Then, closed, the same fan-out against a backend route that fails half its
calls with 503, with retries off and on (three attempts, 20% retry
budget). The backend counts the calls it receives and the fan-out apps the
requests they serve, so calls per request are exact::

    python benchmarks/tail_bench.py            # 3 rounds, about 12 minutes; updates RESULTS.md
    python benchmarks/tail_bench.py --rounds 1 --seconds 3 --no-write
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench_util import (  # noqa: E402
    PYTHON,
    Service,
    free_port,
    git_revision,
    load_average,
    machine_line,
    now_utc,
    proc_stats,
    write_section,
    wrk,
)

from corofw import Client, Router, ServerConfig, Timeout, gather, run_app, sleep  # noqa: E402
from corofw.http.resilience import Hedge, Retry, Upstream  # noqa: E402
from corofw.kernel.settle import gather_settled  # noqa: E402

APP_CPU, OTHER_CPU = 0, 1
CONCURRENCY = 100
CALLS = 10
FAST, SLOW, SLOW_SHARE, FAIL_SHARE = 0.050, 1.0, 0.01, 0.5
HEDGE = Hedge(after="p95", floor=0.065)
HEDGE_P95 = Hedge(after="p95")
THINK_MS = 200  # paced load: the mean pause before each request
RETRY = Retry(attempts=3)
QUIET = ServerConfig(access_log=False, max_connections=20000, keep_alive_timeout=60)
SETTLE = 2.5  # seconds for the fan-outs still in flight (1 s stragglers) to finish


# -- the servers (run in their own processes) ---------------------------------------------


def backend_routes(seed: int = 1) -> Router:
    """``/api/{i}``: 50 ms, or 1 s for one call in a hundred; ``/flaky/{i}``:
    50 ms, then 503 for half the calls; ``/count``: calls received."""
    rng = random.Random(seed)
    counts = {"api": 0, "flaky": 0}
    routes = Router()

    @routes.get("/api/{i:int}")
    def api(request, i):
        counts["api"] += 1
        yield from sleep(SLOW if rng.random() < SLOW_SHARE else FAST)
        return {"id": i}

    @routes.get("/flaky/{i:int}")
    def flaky(request, i):
        counts["flaky"] += 1
        yield from sleep(FAST)
        if rng.random() < FAIL_SHARE:
            return {"error": "unavailable"}, 503
        return {"id": i}

    @routes.get("/count")
    def count(request):
        return dict(counts)

    return routes


def fanout_routes(backend_url: str) -> Router:
    """The fan-out: ``/fanout`` (plain), ``/fanout-hedged``, ``/flaky``
    (plain) and ``/flaky-retried``, each ten concurrent calls; ``/count``:
    requests served, and the hedging and retrying upstreams' metrics."""
    client = Client(backend_url, timeout=Timeout(connect=5, read=30, pool=30),
                    max_connections=20000, max_idle_per_host=20000)
    plain = Upstream(client)
    hedged = Upstream(client, hedge=HEDGE)
    hedged_p95 = Upstream(client, hedge=HEDGE_P95)
    retried = Upstream(client, retry=RETRY)
    served = {"fanout": 0, "fanout-hedged": 0, "fanout-hedged-p95": 0, "flaky": 0,
              "flaky-retried": 0}
    routes = Router()

    def fan_out(name, api, prefix):
        served[name] += 1
        responses = yield from gather(*(api.get(f"{prefix}/{i}") for i in range(CALLS)))
        if any(r.status_code != 200 for r in responses):
            return {"error": "an upstream call failed"}, 502
        return {"calls": len(responses)}

    def partial(name, api):
        served[name] += 1
        outcomes = yield from gather_settled(*(api.get(f"/flaky/{i}") for i in range(CALLS)))
        ok = sum(1 for o in outcomes if o.ok and o.value.status_code == 200)
        return {"ok": ok, "of": CALLS}

    routes.get("/fanout")(lambda request: fan_out("fanout", plain, "/api"))
    routes.get("/fanout-hedged")(lambda request: fan_out("fanout-hedged", hedged, "/api"))
    routes.get("/fanout-hedged-p95")(
        lambda request: fan_out("fanout-hedged-p95", hedged_p95, "/api"))
    routes.get("/flaky")(lambda request: partial("flaky", plain))
    routes.get("/flaky-retried")(lambda request: partial("flaky-retried", retried))

    @routes.get("/count")
    def count(request):
        return {**served, "hedged": hedged.metrics(), "hedged-p95": hedged_p95.metrics(),
                "retried": retried.metrics()}

    return routes


# -- the measurements ----------------------------------------------------------------------


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def measure(app: Service, app_url: str, path: str, served_key: str, backend_url: str,
            backend_key: str, seconds: float, paced: bool) -> dict:
    """Warm up, then wrk -c100 for ``seconds`` (``paced``: with pauses);
    add the exact counts of fan-outs served and backend calls made, and
    the app's CPU seconds."""
    script = [str(ROOT / "benchmarks" / "pace.lua"), str(THINK_MS)] if paced else None
    wrk(app_url + path, CONCURRENCY, 2, OTHER_CPU, timeout=10, script=script)
    time.sleep(SETTLE)
    served, calls = get_json(app_url + "/count"), get_json(backend_url + "/count")
    cpu_before, _ = proc_stats(app.pid)
    result = wrk(app_url + path, CONCURRENCY, seconds, OTHER_CPU, timeout=10, script=script)
    cpu_after, _ = proc_stats(app.pid)
    time.sleep(SETTLE)
    served_after, calls_after = get_json(app_url + "/count"), get_json(backend_url + "/count")
    result["fanouts"] = served_after[served_key] - served[served_key]
    result["backend_calls"] = calls_after[backend_key] - calls[backend_key]
    result["calls_per_request"] = result["backend_calls"] / max(1, result["fanouts"])
    result["cpu"] = cpu_after - cpu_before
    result["metrics"] = served_after
    before = served.get(served_key.replace("fanout-", ""))
    if isinstance(before, dict):  # this row's own hedges and refusals, not the run's so far
        after = served_after[served_key.replace("fanout-", "")]
        result["hedging"] = {key: after[key] - before[key]
                             for key in ("calls", "hedges", "hedge_wins", "hedges_denied")}
    return result


def run_all(seconds: float) -> dict[str, dict]:
    backend_port, corofw_port, aiohttp_port = free_port(), free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}"
    script = str(Path(__file__).resolve())
    results: dict[str, dict] = {}
    with Service("backend", [PYTHON, script, "serve-backend", str(backend_port)],
                 backend_port, OTHER_CPU):
        with Service("corofw", [PYTHON, script, "serve-fanout", str(corofw_port), backend_url],
                     corofw_port, APP_CPU) as app:
            url = f"http://127.0.0.1:{corofw_port}"
            for name, path, key, paced in [
                    ("corofw", "/fanout", "api", False),
                    ("corofw, hedged", "/fanout-hedged", "api", False),
                    ("corofw, hedged at p95 alone", "/fanout-hedged-p95", "api", False),
                    ("corofw, flaky, no retries", "/flaky", "flaky", False),
                    ("corofw, flaky, retries", "/flaky-retried", "flaky", False),
                    ("corofw, paced", "/fanout", "api", True),
                    ("corofw, hedged, paced", "/fanout-hedged", "api", True),
                    ("corofw, hedged at p95 alone, paced", "/fanout-hedged-p95", "api", True)]:
                results[name] = measure(app, url, path, path[1:], backend_url, key, seconds,
                                        paced)
                report(name, results[name])
        with Service("aiohttp", [PYTHON, "benchmarks/peers/aiohttp_tail.py", str(aiohttp_port),
                                 backend_url], aiohttp_port, APP_CPU) as app:
            url = f"http://127.0.0.1:{aiohttp_port}"
            for name, paced in [("aiohttp", False), ("aiohttp, paced", True)]:
                results[name] = measure(app, url, "/fanout", "fanout", backend_url, "api",
                                        seconds, paced)
                report(name, results[name])
    return results


def combine(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """Per row: the medians over the rounds, the hedges summed, and each
    round's p99 (``p99s``)."""
    combined: dict[str, dict] = {}
    for name, first in rounds[0].items():
        runs = [r[name] for r in rounds]
        row = dict(runs[-1])
        for key in ("rps", "p50", "p90", "p99", "calls_per_request", "cpu"):
            row[key] = statistics.median(run.get(key, 0.0) for run in runs)
        row["non2xx"] = sum(run["non2xx"] for run in runs)
        row["errors"] = sum(run["errors"] for run in runs)
        row["p99s"] = [run.get("p99", 0.0) for run in runs]
        if "hedging" in first:
            row["hedging"] = {key: sum(run["hedging"][key] for run in runs)
                              for key in first["hedging"]}
        combined[name] = row
    return combined


def report(name: str, result: dict) -> None:
    print(f"{name:36} {result['rps']:8,.1f} req/s  p50 {result.get('p50', 0):7.1f} ms  "
          f"p99 {result.get('p99', 0):7.1f} ms  {result['calls_per_request']:.3f} calls/req  "
          f"non-2xx {result['non2xx']:.0f}  errors {result['errors']:.0f}  "
          f"cpu {result['cpu']:.1f} s  {result.get('hedging', '')}", flush=True)


def tables(results: dict[str, dict], seconds: float) -> str:
    lines = ["| fan-out app | load | backend route | req/s | p50 ms | p90 ms | p99 ms | backend "
             "calls per request | hedges sent / won / refused | non-2xx | app CPU s |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name, result in results.items():
        route = "fails half" if "flaky" in name else "heavy tail"
        load = "paced" if name.endswith(", paced") else "closed"
        label = name.removesuffix(", paced")
        hedging = result.get("hedging")
        hedges = (f"{hedging['hedges']:,} / {hedging['hedge_wins']:,} / "
                  f"{hedging['hedges_denied']:,}" if hedging else "—")
        lines.append(f"| {label} | {load} | {route} | {result['rps']:,.1f} | "
                     f"{result.get('p50', 0):,.1f} | {result.get('p90', 0):,.1f} | "
                     f"{result.get('p99', 0):,.1f} | {result['calls_per_request']:.3f} | "
                     f"{hedges} | {result['non2xx']:.0f} | {result['cpu']:.1f} |")
    p99_limit = 3 * FAST * 1000
    ratio = (results["corofw, flaky, retries"]["calls_per_request"]
             / results["corofw, flaky, no retries"]["calls_per_request"])

    def verdict(ok: bool) -> str:
        return "**pass**" if ok else "**FAIL**"

    lines += ["", "| target | load | measured | result |", "|---|---|--:|---|"]
    for name in ("corofw, hedged, paced", "corofw, hedged"):
        hedged = results[name]
        load = "paced" if name.endswith("paced") else "closed (app core saturated)"
        extra = hedged["calls_per_request"] / CALLS - 1
        rounds = ", ".join(f"{p99:,.1f}" for p99 in hedged["p99s"])
        lines += [f"| hedged fan-out p99 ≤ 3 × the backend's p50 ({p99_limit:.0f} ms) | {load} "
                  f"| {hedged.get('p99', 0):,.1f} ms (rounds: {rounds}) | "
                  f"{verdict(hedged.get('p99', 1e9) <= p99_limit)} |",
                  f"| hedging: at most 5% extra backend calls | {load} | {extra:.2%} | "
                  f"{verdict(extra <= 0.05)} |"]
    lines.append(f"| failing upstream: calls with retries ÷ without ≤ 1.2 | closed | "
                 f"{ratio:.3f} | {verdict(ratio <= 1.2)} |")
    retried = results["corofw, flaky, retries"]["metrics"]["retried"]
    lines += ["", f"Retrying upstream at the end of the last round: {retried['retries']:,} "
              f"retries sent, {retried['retries_denied']:,} refused by the budget."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="bench",
                        choices=["bench", "serve-backend", "serve-fanout"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args()
    if options.mode == "serve-backend":
        sys.exit(run_app(backend_routes(), port=int(options.args[0]), config=QUIET))
    if options.mode == "serve-fanout":
        sys.exit(run_app(fanout_routes(options.args[1]), port=int(options.args[0]),
                         config=QUIET))
    before = load_average()
    rounds = [run_all(options.seconds) for _ in range(options.rounds)]
    results = combine(rounds)
    report_text = tables(results, options.seconds)
    print("\n" + report_text)
    if options.no_write:
        return
    write_section("Tail tolerance: hedging and retry budgets", f"""
- Command: `.venv/bin/python benchmarks/tail_bench.py`, {now_utc()}, corofw at `{git_revision()}`.
- Machine: {machine_line()}. Load average before / after: {before} / {load_average()} (other work shared the machine).
- Method: a corofw backend (one process, CPU {OTHER_CPU}): `/api/{{i}}` takes 50 ms, or 1 s for 1% of calls (drawn at random); `/flaky/{{i}}` takes 50 ms and answers 503 to half the calls. The fan-out app (one process, CPU {APP_CPU}) makes ten concurrent calls per request through an `Upstream`: plain; "hedged", with `{HEDGE!r}` (a copy after the p95 of the address's recent latencies, never before 65 ms: the floor the guide advises when a backend's usual latency is tight, here 50 ms); "hedged at p95 alone", with `{HEDGE_P95!r}`; or retried with `Retry(attempts=3)` (20% retry budget); the failing route's fan-out keeps each call's outcome (`gather_settled`). aiohttp: one `ClientSession`, `asyncio.gather` of the ten calls. `wrk -t1 -c{CONCURRENCY}` on CPU {OTHER_CPU} for {options.seconds:g} s per row after a 2 s warm-up of the same load; {options.rounds} rounds, each with fresh processes, medians (hedges: sums; the per-round p99 of the hedged rows is under the targets). Closed load: each connection sends its next request when the last is answered, so the fan-out app's one core saturates and its own queue sets the latency. Paced load: `-s benchmarks/pace.lua -- {THINK_MS}`, each connection pauses a random 0-{2 * THINK_MS} ms before each request (wrk times a request from when it is sent), so the app has CPU to spare. Backend calls per request are exact (the backend counts the calls it receives, the app the requests it serves, both read after the requests in flight finish); hedges sent, won (the copy answered first) and refused (calls the budget made wait) are the row's own. The backend's p50 is its 50 ms.

{report_text}
""")


if __name__ == "__main__":
    main()

"""Tail tolerance under load: hedged fan-outs and retry budgets.

A backend whose latency has a heavy tail (99% of calls 50 ms, 1% 1 s) sits
behind a fan-out of ten calls per request, at 100 concurrent requests
(wrk -c100). In one run: corofw without hedging, corofw hedging after the
p95 of recent latencies (5% hedge budget), and aiohttp written the usual
way (one ClientSession, asyncio.gather). Then the same fan-out against a
backend route that fails half its calls with 503, with retries off and on
(three attempts, 20% retry budget). The backend counts the calls it
receives and the fan-out apps the requests they serve, so calls per
request are exact::

    python benchmarks/tail_bench.py            # about 2 minutes, updates RESULTS.md
    python benchmarks/tail_bench.py --seconds 3 --no-write
"""

from __future__ import annotations

import argparse
import json
import random
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
HEDGE = Hedge(after="p95")
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
    retried = Upstream(client, retry=RETRY)
    served = {"fanout": 0, "fanout-hedged": 0, "flaky": 0, "flaky-retried": 0}
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
    routes.get("/flaky")(lambda request: partial("flaky", plain))
    routes.get("/flaky-retried")(lambda request: partial("flaky-retried", retried))

    @routes.get("/count")
    def count(request):
        return {**served, "hedged": hedged.metrics(), "retried": retried.metrics()}

    return routes


# -- the measurements ----------------------------------------------------------------------


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def measure(app: Service, app_url: str, path: str, served_key: str, backend_url: str,
            backend_key: str, seconds: float) -> dict:
    """Warm up, then wrk -c100 for ``seconds``; add the exact counts of
    fan-outs served and backend calls made, and the app's CPU seconds."""
    wrk(app_url + path, CONCURRENCY, 2, OTHER_CPU, timeout=10)
    time.sleep(SETTLE)
    served, calls = get_json(app_url + "/count"), get_json(backend_url + "/count")
    cpu_before, _ = proc_stats(app.pid)
    result = wrk(app_url + path, CONCURRENCY, seconds, OTHER_CPU, timeout=10)
    cpu_after, _ = proc_stats(app.pid)
    time.sleep(SETTLE)
    served_after, calls_after = get_json(app_url + "/count"), get_json(backend_url + "/count")
    result["fanouts"] = served_after[served_key] - served[served_key]
    result["backend_calls"] = calls_after[backend_key] - calls[backend_key]
    result["calls_per_request"] = result["backend_calls"] / max(1, result["fanouts"])
    result["cpu"] = cpu_after - cpu_before
    result["metrics"] = served_after
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
            for name, path, key in [("corofw", "/fanout", "api"),
                                    ("corofw, hedged", "/fanout-hedged", "api"),
                                    ("corofw, flaky, no retries", "/flaky", "flaky"),
                                    ("corofw, flaky, retries", "/flaky-retried", "flaky")]:
                results[name] = measure(app, url, path, path[1:], backend_url, key, seconds)
                report(name, results[name])
        with Service("aiohttp", [PYTHON, "benchmarks/peers/aiohttp_tail.py", str(aiohttp_port),
                                 backend_url], aiohttp_port, APP_CPU) as app:
            url = f"http://127.0.0.1:{aiohttp_port}"
            results["aiohttp"] = measure(app, url, "/fanout", "fanout", backend_url, "api",
                                         seconds)
            report("aiohttp", results["aiohttp"])
    return results


def report(name: str, result: dict) -> None:
    print(f"{name:27} {result['rps']:8,.1f} req/s  p50 {result.get('p50', 0):7.1f} ms  "
          f"p99 {result.get('p99', 0):7.1f} ms  {result['calls_per_request']:.3f} calls/req  "
          f"non-2xx {result['non2xx']:.0f}  errors {result['errors']:.0f}  "
          f"cpu {result['cpu']:.1f} s", flush=True)


def tables(results: dict[str, dict], seconds: float) -> str:
    lines = ["| fan-out app | backend route | req/s | p50 ms | p99 ms | backend calls per "
             "request | non-2xx | CPU s |", "|---|---|--:|--:|--:|--:|--:|--:|"]
    for name, result in results.items():
        route = "fails half" if "flaky" in name else "heavy tail"
        lines.append(f"| {name} | {route} | {result['rps']:,.1f} | {result.get('p50', 0):,.1f} "
                     f"| {result.get('p99', 0):,.1f} | {result['calls_per_request']:.3f} | "
                     f"{result['non2xx']:.0f} | {result['cpu']:.1f} |")
    hedged = results["corofw, hedged"]
    metrics = hedged["metrics"]["hedged"]
    (endpoint,) = metrics["endpoints"].values()
    extra = hedged["calls_per_request"] / CALLS - 1
    p99_limit = 3 * FAST * 1000
    ratio = (results["corofw, flaky, retries"]["calls_per_request"]
             / results["corofw, flaky, no retries"]["calls_per_request"])

    def verdict(ok: bool) -> str:
        return "**pass**" if ok else "**FAIL**"

    lines += ["", "| target | measured | result |", "|---|--:|---|",
              f"| hedged fan-out p99 ≤ 3 × the backend's p50 ({p99_limit:.0f} ms) | "
              f"{hedged.get('p99', 0):,.1f} ms | {verdict(hedged.get('p99', 1e9) <= p99_limit)} |",
              f"| hedging: at most 5% extra backend calls | {extra:.2%} | "
              f"{verdict(extra <= 0.05)} |",
              f"| failing upstream: calls with retries ÷ without ≤ 1.2 | {ratio:.3f} | "
              f"{verdict(ratio <= 1.2)} |"]
    lines += ["", f"Hedged upstream at the end (the fan-out app's `/count`): "
              f"{metrics['hedges']:,} hedges sent, {metrics['hedge_wins']:,} of them answered "
              f"first, {metrics['hedges_denied']:,} refused by the budget, out of "
              f"{metrics['calls']:,} calls; recent call latency seen by the fan-out: p50 "
              f"{endpoint['p50'] * 1000:.1f} ms, p95 {endpoint['p95'] * 1000:.1f} ms, "
              f"p99 {endpoint['p99'] * 1000:.1f} ms. Retrying upstream: "
              f"{results['corofw, flaky, retries']['metrics']['retried']['retries']:,} retries "
              f"sent, {results['corofw, flaky, retries']['metrics']['retried']['retries_denied']:,}"
              f" refused by the budget."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="bench",
                        choices=["bench", "serve-backend", "serve-fanout"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args()
    if options.mode == "serve-backend":
        sys.exit(run_app(backend_routes(), port=int(options.args[0]), config=QUIET))
    if options.mode == "serve-fanout":
        sys.exit(run_app(fanout_routes(options.args[1]), port=int(options.args[0]),
                         config=QUIET))
    before = load_average()
    results = run_all(options.seconds)
    report_text = tables(results, options.seconds)
    print("\n" + report_text)
    if options.no_write:
        return
    write_section("Tail tolerance: hedging and retry budgets", f"""
- Command: `.venv/bin/python benchmarks/tail_bench.py`, {now_utc()}, corofw at `{git_revision()}`.
- Machine: {machine_line()}. Load average before / after: {before} / {load_average()} (other work shared the machine).
- Method: a corofw backend (one process, CPU {OTHER_CPU}): `/api/{{i}}` takes 50 ms, or 1 s for 1% of calls (drawn at random); `/flaky/{{i}}` takes 50 ms and answers 503 to half the calls. The fan-out app (one process, CPU {APP_CPU}) makes ten concurrent calls per request through an `Upstream`: plain, or hedged with `{HEDGE!r}`, or retried with `Retry(attempts=3)` (20% retry budget); the failing route's fan-out keeps each call's outcome (`gather_settled`). aiohttp: one `ClientSession`, `asyncio.gather` of the ten calls. `wrk -t1 -c{CONCURRENCY}` on CPU {OTHER_CPU} for {options.seconds:g} s per row after a 2 s warm-up; backend calls per request are exact (the backend counts the calls it receives, the app the requests it serves, both read after the requests in flight finish). The backend's p50 is its 50 ms.

{report_text}
""")


if __name__ == "__main__":
    main()

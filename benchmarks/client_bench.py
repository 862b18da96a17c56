"""The outbound client's hot path, before and after a change.

Two workloads against a corofw backend (``apps.hello:routes``, which
answers ``GET /`` at once) served by the same kernel, in the same process,
so that the figure is CPU time of the one loop thread (``time.thread_time``),
little disturbed by whatever else the machine runs:

``sequential``  2,000 GETs one after another on one keep-alive connection
``concurrent``  200 tasks at once, each making 10 GETs in turn (200 pooled
                connections, the fan-out shape)

Each client process runs both workloads ``REPEAT`` times and keeps the
fastest of each (the runs least disturbed by the rest of the machine).

``--compare OLD NEW`` runs the workloads from each source tree in a fresh
process pinned to one core, interleaved (old, new, new, old, ...),
``--pairs`` times, and prints each run and the medians::

    git worktree add /tmp/old-client <commit>
    python benchmarks/client_bench.py --compare /tmp/old-client . --pairs 3

``--measure`` measures the tree on ``PYTHONPATH`` and prints one JSON line.
The server's code counts too: to compare client changes alone, give both
trees the same server.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

SEQUENTIAL = 2000
TASKS, PER_TASK = 200, 10
REPEAT = 10


def measure(repeat: int = REPEAT) -> dict[str, float]:
    from apps.hello import routes
    from corofw import Client, ServerConfig, gather, run, serve, spawn
    from corofw.net import listen

    def workload():
        listener = listen("127.0.0.1", 0)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        stop_r, stop_w = socket.socketpair()
        server = yield from spawn(serve(routes, listener, ServerConfig(access_log=False),
                                        stop=stop_r))
        client = Client(url, max_connections=TASKS + 10, max_idle_per_host=TASKS + 10)
        try:
            for _ in range(20):  # warm up: the connection, the caches
                yield from client.get("/")

            def task():
                for _ in range(PER_TASK):
                    response = yield from client.get("/")
                    assert response.status_code == 200

            best = {"sequential": float("inf"), "concurrent": float("inf")}
            for _ in range(repeat):
                started = time.thread_time()
                for _ in range(SEQUENTIAL):
                    response = yield from client.get("/")
                    assert response.status_code == 200
                took = time.thread_time() - started
                best["sequential"] = min(best["sequential"], took)

                started = time.thread_time()
                yield from gather(*(task() for _ in range(TASKS)))
                took = time.thread_time() - started
                best["concurrent"] = min(best["concurrent"], took)
        finally:
            client.close()
            stop_w.send(b"x")
            yield from server.join()
            stop_r.close()
            stop_w.close()
            listener.close()
        return best

    return run(workload())


def pin(index: int):
    """A pre-exec hook pinning the child to one CPU (by index into the
    allowed ones): the backend and the client each get their own core."""
    cpus = sorted(os.sched_getaffinity(0))

    def hook() -> None:
        os.sched_setaffinity(0, {cpus[index]})

    return hook


def run_client(tree: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure"],
                         cwd=tree, env=env, capture_output=True, text=True, check=True,
                         preexec_fn=pin(-1))
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(old: Path, new: Path, pairs: int) -> None:
    results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for pair in range(pairs):
        order = [("old", old), ("new", new)] if pair % 2 == 0 else [("new", new), ("old", old)]
        for name, tree in order:
            result = run_client(tree)
            results[name].append(result)
            print(f"pair {pair + 1} {name}: sequential {result['sequential']:.3f} s, "
                  f"concurrent {result['concurrent']:.3f} s", flush=True)
    for workload, count in (("sequential", SEQUENTIAL), ("concurrent", TASKS * PER_TASK)):
        old_median = statistics.median(r[workload] for r in results["old"])
        new_median = statistics.median(r[workload] for r in results["new"])
        print(f"{workload}: old {old_median:.3f} s ({count / old_median:,.0f} req/s), "
              f"new {new_median:.3f} s ({count / new_median:,.0f} req/s), "
              f"new/old {new_median / old_median:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=REPEAT)
    args = parser.parse_args()
    if args.compare:
        old, new = (Path(p).resolve() for p in args.compare)
        compare(old, new, args.pairs)
    elif args.measure:
        print(json.dumps(measure(args.repeat)))
    else:
        parser.error("give --measure or --compare")


if __name__ == "__main__":
    main()

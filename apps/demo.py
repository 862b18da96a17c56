"""``make demo``: ten 1-second backend calls in about one second, on one core.

Starts the stand-in backend and the fan-out app with ``corofw run`` (the
fan-out app pinned to a single CPU core), calls ``/fanout`` and
``/fanout/sequential``, prints a short report, and stops both servers with
SIGTERM (a graceful shutdown: both must exit with status 0).

Options: ``--delay SECONDS`` (default 1.0), ``--cpu N`` (the core to pin
the fan-out app to; default the last one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(spec: str, port: int, env: dict[str, str], cpu: int | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "corofw", "run", spec, "--port", str(port),
               "--no-access-log", "--log-level", "warning"]

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return subprocess.Popen(command, cwd=ROOT, env=env, preexec_fn=pin)


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start within {timeout:g} s")


def cpu_seconds(pid: int) -> float:
    """CPU time of the process's main thread (the event loop), from the
    scheduler's nanosecond counter; clock ticks where that is missing."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch(url: str) -> tuple[dict, float]:
    """The JSON answer of ``url`` (a 502 or 504 too: its body names the
    failed calls) and the seconds it took."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            body = json.load(exc)
    return body, time.monotonic() - started


def stop(process: subprocess.Popen, name: str) -> int:
    """SIGTERM, then the exit status; a server still running 20 s later is
    killed (and reported: its status is then not 0)."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        print(f"{name} did not stop on SIGTERM: killed", file=sys.stderr)
        return -signal.SIGKILL


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else cpus[-1]
    backend_port, fanout_port = free_port(), free_port()
    env = dict(os.environ, BACKEND_URL=f"http://127.0.0.1:{backend_port}",
               BACKEND_DELAY=str(args.delay), PYTHONPATH=str(ROOT))
    backend = start_server("apps.backend:routes", backend_port, env, None)
    fanout = start_server("apps.fanout:routes", fanout_port, env, cpu)
    statuses = {}
    try:
        wait_until_listening(backend_port, backend)
        wait_until_listening(fanout_port, fanout)
        base = f"http://127.0.0.1:{fanout_port}"
        fetch(f"{base}/fanout?delay=0")  # warm up: import paths, open the pool's connections
        cpu_before = cpu_seconds(fanout.pid)
        # The fan-out's deadline (5 s unless asked) must leave the calls time
        # to finish: one delay for the concurrent calls, ten for the sequential.
        deadline = min(60.0, 10 * args.delay + 5)
        concurrent, wall = fetch(f"{base}/fanout?deadline={deadline:g}")
        cpu_used = cpu_seconds(fanout.pid) - cpu_before
        sequential, _ = fetch(f"{base}/fanout/sequential?deadline={deadline:g}")
        for answer in (concurrent, sequential):
            failed = [f"call {c['call']}: {c['error']}" for c in answer["calls"] if not c["ok"]]
            if failed:
                raise SystemExit(f"{answer['mode']} fan-out incomplete: " + "; ".join(failed))
        ids = [c["result"]["id"] for c in concurrent["calls"]]
        if ids != list(range(10)):
            raise SystemExit(f"unexpected results: {ids}")
    finally:
        for name, process in (("fan-out app", fanout), ("backend", backend)):
            statuses[name] = stop(process, name)  # both, whatever happened
    calls = len(concurrent["calls"])
    print(f"{calls} calls x {args.delay:g} s each: concurrent {concurrent['elapsed']:.2f} s, "
          f"sequential {sequential['elapsed']:.2f} s, 1 CPU core (cpu {cpu})")
    slowest = max(c["duration"] for c in concurrent["calls"])
    print(f"  concurrent: every call took {min(c['duration'] for c in concurrent['calls']):.3f}"
          f"-{slowest:.3f} s, all waiting at the same time; "
          f"request seen by the client in {wall:.3f} s")
    busy = 100.0 * cpu_used / max(wall, 1e-9)
    print(f"  the fan-out process used {cpu_used * 1000:.1f} ms of CPU during that request: "
          f"CPU busy {busy:.1f}% of the wait; the rest was spent asleep in epoll_wait")
    print("  servers stopped: " + ", ".join(f"{k} exit {v}" for k, v in statuses.items()))
    return 0 if all(v == 0 for v in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the HTTP benchmarks share: starting pinned servers, running wrk,
and rewriting one section of RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cpu: int | None, command: list[str]) -> list[str]:
    """``command`` under ``taskset -c cpu`` when taskset exists."""
    if cpu is None or not shutil.which("taskset"):
        return command
    return ["taskset", "-c", str(cpu), *command]


def raise_fd_limit(wanted: int = 0) -> int:
    """Raise this process's open-file limit to its hard limit, or to
    ``wanted`` above it where that is allowed (root); processes started
    afterwards inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, hard), max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Service:
    """A server process started for a benchmark and stopped by its PID."""

    def __init__(self, name: str, command: list[str], port: int, cpu: int | None,
                 env: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        self.name = name
        self.port = port
        self.host = host
        self.process = subprocess.Popen(
            pinned(cpu, command), cwd=ROOT, env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=raise_fd_limit)
        self._wait_listening()

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace")  # type: ignore
                raise RuntimeError(f"{self.name} exited at start:\n{err}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start listening on {self.port}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, peak RSS in bytes) of a running process and the
    processes it started (a server whose workers are child processes, such
    as hypercorn, is measured as a whole)."""
    cpu = 0.0
    peak = 0
    for member in _process_tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue  # it just exited
        cpu += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak += int(line.split()[1]) * 1024
    return cpu, peak


def _process_tree(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    tree = [pid]
    for member in tree:
        tree.extend(child for child, parent in parents.items() if parent == member)
    return tree


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, connections: int, seconds: float, cpu: int | None,
        timeout: float = 10.0, script: list[str] | None = None) -> dict[str, float]:
    """Run wrk (1 thread, keep-alive) and return req/s, latency percentiles
    in ms, and error counts. ``script``: a Lua script's path and its
    arguments; a line ``percentiles p50=1.0 ...`` it prints adds those."""
    extra = [] if script is None else ["-s", script[0]]
    command = pinned(cpu, ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
                           f"--timeout={timeout:g}s", "--latency", *extra, url,
                           *([] if script is None else ["--", *script[1:]])])
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         preexec_fn=raise_fd_limit).stdout
    result: dict[str, float] = {"errors": 0.0, "non2xx": 0.0}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(line.split()[1])
        elif re.match(r"^(50|75|90|99)%\s", line):
            pct, value = line.split()
            result[f"p{pct[:-1]}"] = _ms(value)
        elif line.startswith("Socket errors:"):
            result["errors"] = float(sum(int(n) for n in re.findall(r"\d+", line)))
        elif line.startswith("Non-2xx"):
            result["non2xx"] = float(line.split()[-1])
        elif "requests in" in line:
            result["requests"] = float(line.split()[0])
        elif line.startswith("percentiles "):
            for pair in line.split()[1:]:
                name, value = pair.split("=")
                result[name] = float(value)
    if "rps" not in result:
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()}-core shared VM ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_section(title: str, body: str) -> None:
    """Replace the ``## title`` section of RESULTS.md (or append it)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def pin_tree(pid: int, cpu: int | None) -> None:
    """Pin a running process, its threads and its child processes to
    ``cpu`` (children it forks later inherit the pinning): for servers
    started by a helper that offers no ``taskset`` hook, such as
    PostgreSQL's ``pg_ctl``."""
    if cpu is None:
        return
    for member in _process_tree(pid):
        try:
            threads = [int(tid) for tid in os.listdir(f"/proc/{member}/task")]
        except OSError:
            continue  # it just exited
        for tid in threads:
            try:
                os.sched_setaffinity(tid, {cpu})
            except OSError:
                pass


def run_queue_seconds(pid: int) -> float:
    """Seconds that a process's threads (and its children's) spent ready to
    run but waiting for a CPU, from /proc/<pid>/task/*/schedstat: how much
    other work on a shared machine held the process back."""
    waited = 0
    for member in _process_tree(pid):
        try:
            threads = os.listdir(f"/proc/{member}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                waited += int(Path(f"/proc/{member}/task/{tid}/schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue  # it just exited, or the kernel keeps no schedstats
    return waited / 1e9


def stop_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit in this process, so that the servers it
    started are stopped on the way out (their ``with`` blocks run)."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)

"""Hardening: what one server process costs and survives under abuse.

Four measurements, each writing its own section of RESULTS.md::

    python benchmarks/hardening_bench.py                # all four (make bench-hardening)
    python benchmarks/hardening_bench.py idle           # RSS per idle keep-alive connection
    python benchmarks/hardening_bench.py flood          # pipelining clients that never read
    python benchmarks/hardening_bench.py slowreader     # large responses nobody reads
    python benchmarks/hardening_bench.py soak           # 1,000,000 requests of a mix
    python benchmarks/hardening_bench.py all --quick    # small and short, prints only

- ``idle``: 10,000 connections each complete one request and stay open;
  (RSS after - RSS before) / 10,000, corofw beside aiohttp.
- ``flood``: 50 connections pipeline GETs as fast as they can and never
  read a response; the server's peak RSS must stay bounded (it stops reading
  when its responses back up) and a fresh client must still be answered.
- ``slowreader``: 200 connections request 4 MiB and never read it; peak RSS,
  fresh clients still served, and ``--send-timeout 5`` closes the stuck
  connections (the server's open fds before, during, after).
- ``soak``: one server, pinned to CPU 0, gets at least 1,000,000 requests
  from wrk (``benchmarks/soak.lua``: hello, echo with bodies, fan-out to a
  backend) while a side loop sends malformed requests on fresh connections;
  no errors are allowed, and RSS and open fds must stay flat.

Servers run pinned to CPU 0, the load (wrk, the Python clients, the
backend) on CPU 1. Before starting, the script waits until no other
``wrk`` or ``*_bench.py`` runs on the machine, so two benchmarks never share
it. Every server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import atexit
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_util import (
    PYTHON,
    ROOT,
    free_port,
    git_revision,
    load_average,
    machine_line,
    now_utc,
    pinned,
    raise_fd_limit,
    write_section,
)

SERVER_CPU, LOAD_CPU = 0, 1
MiB = 1 << 20
SCRIPT = "benchmarks/hardening_bench.py"
LOG_DIR = Path(tempfile.gettempdir()) / f"corofw-hardening-{os.getpid()}"


# -- processes ------------------------------------------------------------------------


class Proc:
    """A server started for a measurement, stopped by its PID. Its stderr
    goes to a file (read for tracebacks afterwards) so that a chatty server
    can never block on a full pipe."""

    def __init__(self, name: str, command: list[str], port: int, cpu: int | None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name.split()[0]}-{port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            pinned(cpu, command), cwd=ROOT, env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=self._log, preexec_fn=raise_fd_limit)
        self._wait_listening()

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start listening on {self.port}")

    @property
    def pid(self) -> int:
        return self.process.pid  # taskset execs the server: same PID

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def problems(self) -> list[str]:
        """Lines of the server's log that report a crash or an error."""
        return [line for line in self.log().splitlines()
                if "Traceback" in line or " ERROR " in line or " CRITICAL " in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def corofw(app: str, port: int, *options: str) -> list[str]:
    return [PYTHON, "-m", "corofw", "run", app, "--port", str(port), "--no-access-log",
            "--log-level", "warning", *options]


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` field (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def rss(pid: int) -> int:
    return status_kib(pid, "VmRSS")


def peak_rss(pid: int) -> int:
    return status_kib(pid, "VmHWM")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def socket_queues(port: int) -> tuple[int, int, int]:
    """(connections, bytes unread in receive queues, bytes waiting in send
    queues) of the established TCP sockets whose local port is ``port``."""
    count = unread = unsent = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "01" and int(local.split(":")[1], 16) == port:
            tx, rx = (int(x, 16) for x in fields[4].split(":"))
            count += 1
            unsent += tx
            unread += rx
    return count, unread, unsent


def still_open(port: int, client_ports: set[int]) -> int:
    """How many of the server's connections (local ``port``) from
    ``client_ports`` it has not closed yet (still ESTABLISHED)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[3] == "01" and int(fields[1].split(":")[1], 16) == port
                and int(fields[2].split(":")[1], 16) in client_ports):
            count += 1
    return count


def outbound_connections(remote_port: int) -> int:
    """Open TCP connections (established or half-closed by the peer) to
    127.0.0.1:``remote_port``: the fan-out client's pool, in the soak."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] in ("01", "08") and int(fields[2].split(":")[1], 16) == remote_port:
            count += 1
    return count


def wait_until_quiet(limit: float = 1800.0) -> None:
    """Wait (up to ``limit`` seconds) while another benchmark or wrk runs."""
    me = os.getpid()
    started = time.monotonic()
    told = False
    while True:
        busy = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            words = [a.decode(errors="replace") for a in argv if a]
            if words and (os.path.basename(words[0]) == "wrk"
                          or any(w.endswith("_bench.py") for w in words)):
                busy.append(f"{entry.name}: {' '.join(words)[:100]}")
        if not busy:
            return
        if time.monotonic() - started > limit:
            raise SystemExit("another benchmark is still running:\n" + "\n".join(busy))
        if not told:
            print("waiting for other benchmarks to finish:\n  " + "\n  ".join(busy), flush=True)
            told = True
        time.sleep(5)


def pin_self(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


# -- small HTTP clients -----------------------------------------------------------------


def read_response(sock: socket.socket, buffer: bytes = b"") -> tuple[int, bytes, bytes]:
    """Read one Content-Length response; return (status, body, leftover)."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed before a response head")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed inside a response body")
        rest += data
    return status, rest[:length], rest[length:]


def probe(port: int, timeout: float = 10.0) -> float:
    """Latency (ms) of ``GET /`` on a fresh connection; inf when it fails."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            status, _, _ = read_response(sock)
    except OSError:
        return float("inf")
    if status != 200:
        return float("inf")
    return (time.perf_counter() - started) * 1e3


def mib(n: float) -> str:
    return f"{n / MiB:,.1f}"


def command_text(sub: str, args: argparse.Namespace) -> str:
    extra = " --quick" if args.quick else ""
    via = f" (part of `{SCRIPT} all`, which `make bench-hardening` runs)" if args.all else ""
    return f"`.venv/bin/python {SCRIPT} {sub}{extra}`{via}"


def code_state() -> str:
    """The commit, and the files of corofw/ that differ from it, if any."""
    text = f"corofw at `{git_revision()}`"
    try:
        changed = subprocess.run(["git", "status", "--porcelain", "--", "corofw"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.split("\n")
    except OSError:
        return text
    names = sorted(line[3:] for line in changed if line.strip())
    if names:
        text += " with uncommitted changes to " + ", ".join(f"`{n}`" for n in names)
    return text


def header(sub: str, args: argparse.Namespace, load_before: str) -> str:
    return (f"- Command: {command_text(sub, args)}, {now_utc()}, {code_state()}.\n"
            f"- Machine: {machine_line()}. Load average before / after: {load_before} / "
            f"{load_average()}.")


# -- idle: memory per idle keep-alive connection --------------------------------------

IDLE_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def idle_commands(port: int) -> dict[str, list[str]]:
    return {
        "corofw": corofw("apps.hello:routes", port, "--keep-alive-timeout", "600",
                         "--max-connections", "20000", "--backlog", "4096"),
        "aiohttp": [PYTHON, "benchmarks/peers/aiohttp_hello.py", str(port)],
    }


def idle_once(name: str, count: int) -> dict[str, float]:
    port = free_port()
    with Proc(name, idle_commands(port)[name], port, SERVER_CPU) as server:
        # Warm up: the code paths a request takes are imported and cached.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            leftover = b""
            for _ in range(200):
                sock.sendall(IDLE_REQUEST)
                _, _, leftover = read_response(sock, leftover)
        time.sleep(0.5)
        before = rss(server.pid)
        fds_before = open_fds(server.pid)
        clients = []
        started = time.monotonic()
        try:
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                clients.append(sock)
                sock.sendall(IDLE_REQUEST)
                status, _, _ = read_response(sock)
                if status != 200:
                    raise RuntimeError(f"{name} answered {status}")
            opened = time.monotonic() - started
            time.sleep(2.0)
            after = rss(server.pid)
            fds_after = open_fds(server.pid)
            alive = _still_open(clients)
        finally:
            for sock in clients:
                sock.close()
        if fds_after - fds_before < count:
            raise RuntimeError(f"{name} holds only {fds_after - fds_before} of {count} "
                               f"connections")
        return {"before": before, "after": after, "per_conn": (after - before) / count,
                "fds": fds_after - fds_before, "alive": alive, "open_s": opened}


def _still_open(clients: list[socket.socket]) -> int:
    """How many connections the server has not closed (no EOF pending)."""
    alive = 0
    for sock in clients:
        sock.setblocking(False)
        try:
            alive += sock.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def bench_idle(args: argparse.Namespace) -> None:
    raise_fd_limit()
    count = 2000 if args.quick else args.connections
    rounds = 1 if args.quick else args.rounds
    load_before = load_average()
    results: dict[str, list[dict[str, float]]] = {"corofw": [], "aiohttp": []}
    for round_no in range(rounds):
        for name in results:
            result = idle_once(name, count)
            results[name].append(result)
            print(f"idle round {round_no + 1}: {name:8} {count:,} connections: RSS "
                  f"{mib(result['before'])} -> {mib(result['after'])} MiB, "
                  f"{result['per_conn']:,.0f} bytes/connection, {result['alive']:,.0f} still "
                  f"open after 2 s, opened in {result['open_s']:.1f} s", flush=True)
    per = {name: statistics.median(r["per_conn"] for r in runs) for name, runs in results.items()}
    ratio = per["corofw"] / per["aiohttp"]
    lines = ["| server | connections | RSS before (MiB) | RSS with all idle (MiB) | bytes / connection ↓ | runs |",
             "|---|--:|--:|--:|--:|---|"]
    for name, runs in results.items():
        mid = sorted(runs, key=lambda r: r["per_conn"])[len(runs) // 2]
        lines.append(f"| {name} | {count:,} | {mib(mid['before'])} | {mib(mid['after'])} | "
                     f"{per[name]:,.0f} | {', '.join(format(r['per_conn'], ',.0f') for r in runs)} |")
    table = "\n".join(lines)
    summary = (f"corofw holds an idle keep-alive connection in **{per['corofw']:,.0f} bytes** of "
               f"RSS, aiohttp in {per['aiohttp']:,.0f}: corofw ÷ aiohttp = **{ratio:.2f}×**.")
    print("\n" + table + "\n\n" + summary)
    if args.quick:
        return
    write_section("Hardening: idle keep-alive connections", f"""
{header("idle", args, load_before)}
- Method: one server process pinned to CPU {SERVER_CPU}; a Python client on CPU {LOAD_CPU} opens {count:,} connections one after another, each sends `GET /` and reads the answer, and all stay open (both processes raise their soft fd limit to the hard one, 20,000). RSS (`VmRSS`) is read after a warm-up of 200 requests on one connection and again 2 s after the last connection was answered; the table gives (after − before) / {count:,}, the median of {rounds} round(s), servers interleaved. corofw: `corofw run apps.hello:routes --keep-alive-timeout 600 --max-connections 20000 --backlog 4096 --no-access-log`; aiohttp: `benchmarks/peers/aiohttp_hello.py` (`web.run_app`, keep-alive 75 s). Kernel socket buffers are not in RSS and are left out for both.

{table}

{summary}
""")


# -- flood: pipelining clients that never read --------------------------------------

FLOOD_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def flood_client(port: int, conns: int, budget: int, seconds: float, rcvbuf: int,
                 pipe: multiprocessing.connection.Connection) -> None:
    """Child process: ``conns`` connections send pipelined GETs (up to
    ``budget`` bytes each) for ``seconds``, reading nothing; report the bytes
    each got into the server, keep the sockets open until told to close."""
    pin_self(LOAD_CPU)
    raise_fd_limit()
    chunk = FLOOD_REQUEST * (65536 // len(FLOOD_REQUEST))
    view = memoryview(chunk)
    socks = []
    for _ in range(conns):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        socks.append(sock)
    sent = {sock.fileno(): 0 for sock in socks}
    by_fd = {sock.fileno(): sock for sock in socks}
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLOUT)
    pipe.send("connected")
    deadline = time.monotonic() + seconds
    active = len(by_fd)
    while active and time.monotonic() < deadline:
        for fd, _ in poller.poll(max(deadline - time.monotonic(), 0.0)):
            sock = by_fd[fd]
            while sent[fd] < budget:
                offset = sent[fd] % len(chunk)
                try:
                    n = sock.send(view[offset:offset + min(len(chunk) - offset, budget - sent[fd])])
                except BlockingIOError:
                    break
                except OSError:
                    sent[fd] = -sent[fd] - 1  # closed by the server: record and stop
                    break
                sent[fd] += n
            if sent[fd] >= budget or sent[fd] < 0:
                poller.unregister(fd)
                active -= 1
    pipe.send(list(sent.values()))
    pipe.recv()  # "close"
    poller.close()
    for sock in socks:
        sock.close()
    pipe.send("closed")


def bench_flood(args: argparse.Namespace) -> None:
    conns = 10 if args.quick else args.connections
    seconds = 4.0 if args.quick else args.seconds
    budget = int((4 if args.quick else args.megabytes) * 1_000_000)
    rcvbuf = args.rcvbuf
    load_before = load_average()
    port = free_port()
    pin_self(LOAD_CPU)
    with Proc("corofw", corofw("apps.hello:routes", port), port, SERVER_CPU) as server:
        for _ in range(100):
            probe(port)
        base_rss, base_peak, base_fds = rss(server.pid), peak_rss(server.pid), open_fds(server.pid)
        parent, child = multiprocessing.Pipe()
        client = multiprocessing.Process(target=flood_client,
                                         args=(port, conns, budget, seconds, rcvbuf, child))
        client.start()
        try:
            if not parent.poll(30) or parent.recv() != "connected":
                raise RuntimeError("the flood client did not connect")
            started = time.monotonic()
            samples: list[tuple[float, int]] = []
            sampling = threading.Event()
            sampler = threading.Thread(target=_sample_rss, daemon=True,
                                       args=(server.pid, started, samples, sampling))
            sampler.start()
            prober = Prober(port, started)
            if not parent.poll(seconds + 60):
                raise RuntimeError("the flood client did not finish")
            sent = parent.recv()
            prober.stop()
            busy_until = wait_until_idle(server.pid, started)
            sampling.set()
            sampler.join()
            peak = peak_rss(server.pid)
            end_rss, end_fds = rss(server.pid), open_fds(server.pid)
            queued_conns, unread, unsent = socket_queues(port)
            idle_probe = probe(port)
            parent.send("close")
            if parent.poll(30):
                parent.recv()
        finally:
            client.join(30)
            if client.is_alive():
                client.kill()
                client.join()
        time.sleep(2.0)
        after = probe(port)
        after_rss, after_fds = rss(server.pid), open_fds(server.pid)
        problems = server.problems()
    closed_early = sum(1 for s in sent if s < 0)
    accepted = [s if s >= 0 else -s - 1 for s in sent]
    rows = [
        ("flood", f"{conns} connections × up to {budget / 1e6:g} MB of pipelined `GET /` each, "
                  f"{seconds:g} s, responses never read (client `SO_RCVBUF` {rcvbuf:,} bytes)"),
        ("bytes each client wrote before its socket blocked (min / median / max)",
         f"{mib(min(accepted))} / {mib(statistics.median(accepted))} / {mib(max(accepted))} MiB "
         f"of {budget / MiB:,.1f} MiB offered"),
        ("connections that wrote their whole budget", f"{sum(1 for a in accepted if a >= budget)}"
                                                       f" of {conns}"),
        ("connections the server closed while the client wrote", f"{closed_early}"),
        ("connections closed by the send timeout (30 s) by the time the server was idle",
         f"{conns - closed_early - queued_conns}"),
        ("server busy (CPU) working through what it had read until", f"{busy_until:.1f} s"),
        ("server RSS before / peak (VmHWM) / when idle again",
         f"{mib(base_rss)} / **{mib(peak)}** / {mib(end_rss)} MiB (VmHWM before: {mib(base_peak)} MiB)"),
        ("then in the kernel (server side)",
         f"{queued_conns} connections, {mib(unread)} MiB of requests unread, "
         f"{mib(unsent)} MiB of responses unsent"),
        ("fresh-client `GET /` during the flood", prober.summary()),
        ("fresh `GET /` once the server was idle, flood connections still open",
         f"{idle_probe:.1f} ms"),
        ("after the flood clients closed: fresh `GET /`, RSS, open fds",
         f"{after:.1f} ms, {mib(after_rss)} MiB, {after_fds} (before: {base_fds}, when idle "
         f"with the flood connections open: {end_fds})"),
        ("errors in the server's log", f"{len(problems)}"),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    bound = (f"Peak RSS stayed under **{_ceil_mib(peak)} MiB** (from {mib(base_rss)} MiB at rest) while "
             f"{conns} connections offered {conns * budget / 1e6:,.0f} MB of pipelined requests: "
             f"the server stops reading a connection whose responses back up, and the backlog "
             f"stays in the kernel's socket queues.")
    if prober.worst() > 1000:
        waited = (f"{prober.failed()} of {len(prober.results)} fresh clients got no answer within "
                  f"{prober.timeout:g} s" if prober.failed() else
                  f"a fresh client waited up to {prober.worst() / 1000:,.1f} s")
        answers = [at + ms / 1000 for at, ms in prober.results if ms != float("inf")]
        first = f"{min(answers):.1f} s" if answers else "never"
        bound += (f" **Fairness: not met.** During the flood {waited}; the first answer to one "
                  f"came at {first} after the flood began, and the server was busy with the "
                  f"flood connections until {busy_until:.1f} s. A connection task serves "
                  f"pipelined requests back to back, without yielding to other tasks, for as "
                  f"long as its socket has requests to read and room to send.")
    print("\n".join(f"{a}: {b}" for a, b in rows))
    print("RSS samples (s, MiB): " + ", ".join(f"{t:.1f}:{mib(r)}" for t, r in samples[::4]))
    print("probes (started at s: ms): " + prober.timeline())
    for line in problems[:20]:
        print("server log:", line)
    print(bound)
    if args.quick:
        return
    write_section("Hardening: pipelining flood", f"""
{header("flood", args, load_before)}
- Method: `corofw run apps.hello:routes --no-access-log` (defaults otherwise: `--send-timeout 30`) pinned to CPU {SERVER_CPU}; a Python client process on CPU {LOAD_CPU} opens {conns} connections with a {rcvbuf:,}-byte receive buffer and writes pipelined `GET / HTTP/1.1` requests on each as fast as the server takes them for {seconds:g} s, never reading. Meanwhile the benchmark reads the server's RSS every 0.25 s and, every 0.5 s, starts a fresh connection for one `GET /` (each in its own thread, timeout 30 s). After the {seconds:g} s it waits until the server's CPU time stops growing, then reads the server's state and the kernel's queues of its sockets.

{table}

Fresh-client probes (start, in s after the flood began: latency): {prober.timeline()}.

{bound}
""")


class Prober:
    """Every ``interval`` s until stopped, a thread does one ``GET /`` on a
    fresh connection (timeout ``timeout`` s) and records its latency."""

    def __init__(self, port: int, started: float, interval: float = 0.5,
                 timeout: float = 30.0) -> None:
        self.port = port
        self.started = started
        self.timeout = timeout
        self.results: list[tuple[float, float]] = []
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ticker = threading.Thread(target=self._tick, args=(interval,), daemon=True)
        self._ticker.start()

    def _tick(self, interval: float) -> None:
        while not self._done.wait(interval) and len(self._threads) < 200:
            thread = threading.Thread(target=self._probe, daemon=True)
            self._threads.append(thread)
            thread.start()

    def _probe(self) -> None:
        at = time.monotonic() - self.started
        self.results.append((at, probe(self.port, self.timeout)))

    def running(self) -> bool:
        return not self._done.is_set()

    def stop(self) -> None:
        self._done.set()
        self._ticker.join()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.results.sort()

    def answered(self) -> list[float]:
        return [ms for _, ms in self.results if ms != float("inf")]

    def failed(self) -> int:
        return len(self.results) - len(self.answered())

    def worst(self) -> float:
        return max((ms for _, ms in self.results), default=0.0)

    def summary(self) -> str:
        ok = self.answered()
        return (f"{len(self.results)} probes: {len(ok)} answered, median {_ms(ok, statistics.median)}"
                f" ms, max {_ms(ok, max)} ms; {self.failed()} not answered within "
                f"{self.timeout:g} s")

    def timeline(self) -> str:
        return ", ".join(f"{at:.1f}: {'—' if ms == float('inf') else f'{ms:,.0f} ms'}"
                         for at, ms in self.results)


def wait_until_idle(pid: int, started: float, limit: float = 90.0) -> float:
    """Wait until ``pid`` uses < 5 % of a CPU over 0.5 s (at most ``limit``
    s); return when that began, in seconds after ``started``."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / tick

    deadline = time.monotonic() + limit
    last = cpu()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu()
        if now - last < 0.025:
            return time.monotonic() - 0.5 - started
        last = now
    return time.monotonic() - started


def _sample_rss(pid: int, started: float, samples: list[tuple[float, int]],
                done: threading.Event) -> None:
    while not done.wait(0.25):
        samples.append((time.monotonic() - started, rss(pid)))


def _s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f}"


def _ms(values: list[float], fn) -> str:
    return f"{fn(values):,.1f}" if values else "—"


def _ceil_mib(n: int) -> int:
    return -(-n // MiB)


# -- slowreader: large responses nobody reads -------------------------------------------


def bench_slowreader(args: argparse.Namespace) -> None:
    conns = 50 if args.quick else args.connections
    send_timeout = args.send_timeout
    rcvbuf = args.rcvbuf
    load_before = load_average()
    pin_self(LOAD_CPU)
    raise_fd_limit()
    port = free_port()
    command = corofw("benchmarks.peers.big_app:routes", port, "--send-timeout", f"{send_timeout:g}")
    with Proc("corofw", command, port, SERVER_CPU) as server:
        with socket.create_connection(("127.0.0.1", port)) as sock:  # warm up /big once
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: bench\r\n\r\n")
            status, body, _ = read_response(sock)
            assert status == 200 and len(body) == 4 * MiB, (status, len(body))
        for _ in range(50):
            probe(port)
        base_rss, base_fds = rss(server.pid), open_fds(server.pid)
        clients = []
        try:
            for _ in range(conns):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /big HTTP/1.1\r\nHost: bench\r\n\r\n")
                clients.append(sock)
            sent_at = time.monotonic()
            prober = Prober(port, sent_at)
            client_ports = {sock.getsockname()[1] for sock in clients}
            timeline = []
            during_fds = during_rss = 0
            first_closed = all_closed = None
            while time.monotonic() - sent_at < send_timeout + 20:
                time.sleep(0.25)
                elapsed = time.monotonic() - sent_at
                fds, stuck = open_fds(server.pid), still_open(port, client_ports)
                timeline.append((elapsed, fds, stuck))
                if prober.running() and elapsed >= send_timeout - 1:
                    prober.stop()
                if first_closed is None:
                    during_fds, during_rss = max(during_fds, fds), max(during_rss, rss(server.pid))
                    if stuck < conns:
                        first_closed = elapsed
                if stuck == 0:
                    all_closed = elapsed
                    break
            prober.stop()
            peak = peak_rss(server.pid)
            after_fds, after_rss = open_fds(server.pid), rss(server.pid)
            after = probe(port)
            eof = _count_closed(clients)
        finally:
            for sock in clients:
                sock.close()
        problems = server.problems()
    rows = [
        ("slow readers", f"{conns} connections send `GET /big` (4 MiB) and never read "
                         f"(client `SO_RCVBUF` {rcvbuf:,} bytes); server `--send-timeout {send_timeout:g}`"),
        ("server open fds before / during / after", f"{base_fds} / {during_fds} / {after_fds}"),
        ("stuck connections closed (s after the requests were sent): first / last",
         f"{_s(first_closed)} / {_s(all_closed)}"),
        ("client connections that then saw the server's close", f"{eof} of {conns}"),
        ("server RSS before / highest sampled / peak (VmHWM) / after",
         f"{mib(base_rss)} / {mib(during_rss)} / **{mib(peak)}** / {mib(after_rss)} MiB"),
        (f"fresh-client `GET /` while they were stuck (first {send_timeout - 1:g} s)",
         prober.summary()),
        ("fresh `GET /` afterwards", f"{after:.1f} ms"),
        ("errors in the server's log", f"{len(problems)}"),
    ]
    closed_all = all_closed is not None and eof == conns
    verdict = (f"Every stuck connection was closed: the first {_s(first_closed)} s, the last "
               f"{_s(all_closed)} s after the requests, i.e. {send_timeout:g} s after each one's "
               f"send stopped making progress (the server takes a moment to fill {conns} send "
               f"buffers of up to 4 MiB each, one connection after another)."
               if closed_all else
               f"**Not every stuck connection was closed** within {send_timeout + 20:g} s "
               f"({eof} of {conns} saw the close).")
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print("\n".join(f"{a}: {b}" for a, b in rows))
    print("open fds, stuck connections (s: fds, stuck): "
          + ", ".join(f"{t:.1f}: {n}, {k}" for t, n, k in timeline[::2]))
    print("probes (started at s: ms): " + prober.timeline())
    print(verdict)
    for line in problems[:20]:
        print("server log:", line)
    if args.quick:
        return
    write_section("Hardening: slow readers", f"""
{header("slowreader", args, load_before)}
- Method: `corofw run benchmarks.peers.big_app:routes --send-timeout {send_timeout:g} --no-access-log` pinned to CPU {SERVER_CPU}; `GET /big` answers 4 MiB built once at import. A Python client on CPU {LOAD_CPU} opens {conns} connections with a {rcvbuf:,}-byte receive buffer, each sends `GET /big` and never reads; the benchmark then counts every 0.25 s the server's open fds (`/proc/PID/fd`) and which of the stuck connections it still holds (`/proc/net/tcp`) and, every 0.5 s for the first {send_timeout - 1:g} s, starts a fresh connection for one `GET /` (each in its own thread, timeout 30 s).

{table}

Fresh-client probes (start, in s after the requests: latency): {prober.timeline()}.

Peak RSS stayed under **{_ceil_mib(peak)} MiB** with {conns} × 4 MiB responses stuck: the body is sent from the app's buffer without a copy, and what the client does not take waits in the kernel. {verdict}
""")


def _count_closed(clients: list[socket.socket], limit: float = 15.0) -> int:
    """Drain what the server sent each client; count those that then see
    the server's close (EOF or reset) within ``limit`` seconds in all."""
    deadline = time.monotonic() + limit
    closed = 0
    for sock in clients:
        try:
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                if not sock.recv(1 << 20):
                    closed += 1
                    break
        except TimeoutError:
            continue
        except OSError:
            closed += 1  # reset: closed too
    return closed


# -- soak: a million requests of a mix --------------------------------------------------


def _bad_cases() -> list[tuple[str, bytes, tuple[int, ...]]]:
    """(name, bytes, acceptable statuses) of malformed requests."""
    return [
        ("bad request line", b"GET / HTTP/1.1 extra\r\nHost: bench\r\n\r\n", (400,)),
        ("not HTTP", b"HELLO\r\n\r\n", (400,)),
        ("bare LF line ends", b"GET / HTTP/1.1\nHost: bench\n\n", (400,)),
        ("CL + TE", b"POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: 5\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400,)),
        ("bad chunk size", b"POST /echo HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked"
                           b"\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", (400,)),
        ("Content-Length +5", b"POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: +5"
                              b"\r\n\r\nhello", (400,)),
        ("oversized headers", b"GET / HTTP/1.1\r\nHost: bench\r\nX-Big: " + b"a" * 40000
                              + b"\r\n\r\n", (431,)),
        ("request line too long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: bench\r\n\r\n",
         (414,)),
        ("body too large", b"POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: 2000000"
                           b"\r\n\r\n", (413,)),
    ]


class SideLoop(threading.Thread):
    """Malformed requests (each must get a 4xx and a closed connection) and
    valid echo checks, one per fresh connection, paced and bounded."""

    def __init__(self, port: int, interval: float, limit: int) -> None:
        super().__init__(name="side loop", daemon=True)
        self.port = port
        self.interval = interval
        self.limit = limit
        self.stop = threading.Event()
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []
        self.echo_ok = 0
        self.sent = 0

    def run(self) -> None:
        cases = _bad_cases()
        rng = random.Random(7)
        while not self.stop.is_set() and self.sent < self.limit:
            name, data, wanted = cases[self.sent % len(cases)]
            self.sent += 1
            try:
                if self.sent % 5 == 0:
                    self._echo(rng)
                else:
                    self._malformed(name, data, wanted)
            except Exception as exc:
                self._fail(f"{name if self.sent % 5 else 'echo'}: {type(exc).__name__}: {exc}")
            self.stop.wait(self.interval)

    def _fail(self, text: str) -> None:
        if len(self.failures) < 1000:
            self.failures.append(text)
        else:
            self.failures[-1] = f"... {text}"

    def _malformed(self, name: str, data: bytes, wanted: tuple[int, ...]) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before the whole of it was sent: the answer is what counts
            received = b""
            while True:
                try:
                    more = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not more:
                    break
                received += more
        match = re.match(rb"HTTP/1\.[01] (\d{3}) ", received)
        status = int(match.group(1)) if match else 0
        if status in wanted:
            self.counts[name] = self.counts.get(name, 0) + 1
        else:
            self._fail(f"{name}: got {received[:60]!r}, wanted {wanted}")

    def _echo(self, rng: random.Random) -> None:
        body = rng.randbytes(rng.randint(0, 16384))
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n"
                         % len(body) + body)
            status, echoed, _ = read_response(sock)
        if status == 200 and echoed == body:
            self.echo_ok += 1
        else:
            self._fail(f"echo of {len(body)} bytes: status {status}, {len(echoed)} bytes back")


def wrk_script(url: str, connections: int, seconds: float, script: str,
               script_args: list[str]) -> dict:
    command = pinned(LOAD_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
                                "--timeout=10s", "--latency", "-s", script, url, "--",
                                *script_args])
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True,
                         preexec_fn=raise_fd_limit).stdout
    result: dict = {"errors": {}, "non2xx": 0, "out": out}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(line.split()[1])
        elif "requests in" in line:
            result["requests"] = int(line.split()[0])
        elif line.startswith("Socket errors:"):
            result["errors"] = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", line)}
        elif line.startswith("Non-2xx"):
            result["non2xx"] = int(line.split()[-1])
        elif re.match(r"^99%\s", line):
            result["p99"] = line.split()[1]
    if "requests" not in result:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    return result


def bench_soak(args: argparse.Namespace) -> None:
    target = 50_000 if args.quick else args.requests
    limit_s = 120.0 if args.quick else args.minutes * 60
    slice_s = 10.0 if args.quick else args.slice
    conns = args.wrk_connections
    mix = args.mix.split(",")
    load_before = load_average()
    pin_self(LOAD_CPU)
    backend_port, port = free_port(), free_port()
    backend_cmd = corofw("apps.backend:routes", backend_port, "--max-connections", "19000",
                         "--backlog", "4096")
    env = {"BACKEND_URL": f"http://127.0.0.1:{backend_port}"}
    started = time.monotonic()
    slices = []
    with Proc("backend", backend_cmd, backend_port, LOAD_CPU, env), \
            Proc("corofw", corofw("benchmarks.peers.soak_app:routes", port, "--backlog", "4096"),
                 port, SERVER_CPU, env) as server:
        url = f"http://127.0.0.1:{port}"
        warm = wrk_script(url, conns, 5 if args.quick else 15, "benchmarks/soak.lua", [*mix, "1"])
        time.sleep(1.0)
        warm_rss, warm_fds = rss(server.pid), open_fds(server.pid)
        warm_pool = outbound_connections(backend_port)
        print(f"warm-up: {warm['requests']:,} requests, {warm['rps']:,.0f} req/s; RSS "
              f"{mib(warm_rss)} MiB, {warm_fds} fds ({warm_pool} to the backend)", flush=True)
        side = SideLoop(port, args.side_interval, args.side_limit)
        side.start()
        total = warm["requests"]
        seed = 2
        try:
            while total < target and time.monotonic() - started < limit_s:
                seconds = min(slice_s, max(limit_s - (time.monotonic() - started), 1.0))
                result = wrk_script(url, conns, seconds, "benchmarks/soak.lua", [*mix, str(seed)])
                seed += 1
                time.sleep(1.0)
                result["rss"], result["fds"] = rss(server.pid), open_fds(server.pid)
                result["pool"] = outbound_connections(backend_port)
                result["at"] = time.monotonic() - started
                total += result["requests"]
                slices.append(result)
                errors = sum(result["errors"].values())
                print(f"{result['at']:6.0f} s: {result['requests']:>9,} requests "
                      f"({result['rps']:7,.0f}/s, p99 {result.get('p99', '?')}), errors {errors}, "
                      f"non-2xx {result['non2xx']}; total {total:,}; RSS {mib(result['rss'])} MiB,"
                      f" {result['fds']} fds ({result['pool']} to the backend); side loop {side.sent:,} sent, "
                      f"{len(side.failures)} failed", flush=True)
        finally:
            side.stop.set()
            side.join(30)
        time.sleep(1.0)
        end_rss, end_fds, peak = rss(server.pid), open_fds(server.pid), peak_rss(server.pid)
        end_pool = outbound_connections(backend_port)
        problems = server.problems()
        served = total + sum(side.counts.values()) + side.echo_ok
    elapsed = time.monotonic() - started
    socket_errors = {k: sum(s["errors"].get(k, 0) for s in slices + [warm])
                     for k in ("connect", "read", "write", "timeout")}
    non2xx = sum(s["non2xx"] for s in slices + [warm])
    malformed = sum(side.counts.values())
    verdict = "**pass**" if (total >= target and not any(socket_errors.values()) and not non2xx
                             and not side.failures and not problems) else "**FAIL**"
    lines = ["| after (s) | requests | req/s | p99 | socket errors | non-2xx | RSS (MiB) | open fds | of which pooled to the backend | fds − pooled |",
             "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
             f"| warm-up | {warm['requests']:,} | {warm['rps']:,.0f} | {warm.get('p99', '?')} | "
             f"{sum(warm['errors'].values())} | {warm['non2xx']} | {mib(warm_rss)} | {warm_fds} | "
             f"{warm_pool} | {warm_fds - warm_pool} |"]
    for s in slices:
        lines.append(f"| {s['at']:.0f} | {s['requests']:,} | {s['rps']:,.0f} | {s.get('p99', '?')} | "
                     f"{sum(s['errors'].values())} | {s['non2xx']} | {mib(s['rss'])} | {s['fds']} | "
                     f"{s['pool']} | {s['fds'] - s['pool']} |")
    table = "\n".join(lines)
    bad_lines = ", ".join(f"{name} {n:,}" for name, n in side.counts.items())
    summary = "\n".join([
        f"- Valid mix: **{total:,} requests** in {elapsed / 60:.1f} min; wrk socket errors: "
        f"{', '.join(f'{k} {v}' for k, v in socket_errors.items())}; non-2xx: {non2xx}.",
        f"- Malformed requests answered 4xx with the connection closed: **{malformed:,}** "
        f"({bad_lines}); wrong answers: {len(side.failures)}. Valid `POST /echo` checks on "
        f"fresh connections (body compared byte for byte): {side.echo_ok:,}.",
        f"- Server RSS after warm-up / at the end / peak: **{mib(warm_rss)} / {mib(end_rss)}** / "
        f"{mib(peak)} MiB; open fds after warm-up / at the end: **{warm_fds} / {end_fds}**, of "
        f"which idle connections kept in the fan-out client's pool to the backend: {warm_pool} / "
        f"{end_pool} (the pool keeps up to as many as were ever in use at once and closes one "
        f"only when it is next checked out), so fds − pooled: **{warm_fds - warm_pool} / "
        f"{end_fds - end_pool}**.",
        f"- Requests the server answered in all: {served:,}. Errors in the server's log: "
        f"{len(problems)}. Result: {verdict}.",
    ])
    print("\n" + table + "\n\n" + summary)
    for line in side.failures[:20]:
        print("side loop:", line)
    for line in problems[:20]:
        print("server log:", line)
    if args.quick:
        return
    write_section("Hardening: soak", f"""
{header("soak", args, load_before)}
- Method: one `corofw run benchmarks.peers.soak_app:routes --backlog 4096 --no-access-log` process pinned to CPU {SERVER_CPU} (hello's routes plus the fan-out routes); `apps.backend` as the fan-out's backend, wrk and the benchmark's side loop on CPU {LOAD_CPU}. wrk (`-t1 -c{conns} --timeout=10s -s benchmarks/soak.lua`, slices of {slice_s:g} s until {target:,} requests or {limit_s / 60:g} min) sends the valid mix {mix[0]} % `GET /`, {mix[1]} % `POST /echo` with a random body of 0–16 KiB, {mix[2]} % `GET /fanout?delay=0.01` (ten backend calls of 10 ms each). The side loop, every {args.side_interval * 1000:g} ms on a fresh connection, sends one malformed request (bad request line, not HTTP, bare LF, CL + TE, bad chunk size, `Content-Length: +5`, 40 KB header, 9 KB request line, 2 MB body) and expects a 4xx and a closed connection, or (every fifth) a valid `POST /echo` whose answer it compares. RSS and open fds are read 1 s after each slice.

{table}

{summary}
""")


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small and short; prints only")
    parser.add_argument("--no-wait", action="store_true",
                        help="do not wait for other benchmarks to finish first")
    common = argparse.ArgumentParser(add_help=False)  # the same options after the subcommand
    common.add_argument("--quick", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("--no-wait", action="store_true", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("all", help="all four (the default)", parents=[common])
    p = sub.add_parser("idle", help="RSS per idle keep-alive connection", parents=[common])
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=3)
    p = sub.add_parser("flood", help="pipelining clients that never read",
                       parents=[common])
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--megabytes", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rcvbuf", type=int, default=65536)
    p = sub.add_parser("slowreader", help="large responses nobody reads",
                       parents=[common])
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--send-timeout", type=float, default=5.0)
    p.add_argument("--rcvbuf", type=int, default=16384)
    p = sub.add_parser("soak", help="1,000,000 requests of a mix against one process",
                       parents=[common])
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--slice", type=float, default=60.0)
    p.add_argument("--wrk-connections", type=int, default=64)
    p.add_argument("--mix", default="60,30,10", help="percent hello,echo,fanout")
    p.add_argument("--side-interval", type=float, default=0.02)
    p.add_argument("--side-limit", type=int, default=50_000)
    args = parser.parse_args()
    command = args.command or "all"
    if not shutil.which("wrk") and command in ("all", "soak"):
        raise SystemExit("wrk is not installed (make bench-hardening installs it)")
    if not args.no_wait:
        wait_until_quiet()
    atexit.register(shutil.rmtree, LOG_DIR, ignore_errors=True)  # the servers' logs
    steps = {"idle": bench_idle, "flood": bench_flood, "slowreader": bench_slowreader,
             "soak": bench_soak}
    if command == "all":
        defaults = {name: parser.parse_args([name]) for name in steps}
        for name, step in steps.items():
            step_args = defaults[name]
            step_args.quick, step_args.all = args.quick, True
            print(f"== {name}", flush=True)
            step(step_args)
    else:
        args.all = False
        steps[command](args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

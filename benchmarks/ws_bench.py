"""WebSocket echo, idle-WebSocket memory and SSE broadcast latency: corofw
against the ``websockets`` package's asyncio server, aiohttp and uvicorn.

Each server is one process pinned to CPU 0; this process, the load
generator, pins itself to CPU 1. The generator is written for speed: raw
non-blocking sockets on one epoll, pre-built masked frames, a window of
messages in flight per connection, byte counting instead of frame parsing
(every reply to a 64-byte text message is a 66-byte frame; the first reply
on each connection is compared byte for byte). The server's CPU share
during the measured seconds shows that the server, not the generator, is
the limit::

    python benchmarks/ws_bench.py                 # all three parts, 3 rounds, updates RESULTS.md
    python benchmarks/ws_bench.py --quick         # 1 round, short runs, prints only
    python benchmarks/ws_bench.py --parts echo,memory --only corofw,aiohttp
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import tempfile
import time
from collections import defaultdict
from pathlib import Path

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
    raise_fd_limit,
    stop_on_sigterm,
    write_section,
)

SERVER_CPU, LOAD_CPU = 0, 1
PAYLOAD = b"x" * 64
MASK = b"\x1f\x2e\x3d\x4c"
FRAME = bytes([0x81, 0x80 | len(PAYLOAD)]) + MASK + bytes(
    b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))
REPLY = bytes([0x81, len(PAYLOAD)]) + PAYLOAD
HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")
SUBSCRIBE = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
CONNECTIONS = 1000
IDLE_LEVELS = (1000, 10000)
SSE_SUBSCRIBERS = 10000


def commands(port: int) -> dict[str, list[str]]:
    return {
        "corofw": [PYTHON, "-m", "corofw", "run", "benchmarks.peers.corofw_ws:routes",
                   "--port", str(port), "--no-access-log", "--log-level", "warning",
                   "--max-connections", "30000", "--backlog", "4096"],
        "websockets": [PYTHON, "benchmarks/peers/websockets_echo.py", str(port)],
        "aiohttp": [PYTHON, "benchmarks/peers/aiohttp_ws.py", str(port)],
        "uvicorn": [PYTHON, "-m", "uvicorn", "benchmarks.peers.asgi_ws:app", "--port", str(port),
                    "--ws", "websockets", "--loop", "uvloop", "--http", "httptools",
                    "--no-access-log", "--log-level", "warning", "--backlog", "4096"],
    }


def logged(name: str, command: list[str]) -> list[str]:
    """``command`` with its stderr written to a file (a pipe nobody reads
    could fill and block the server), which :func:`watchdog_warnings` reads."""
    return ["sh", "-c", 'exec "$@" 2>"$0"', server_log(name), *command]


def server_log(name: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"ws-bench-{name}.log")


def watchdog_warnings(name: str) -> int:
    """How many times corofw's watchdog said a task held the loop over 100 ms."""
    with open(server_log(name), encoding="utf-8", errors="replace") as file:
        return sum(1 for line in file if "event loop is blocked" in line)


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def open_many(port: int, request: bytes, count: int, status: bytes,
              in_flight: int = 128, timeout: float = 120.0) -> list[tuple[socket.socket, bytes]]:
    """Open ``count`` connections, send ``request`` on each and read the
    response head (which must start with ``status``); at most ``in_flight``
    handshakes at a time. Returns each socket with the bytes that followed
    its head."""
    poller = select.epoll()
    pending: dict[int, tuple[socket.socket, bytearray]] = {}
    done: list[tuple[socket.socket, bytes]] = []
    started = 0
    deadline = time.monotonic() + timeout
    try:
        while len(done) < count:
            while started < count and len(pending) < in_flight:
                sock = socket.socket()
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect_ex(("127.0.0.1", port))
                pending[sock.fileno()] = (sock, bytearray())
                poller.register(sock.fileno(), select.EPOLLOUT)
                started += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(done)} of {count} connections opened in {timeout:g} s")
            for fd, mask in poller.poll(1.0):
                sock, buffer = pending[fd]
                if mask & select.EPOLLOUT:
                    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        raise OSError(error, f"connect failed after {len(done)} connections: "
                                             f"{os.strerror(error)}")
                    sock.sendall(request)  # small: fits an empty send buffer
                    poller.modify(fd, select.EPOLLIN)
                    continue
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError(f"connection closed in its handshake after {len(done)}")
                buffer += data
                head, sep, rest = bytes(buffer).partition(b"\r\n\r\n")
                if sep:
                    if not head.startswith(status):
                        raise RuntimeError(f"unexpected answer: {head[:200]!r}")
                    poller.unregister(fd)
                    del pending[fd]
                    done.append((sock, rest))
    except BaseException:
        for sock, _ in [*pending.values(), *done]:
            sock.close()
        raise
    finally:
        poller.close()
    return done


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# --- part 1: echo throughput ---------------------------------------------------------------


def echo_load(socks: list[socket.socket], window: int, warmup: float, seconds: float,
              server_pid: int) -> dict[str, float]:
    """Keep ``window`` messages in flight on every connection; count the
    replies during ``seconds`` after ``warmup``."""
    poller = select.epoll()
    by_fd = {sock.fileno(): sock for sock in socks}
    leftover = dict.fromkeys(by_fd, 0)
    unchecked = set(by_fd)
    burst = FRAME * window
    for fd, sock in by_fd.items():
        sock.setblocking(False)
        poller.register(fd, select.EPOLLIN)
        if sock.send(burst) != len(burst):
            raise RuntimeError("the first window did not fit the send buffer")
    replies = reads = 0
    mark = (0, 0.0, 0.0, 0.0, 0)
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    measuring = False
    try:
        while True:
            now = time.monotonic()
            if not measuring and now >= measure_from:
                measuring = True
                mark = (replies, now, proc_stats(server_pid)[0], time.process_time(), reads)
            if now >= stop_at:
                break
            for fd, _ in poller.poll(0.05):
                data = by_fd[fd].recv(262144)
                reads += 1
                if not data:
                    raise RuntimeError(f"server closed a connection after {replies} replies")
                if fd in unchecked and len(data) >= len(REPLY):
                    if data[:len(REPLY)] != REPLY:
                        raise RuntimeError(f"wrong echo: {data[:80]!r}")
                    unchecked.discard(fd)
                got, leftover[fd] = divmod(leftover[fd] + len(data), len(REPLY))
                if got:
                    replies += got
                    frames = FRAME * got
                    if by_fd[fd].send(frames) != len(frames):
                        raise RuntimeError("send buffer full: the server stopped reading")
        end = time.monotonic()
        server_cpu = proc_stats(server_pid)[0] - mark[2]
        load_cpu = time.process_time() - mark[3]
    finally:
        poller.close()
    elapsed = end - mark[1]
    return {"mps": (replies - mark[0]) / elapsed, "server_cpu": server_cpu / elapsed,
            "load_cpu": load_cpu / elapsed, "unchecked": float(len(unchecked)),
            "per_read": (replies - mark[0]) / max(reads - mark[4], 1)}


def run_echo(names: list[str], rounds: int, window: int, warmup: float,
             seconds: float) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = defaultdict(list)
    for round_no in range(rounds):
        for name in names:
            port = free_port()
            with Service(name, logged(name, commands(port)[name]), port, SERVER_CPU) as service:
                conns = open_many(port, HANDSHAKE, CONNECTIONS, b"HTTP/1.1 101")
                try:
                    if any(rest for _, rest in conns):
                        raise RuntimeError("bytes after the 101 before any message")
                    result = echo_load([s for s, _ in conns], window, warmup, seconds,
                                       service.pid)
                finally:
                    close_all([s for s, _ in conns])
            result["stalls"] = float(watchdog_warnings(name))
            results[name].append(result)
            print(f"echo round {round_no + 1}: {name:11} {result['mps']:10,.0f} msg/s  "
                  f"server CPU {result['server_cpu']:.0%}  load CPU {result['load_cpu']:.0%}  "
                  f"{result['per_read']:.1f} replies/read  {result['stalls']:.0f} loop stalls over 100 ms",
                  flush=True)
    return results


# --- part 2: memory per idle WebSocket -----------------------------------------------------


def still_open(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the server has not closed (nothing to read, or
    data but no end of file)."""
    poller = select.epoll()
    try:
        for sock in socks:
            sock.setblocking(False)
            poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        closed = sum(1 for _, mask in poller.poll(0) if mask & (select.EPOLLRDHUP | select.EPOLLHUP))
    finally:
        poller.close()
    return len(socks) - closed


def run_memory(names: list[str], rounds: int, idle: float) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = defaultdict(list)
    for round_no in range(rounds):
        for name in names:
            port = free_port()
            result: dict[str, float] = {}
            with Service(name, logged(name, commands(port)[name]), port, SERVER_CPU) as service:
                warm = open_many(port, HANDSHAKE, 10, b"HTTP/1.1 101")
                for sock, _ in warm:
                    sock.setblocking(True)
                    sock.settimeout(10)
                    sock.sendall(FRAME)
                    if sock.recv(1024) != REPLY:
                        raise RuntimeError(f"{name}: wrong echo")
                close_all([s for s, _ in warm])
                time.sleep(1.0)
                base = vm_rss(service.pid)
                result["base"] = base
                opened: list[socket.socket] = []
                try:
                    for level in IDLE_LEVELS:
                        try:
                            more = open_many(port, HANDSHAKE, level - len(opened), b"HTTP/1.1 101")
                        except (OSError, RuntimeError) as error:
                            result[f"error{level}"] = 1.0
                            print(f"memory: {name} could not hold {level:,}: {error}", flush=True)
                            break
                        opened.extend(s for s, _ in more)
                        time.sleep(1.0)
                        rss = vm_rss(service.pid)
                        result[f"rss{level}"] = rss
                        result[f"per{level}"] = (rss - base) / level
                    if f"rss{IDLE_LEVELS[-1]}" in result:
                        samples = []
                        for _ in range(int(idle / 0.5)):
                            time.sleep(0.5)
                            samples.append(vm_rss(service.pid))
                        result["idle_min"], result["idle_max"] = min(samples), max(samples)
                        result["idle_drift"] = samples[-1] - samples[0]
                        result["open_after"] = still_open(opened)
                finally:
                    close_all(opened)
            results[name].append(result)
            print(f"memory round {round_no + 1}: {name:11} base {base / 2**20:.1f} MiB  " + "  ".join(
                f"{level:,}: {result[f'per{level}'] / 1024:.1f} KiB/WS" for level in IDLE_LEVELS
                if f"per{level}" in result) + (
                f"  idle {idle:g} s: {result['idle_min'] / 2**20:.1f}-{result['idle_max'] / 2**20:.1f} MiB, "
                f"{result['open_after']:.0f} still open" if "idle_min" in result else ""), flush=True)
    return results


# --- part 3: SSE broadcast latency ---------------------------------------------------------


def broadcast_once(port: int, socks: list[socket.socket], tag: bytes,
                   timeout: float = 60.0) -> list[float]:
    """POST a broadcast of ``tag`` and return each subscriber's delivery
    latency in ms (its receive time minus the time just before the POST)."""
    poller = select.epoll()
    by_fd = {sock.fileno(): sock for sock in socks}
    tails = dict.fromkeys(by_fd, b"")
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    needle = b"data: " + tag
    latencies: list[float] = []
    poster = socket.create_connection(("127.0.0.1", port))
    try:
        sent = time.monotonic()
        poster.sendall(b"POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                       + str(len(tag)).encode() + b"\r\n\r\n" + tag)
        deadline = sent + timeout
        while len(latencies) < len(socks):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(latencies)} of {len(socks)} got the event")
            for fd, _ in poller.poll(0.5):
                data = by_fd[fd].recv(65536)
                received = time.monotonic()
                if not data:
                    raise RuntimeError("the server closed a subscriber")
                tail = tails[fd] + data
                if needle in tail:
                    latencies.append((received - sent) * 1e3)
                    poller.unregister(fd)
                else:
                    tails[fd] = tail[-64:]
        poster.settimeout(10)
        if not poster.recv(4096).startswith(b"HTTP/1.1 200"):
            raise RuntimeError("the broadcast was not answered 200")
    finally:
        poster.close()
        poller.close()
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_sse(names: list[str], rounds: int, subscribers: int) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = defaultdict(list)
    for name in names:
        port = free_port()
        with Service(name, logged(name, commands(port)[name]), port, SERVER_CPU):
            subs = open_many(port, SUBSCRIBE, subscribers, b"HTTP/1.1 200")
            try:
                for sock, rest in subs:  # wait for each one's first comment
                    sock.setblocking(True)
                    sock.settimeout(10)
                    while b"subscribed" not in rest:
                        rest += sock.recv(4096)
                    sock.setblocking(False)
                time.sleep(1.0)
                for round_no in range(rounds):
                    latencies = broadcast_once(port, [s for s, _ in subs], b"round-%d" % round_no)
                    result = {"p50": percentile(latencies, 0.50), "p99": percentile(latencies, 0.99),
                              "max": max(latencies), "count": float(len(latencies))}
                    results[name].append(result)
                    print(f"sse round {round_no + 1}: {name:8} {len(latencies):,} subscribers  "
                          f"p50 {result['p50']:7.1f} ms  p99 {result['p99']:7.1f} ms  "
                          f"max {result['max']:7.1f} ms", flush=True)
                    time.sleep(1.0)
            finally:
                close_all([s for s, _ in subs])
    return results


# --- report --------------------------------------------------------------------------------


def echo_table(results: dict[str, list[dict]]) -> str:
    lines = ["| server | messages/s | server CPU (of its core) | load generator CPU "
             "| replies per read | loop stalls over 100 ms | corofw ÷ server |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    base = median([r["mps"] for r in results["corofw"]]) if "corofw" in results else None
    for name, runs in results.items():
        mps = median([r["mps"] for r in runs])
        ratio = f"{base / mps:.2f}×" if base and name != "corofw" else "—"
        stalls = ", ".join(f"{r['stalls']:.0f}" for r in runs) if name == "corofw" else "—"
        lines.append(f"| {name} | {mps:,.0f} | {median([r['server_cpu'] for r in runs]):.0%} "
                     f"| {median([r['load_cpu'] for r in runs]):.0%} "
                     f"| {median([r['per_read'] for r in runs]):.1f} "
                     f"| {stalls} | {ratio} |")
    return "\n".join(lines)


def memory_table(results: dict[str, list[dict]], idle: float) -> str:
    lines = ["| server | RSS before | RSS at 1,000 | bytes/WS at 1,000 | RSS at 10,000 "
             f"| bytes/WS at 10,000 | RSS over {idle:g} s idle at 10,000 (min–max) | still open |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]

    def mib(runs: list[dict], key: str) -> str:
        values = [r[key] for r in runs if key in r]
        return f"{median(values) / 2**20:.1f} MiB" if values else "n/a"

    def per(runs: list[dict], key: str) -> str:
        values = [r[key] for r in runs if key in r]
        return f"{median(values):,.0f}" if values else "n/a"

    for name, runs in results.items():
        idle_runs = [r for r in runs if "idle_min" in r]
        spread = (f"{median([r['idle_min'] for r in idle_runs]) / 2**20:.1f}–"
                  f"{median([r['idle_max'] for r in idle_runs]) / 2**20:.1f} MiB") if idle_runs else "n/a"
        still = f"{median([r['open_after'] for r in idle_runs]):,.0f}" if idle_runs else "n/a"
        lines.append(f"| {name} | {mib(runs, 'base')} | {mib(runs, 'rss1000')} | {per(runs, 'per1000')} "
                     f"| {mib(runs, 'rss10000')} | {per(runs, 'per10000')} | {spread} | {still} |")
    return "\n".join(lines)


def sse_table(results: dict[str, list[dict]]) -> str:
    lines = ["| server | subscribers | p50 (ms) | p99 (ms) | max (ms) |", "|---|--:|--:|--:|--:|"]
    for name, runs in results.items():
        lines.append(f"| {name} | {runs[0]['count']:,.0f} | {median([r['p50'] for r in runs]):.1f} "
                     f"| {median([r['p99'] for r in runs]):.1f} | {median([r['max'] for r in runs]):.1f} |")
    return "\n".join(lines)


def targets(echo: dict, memory: dict, sse: dict) -> str:
    lines = ["| target | measured | result |", "|---|---|---|"]
    if "corofw" in echo and len(echo) > 1:
        best_name, best = max(((n, median([r["mps"] for r in runs])) for n, runs in echo.items()
                               if n != "corofw"), key=lambda item: item[1])
        ratio = median([r["mps"] for r in echo["corofw"]]) / best
        lines.append(f"| WS echo ≥ 2× the best peer | {ratio:.2f}× {best_name} "
                     f"| {'**pass**' if ratio >= 2 else '**FAIL**'} |")
    for level in IDLE_LEVELS:
        key = f"per{level}"
        peers = [(n, median([r[key] for r in runs])) for n, runs in memory.items()
                 if n != "corofw" and all(key in r for r in runs)]
        if "corofw" in memory and peers and all(key in r for r in memory["corofw"]):
            best_name, best = min(peers, key=lambda item: item[1])
            mine = median([r[key] for r in memory["corofw"]])
            lines.append(f"| bytes per idle WS ≤ ½ the best peer, at {level:,} "
                         f"| {mine:,.0f} vs {best:,.0f} ({best_name}): {mine / best:.2f}× "
                         f"| {'**pass**' if mine <= best / 2 else '**FAIL**'} |")
    if "corofw" in memory:
        runs = [r for r in memory["corofw"] if "idle_min" in r]
        if runs:
            drift = median([r["idle_max"] - r["idle_min"] for r in runs])
            rss = median([r["rss10000"] for r in runs])
            still = min(r["open_after"] for r in runs)
            flat = drift <= 0.01 * rss and still == IDLE_LEVELS[-1]
            lines.append(f"| 10,000 idle WebSockets held, RSS flat | {still:,.0f} open, RSS range "
                         f"{drift / 1024:,.0f} KiB of {rss / 2**20:.1f} MiB "
                         f"| {'**pass**' if flat else '**FAIL**'} |")
        else:
            lines.append("| 10,000 idle WebSockets held, RSS flat | not reached | **FAIL** |")
    if "corofw" in sse and "aiohttp" in sse:
        mine = median([r["p99"] for r in sse["corofw"]])
        theirs = median([r["p99"] for r in sse["aiohttp"]])
        lines.append(f"| SSE p99 reported beside aiohttp's | {mine:.1f} ms vs {theirs:.1f} ms "
                     f"({mine / theirs:.2f}×) | reported |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="servers, comma-separated")
    parser.add_argument("--parts", default="echo,memory,sse")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--window", type=int, default=8, help="messages in flight per connection")
    parser.add_argument("--subscribers", type=int, default=SSE_SUBSCRIBERS)
    args = parser.parse_args()
    stop_on_sigterm()
    os.sched_setaffinity(0, {LOAD_CPU})
    limit = raise_fd_limit(65536)
    names = list(commands(0))
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    parts = args.parts.split(",")
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    warmup, idle = 1.0, (2.0 if args.quick else 5.0)
    before = load_average()
    echo = run_echo(names, rounds, args.window, warmup, seconds) if "echo" in parts else {}
    memory = run_memory(names, rounds, idle) if "memory" in parts else {}
    sse_names = [n for n in names if n in ("corofw", "aiohttp")]
    sse = run_sse(sse_names, rounds, args.subscribers) if "sse" in parts else {}
    report = "\n\n".join(part for part in (
        echo and "WebSocket echo, 64-byte text messages, 1,000 connections:\n\n" + echo_table(echo),
        memory and "Idle WebSockets (server VmRSS):\n\n" + memory_table(memory, idle),
        sse and f"SSE, one event broadcast to {args.subscribers:,} subscribers:\n\n" + sse_table(sse),
        "Targets (issue 12):\n\n" + targets(echo, memory, sse)) if part)
    print("\n" + report)
    if args.quick:
        return
    options = " ".join(filter(None, [f"--only {args.only}" if args.only else "",
                                     f"--parts {args.parts}" if args.parts != "echo,memory,sse" else "",
                                     f"--rounds {rounds}" if args.rounds else "",
                                     f"--seconds {seconds:g}" if args.seconds else "",
                                     f"--window {args.window}" if args.window != 8 else "",
                                     f"--subscribers {args.subscribers}"
                                     if args.subscribers != SSE_SUBSCRIBERS else ""]))
    write_section("WebSockets and SSE", f"""
- Command: `make bench-ws` (`.venv/bin/python benchmarks/ws_bench.py{' ' + options if options else ''}`), {now_utc()}, corofw at `{git_revision()}`.
- Machine: {machine_line()}. Load average before / after: {before} / {load_average()}. Open-file limit in force: {limit:,} (the harness asks for 65,536, gets what the hard limit allows; the servers inherit it).
- Servers, each one process pinned to CPU {SERVER_CPU} (`taskset`): corofw `python -m corofw run benchmarks.peers.corofw_ws:routes --no-access-log` (a `@routes.websocket` echo route; `event_stream` for SSE); the `websockets` package's asyncio server (`benchmarks/peers/websockets_echo.py`, defaults); aiohttp (`benchmarks/peers/aiohttp_ws.py`, `web.run_app`, access log off); uvicorn `--ws websockets --loop uvloop --http httptools` serving a raw ASGI echo app (`benchmarks/peers/asgi_ws.py`).
- Load: this script, pinned to CPU {LOAD_CPU}: raw non-blocking sockets on one epoll, pre-built masked frames, no compression offered. Echo: {CONNECTIONS:,} connections, {args.window} messages in flight on each, {warmup:g} s warm-up then {seconds:g} s counted, {rounds} rounds with the servers interleaved, medians. "Server CPU" is the server's user + system time over the counted seconds: near 100% means the server's core was saturated and the generator was not the limit; "replies per read" is how many echoes the generator found in each `recv()` (the fewer, the more reads, and generator CPU, per message); "loop stalls" are the warnings of corofw's watchdog (a task that ran over 100 ms without yielding) in each round's server log. Memory: VmRSS from /proc after 10 warm-up WebSockets were opened and closed, then with 1,000 and 10,000 idle WebSockets open (1 s after the last handshake), then sampled every 0.5 s for {idle:g} s idle; "still open" counts sockets the server had not closed at the end. SSE (corofw and aiohttp): {args.subscribers:,} subscribers held by this process, one `POST /broadcast` per round, latency = a subscriber's receive time minus the time just before the POST was sent (one monotonic clock, this process), {rounds} broadcasts, medians of their percentiles; the generator reads the 10,000 sockets one by one, so the figures include its own reading time (the same for both servers). aiohttp's broadcast writes to every `StreamResponse` from the POST handler; corofw's subscribers wait on one `Event` that the POST sets.

{report}
""")


if __name__ == "__main__":
    main()

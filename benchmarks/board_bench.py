"""The board (apps/board) under load, with live-update subscribers connected.

One board process (``corofw run apps.board.app:routes``, one worker) pinned
to CPU 0, on a throwaway PostgreSQL and the stand-in backend; wrk on CPU 1.
While 200 browsers' worth of live-update streams (``GET /events``) stay
connected and read every event, wrk measures:

- the list page (``GET /``, a logged-in user's first page of 20 posts),
- the same page with the status panel (``GET /?panel=1``: four backend
  calls under a 500 ms deadline, one of which never answers in time, so
  its latency is the deadline),
- posting (``POST /api/posts``), each post pushed to all 200 streams;

then 50 posts are made one at a time and each stream's arrival time of
each is recorded: the live-update delivery latency, from sending the POST
to the event read off each subscriber's socket.

    python benchmarks/board_bench.py            # prints, and rewrites its RESULTS.md section
    python benchmarks/board_bench.py --quick    # 3 s runs, prints only
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
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

sys.path.insert(0, str(ROOT))

from apps.board.db import create_schema  # noqa: E402
from apps.board.devdb import throwaway_postgres  # noqa: E402
from apps.board.devrun import started  # noqa: E402
from corofw import run  # noqa: E402

SERVER_CPU, LOAD_CPU = 0, 1
SUBSCRIBERS = 200
MARKERS = 50
EVENT = re.compile(rb"event: posts\nid: \d+\ndata: (.*?)\n\n", re.S)
POST_ID = re.compile(rb'\{"id": (\d+), "html"')


class Subscribers:
    """``count`` live-update streams read by one thread with a selector:
    for each post id, when each stream received it. A stream the board ends
    (it drops one that falls too far behind) is opened again with
    ``Last-Event-ID``, as a browser's EventSource does."""

    def __init__(self, port: int, cookie: str, count: int) -> None:
        self.port = port
        self.cookie = cookie
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytes] = {}
        self.last_ids: dict[socket.socket, int | None] = {}
        self.arrivals: dict[int, list[float]] = {}
        self.events = 0
        self.ready = 0
        self.reconnects = 0
        self.stopping = False
        for _ in range(count):
            self._connect(None)
        self.thread = threading.Thread(target=self._read, name="subscribers")
        self.thread.start()

    def _connect(self, last_id: int | None) -> None:
        resume = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                     f"Cookie: {self.cookie}\r\nAccept: text/event-stream\r\n{resume}\r\n"
                     .encode())
        sock.setblocking(False)
        self.buffers[sock] = b""
        self.last_ids[sock] = last_id
        self.selector.register(sock, selectors.EVENT_READ)

    def _reconnect(self, sock: socket.socket) -> None:
        self.selector.unregister(sock)
        sock.close()
        del self.buffers[sock]
        self.reconnects += 1
        self._connect(self.last_ids.pop(sock))

    def _read(self) -> None:
        while not self.stopping:
            for key, _ in self.selector.select(0.1):
                sock = key.fileobj
                try:
                    data = sock.recv(262144)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                now = time.monotonic()
                if not data:
                    self._reconnect(sock)
                    continue
                buffer = self.buffers[sock] + data
                if b"event: ready" in data:
                    self.ready += 1
                end = 0
                for found in EVENT.finditer(buffer):
                    for post_id in map(int, POST_ID.findall(found.group(1))):
                        self.events += 1
                        self.arrivals.setdefault(post_id, []).append(now)
                        self.last_ids[sock] = post_id
                    end = found.end()
                if buffer.endswith(b"\r\n0\r\n\r\n"):   # the board ended this stream
                    self._reconnect(sock)
                    continue
                self.buffers[sock] = buffer[end:]

    def wait_ready(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ready < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.ready} of {count} streams became ready")
            time.sleep(0.05)

    def close(self) -> None:
        self.stopping = True
        self.thread.join()
        for sock in self.buffers:
            sock.close()
        self.selector.close()


def wrk(url: str, connections: int, seconds: float, script: str) -> dict[str, float]:
    """wrk with a Lua ``script`` (for headers and bodies): req/s, p50/p99 ms, errors."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    try:
        out = subprocess.run(pinned(LOAD_CPU, ["wrk", "-t1", f"-c{connections}",
                                               f"-d{seconds:g}s", "--timeout=10s",
                                               "--latency", "-s", lua.name, url]),
                             capture_output=True, text=True, check=True,
                             preexec_fn=raise_fd_limit).stdout
    finally:
        os.unlink(lua.name)
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    result = {"errors": 0.0, "non2xx": 0.0}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(line.split()[1])
        elif re.match(r"^(50|99)%\s", line):
            pct, value = line.split()
            number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", value).groups()
            result[f"p{pct[:-1]}"] = float(number) * units[unit]
        elif line.startswith("Socket errors:"):
            result["errors"] = float(sum(int(n) for n in re.findall(r"\d+", line)))
        elif line.startswith("Non-2xx"):
            result["non2xx"] = float(line.split()[-1])
    if "rps" not in result:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    return result


def lua(cookie: str, csrf: str = "", post: bool = False) -> str:
    lines = [f'wrk.headers["Cookie"] = "{cookie}"']
    if post:
        lines += ['wrk.method = "POST"', 'wrk.body = \'{"body": "a post from wrk"}\'',
                  'wrk.headers["Content-Type"] = "application/json"',
                  f'wrk.headers["X-CSRF-Token"] = "{csrf}"']
    return "\n".join(lines) + "\n"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def wait_delivered(url: str, cookie: str, subscribers: Subscribers,
                   timeout: float = 120.0) -> float:
    """Seconds until the newest post has reached every stream."""
    started = time.monotonic()
    with httpx.Client(base_url=url, headers={"cookie": cookie}) as client:
        newest = client.get("/api/posts").json()["posts"][0]["id"]
    while len(subscribers.arrivals.get(newest, ())) < SUBSCRIBERS:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"post {newest} reached only "
                               f"{len(subscribers.arrivals.get(newest, ()))} streams")
        time.sleep(0.05)
    return time.monotonic() - started


def delivery(port: int, cookie: str, csrf: str, subscribers: Subscribers) -> list[float]:
    """Post MARKERS posts one by one; each stream's delay for each, in ms."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    delays = []
    try:
        for n in range(MARKERS):
            sent = time.monotonic()
            conn.request("POST", "/api/posts", body=json.dumps({"body": f"marker {n}"}),
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf,
                                  "Content-Type": "application/json"})
            post_id = json.loads(conn.getresponse().read())["id"]
            deadline = time.monotonic() + 5
            while len(subscribers.arrivals.get(post_id, ())) < SUBSCRIBERS:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"post {post_id} reached only "
                                       f"{len(subscribers.arrivals.get(post_id, ()))} streams")
                time.sleep(0.002)
            delays += [(at - sent) * 1000 for at in subscribers.arrivals[post_id]]
            time.sleep(0.05)
    finally:
        conn.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs, print only")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 8.0
    media = tempfile.mkdtemp(prefix="corofw-board-bench-")
    try:
        results, fanned, delays = measure(media, seconds)
    finally:
        shutil.rmtree(media, ignore_errors=True)
    report(results, fanned, delays, seconds, args.quick)


def measure(media: str, seconds: float
            ) -> tuple[dict[str, dict[str, float]], tuple[int, int], list[float]]:
    """Start everything, run the measurements, stop everything."""
    with throwaway_postgres(prefix="corofw-board-bench-pg-") as postgres:
        run(create_schema(postgres.dsn))
        backend_port, port = free_port(), free_port()
        env = {"DATABASE_URL": postgres.dsn, "BACKEND_URL": f"http://127.0.0.1:{backend_port}",
               "BOARD_MEDIA": media, "BOARD_SECRET": "a benchmark key that is long enough to sign with"}
        backend = [PYTHON, "-m", "corofw", "run", "apps.backend:routes", "--port",
                   str(backend_port), "--no-access-log", "--log-level", "warning"]
        board = [PYTHON, "-m", "corofw", "run", "apps.board.app:routes", "--port", str(port),
                 "--no-access-log", "--log-level", "warning", "--max-connections", "2000"]
        env = {**os.environ, **env}
        # the servers log to a file: a pipe nobody reads would stall them once full
        with open(os.path.join(media, "servers.log"), "w") as log, \
                started(backend, env, backend_port, log), \
                started(pinned(SERVER_CPU, board), env, port, log):
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url) as client:
                client.get("/signup")
                csrf = client.cookies["csrftoken"]
                client.post("/signup", data={"csrf_token": csrf, "username": "bench",
                                             "password": "benchmark password"})
                for n in range(30):
                    client.post("/api/posts", json={"body": f"seed post {n} " * 8},
                                headers={"x-csrf-token": csrf}).raise_for_status()
                cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
            subscribers = Subscribers(port, cookie, SUBSCRIBERS)
            try:
                subscribers.wait_ready(SUBSCRIBERS)
                results = {}
                for name, path, conns, script in [
                        ("list page", "/", 64, lua(cookie)),
                        ("list page with the status panel", "/?panel=1", 64, lua(cookie)),
                        ("posting", "/api/posts", 16, lua(cookie, csrf, post=True))]:
                    results[name] = wrk(url + path, conns, seconds, script)
                    print(f"{name:32} c={conns:<3} {results[name]['rps']:8.0f} req/s  "
                          f"p50 {results[name]['p50']:7.1f} ms  p99 {results[name]['p99']:7.1f} "
                          f"ms  errors {results[name]['errors']:.0f} "
                          f"non-2xx {results[name]['non2xx']:.0f}", flush=True)
                drained = wait_delivered(url, cookie, subscribers)
                fanned, reconnects = subscribers.events, subscribers.reconnects
                print(f"every post wrk made had reached every stream {drained:.1f} s after "
                      f"wrk stopped", flush=True)
                delays = delivery(port, cookie, csrf, subscribers)
            finally:
                subscribers.close()
    return results, (fanned, reconnects), delays


def report(results: dict[str, dict[str, float]], streamed: tuple[int, int],
           delays: list[float], seconds: float, quick: bool) -> None:
    fanned, reconnects = streamed
    print(f"posts delivered to the {SUBSCRIBERS} streams during the runs: {fanned}; "
          f"streams dropped for falling behind and reopened: {reconnects}")
    summary = (f"live-update delivery, {MARKERS} posts x {SUBSCRIBERS} streams: "
               f"p50 {statistics.median(delays):.1f} ms, p99 {percentile(delays, 99):.1f} ms, "
               f"max {max(delays):.1f} ms")
    print(summary)
    if quick:
        return
    rows = "\n".join(f"| {name} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                     f"{r['errors'] + r['non2xx']:.0f} |" for name, r in results.items())
    write_section("The board under load", f"""
`python benchmarks/board_bench.py` ({now_utc()}, revision {git_revision()};
{machine_line()}; load average before: {load_average()}).

One board process (`corofw run apps.board.app:routes`, one worker) pinned to CPU 0, on a
throwaway PostgreSQL (unpinned); wrk (1 thread, {seconds:g} s) on CPU 1; {SUBSCRIBERS}
live-update streams connected and read throughout. With the status panel, the list page
also fans out to four backend calls under a 500 ms deadline; one of them never answers in
time, so that page's latency is the deadline, by design. Other work shared the machine (see
the load average): runs of this benchmark within two hours gave the list page from 430 to
1,160 req/s.

| what | req/s | p50 ms | p99 ms | errors + non-2xx |
|---|--:|--:|--:|--:|
{rows}

While wrk posted, each post went to all {SUBSCRIBERS} streams: {fanned:,} deliveries,
{reconnects} streams dropped for falling 256 events behind (and reopened with
`Last-Event-ID`, as a browser does). Live-update delivery, {MARKERS} posts made one at a
time, from sending the POST to the event read off each of the {SUBSCRIBERS} streams:
{summary.split(': ', 1)[1]}.
""")


if __name__ == "__main__":
    main()

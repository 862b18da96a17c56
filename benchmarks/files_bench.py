"""A 1 MiB static file and a 200 MiB multipart upload: corofw against
aiohttp (and nginx for the static file).

Static: each server is one process pinned to CPU 0 serving a 1 MiB file
of random bytes from a temporary directory (corofw ``routes.static``,
aiohttp ``web.FileResponse``, nginx ``sendfile on`` with one worker and
no access log); before the load, one GET to each is checked byte for byte
(length and SHA-256); then wrk, pinned to CPU 1, keeps 64 keep-alive
connections busy. Servers are interleaved within each round.

Upload: this process, pinned to CPU 1, sends one ``multipart/form-data``
body with a single 200 MiB file part over a raw socket, the part's bytes
coming from a generator (a 1 MiB random block repeated), never whole in
memory. The server reads it as it arrives (corofw ``stream_body=True`` and
``request.form()``, aiohttp ``request.multipart()``), the file part going
to a temporary file, and answers with the part's size, which must be the
size sent. The server's peak RSS during the upload is its VmHWM (reset
through ``/proc/PID/clear_refs`` just before) against its VmRSS before,
with VmRSS also sampled every 5 ms as a cross-check::

    python benchmarks/files_bench.py               # both parts, updates RESULTS.md
    python benchmarks/files_bench.py --quick       # 1 round, short runs, prints only
    python benchmarks/files_bench.py --parts static --only corofw,nginx
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
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
    run_queue_seconds,
    stop_on_sigterm,
    write_section,
    wrk,
)

SERVER_CPU, LOAD_CPU = 0, 1
FILE_NAME = "file-1mib.bin"
FILE_SIZE = 1 << 20
CONNECTIONS = 64
UPLOAD_SIZE = 200 << 20
BLOCK = 1 << 20  # the upload's bytes: one random block, repeated
SEND_PIECE = 1 << 18
WARM_UP_UPLOAD = 2 << 20  # past corofw's 1 MiB spool threshold, so both spool to disk
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
MIB = float(1 << 20)


def commands(port: int, directory: str, prefix: str) -> dict[str, list[str]]:
    found = {
        "corofw": [PYTHON, "-m", "corofw", "run", "benchmarks.peers.corofw_files:routes",
                   "--port", str(port), "--no-access-log", "--log-level", "warning"],
        "aiohttp": [PYTHON, "benchmarks/peers/aiohttp_files.py", str(port)],
    }
    if NGINX:
        found["nginx"] = [NGINX, "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"),
                          "-e", os.path.join(prefix, "error.log")]
    return found


def nginx_config(prefix: str, port: int, directory: str) -> str:
    """One worker, sendfile, keep-alive without a request cap, no access
    log, everything under ``prefix``; as root the worker runs as root (it
    would otherwise be nobody, locked out of the temporary directory)."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000000;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{
            alias {directory}/;
        }}
    }}
}}
"""


def logged(log: str, command: list[str]) -> list[str]:
    """``command`` with its stderr written to ``log`` (a pipe nobody reads
    could fill and block the server)."""
    return ["sh", "-c", 'exec "$@" 2>"$0"', log, *command]


def start(name: str, port: int, directory: str, work: str) -> Service:
    prefix = os.path.join(work, f"nginx-{port}")
    if name == "nginx":
        os.makedirs(prefix)
        Path(prefix, "nginx.conf").write_text(nginx_config(prefix, port, directory))
    command = commands(port, directory, prefix)[name]
    return Service(name, logged(os.path.join(work, f"{name}.log"), command), port, SERVER_CPU,
                   env={"BENCH_FILES_DIR": directory})


# --- part 1: the static file ---------------------------------------------------------------


def check_file(port: int, digest: str) -> None:
    """One GET of the file: status 200, Content-Length and body as on disk."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/static/{FILE_NAME}")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    length = response.getheader("content-length")
    if response.status != 200 or length != str(FILE_SIZE) or len(body) != FILE_SIZE:
        raise RuntimeError(f"GET answered {response.status}, content-length {length}, "
                           f"{len(body)} bytes")
    if hashlib.sha256(body).hexdigest() != digest:
        raise RuntimeError("GET answered the wrong bytes")


def children_cpu() -> float:
    """CPU seconds used by this process's children that have ended (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_static(names: list[str], rounds: int, seconds: float, directory: str, digest: str,
               work: str) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = defaultdict(list)
    for round_no in range(rounds):
        for name in names:
            port = free_port()
            with start(name, port, directory, work) as service:
                check_file(port, digest)
                url = f"http://127.0.0.1:{port}/static/{FILE_NAME}"
                wrk(url, CONNECTIONS, 1, LOAD_CPU)  # warm up
                load = os.getloadavg()[0]
                cpu_before, wrk_before = proc_stats(service.pid)[0], children_cpu()
                waited = run_queue_seconds(service.pid)
                result = wrk(url, CONNECTIONS, seconds, LOAD_CPU)
                result["waited"] = (run_queue_seconds(service.pid) - waited) / seconds
                result["server_cpu"] = (proc_stats(service.pid)[0] - cpu_before) / seconds
                result["wrk_cpu"] = (children_cpu() - wrk_before) / seconds
                result["load"] = load
                check_file(port, digest)
            if result["errors"] or result["non2xx"]:
                raise RuntimeError(f"{name}: wrk saw {result['errors']:.0f} socket errors, "
                                   f"{result['non2xx']:.0f} non-2xx answers")
            results[name].append(result)
            print(f"static round {round_no + 1}: {name:8} {result['rps']:9,.0f} req/s  "
                  f"{result['rps'] * FILE_SIZE / MIB:8,.0f} MiB/s  p99 {result['p99']:6.1f} ms  "
                  f"server CPU {result['server_cpu']:.0%}  wrk CPU {result['wrk_cpu']:.0%}  "
                  f"server waited for a CPU {result['waited']:.0%}  "
                  f"load {load:.2f}", flush=True)
    return results


# --- part 2: the upload --------------------------------------------------------------------


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ``clear_refs``)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler(threading.Thread):
    """The highest VmRSS of ``pid`` seen every ``interval`` s until stopped."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))
            self.stopped.wait(self.interval)


def random_block(separator: bytes) -> bytes:
    """``BLOCK`` random bytes in which the boundary cannot appear, not even
    across two copies."""
    while True:
        block = os.urandom(BLOCK)
        if separator not in block + block[:len(separator)]:
            return block


def multipart_pieces(block: bytes, size: int, boundary: str) -> tuple[bytes, Iterator[bytes], bytes]:
    """The body's opening (boundary and part head), a generator of the
    file part's ``size`` bytes in ``SEND_PIECE`` pieces, and its closing."""
    opening = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"upload.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    closing = f"\r\n--{boundary}--\r\n".encode()

    def content() -> Iterator[bytes]:
        view = memoryview(block)
        sent = 0
        while sent < size:
            start = sent % len(block)
            piece = view[start:start + min(SEND_PIECE, size - sent)]
            sent += len(piece)
            yield piece  # type: ignore[misc]

    return opening, content(), closing


def upload_once(port: int, size: int, block: bytes, boundary: str) -> tuple[float, dict]:
    """Send one multipart upload of ``size`` bytes; return the seconds from
    the first byte sent to the answer's end, and the answer's JSON."""
    opening, content, closing = multipart_pieces(block, size, boundary)
    length = len(opening) + size + len(closing)
    head = (f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        started = time.monotonic()
        sock.sendall(head + opening)
        for piece in content:
            sock.sendall(piece)
        sock.sendall(closing)
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
            head_end = answer.find(b"\r\n\r\n")
            if head_end >= 0:
                lines = answer[:head_end].decode("latin-1").split("\r\n")
                fields = dict(line.lower().split(": ", 1) for line in lines[1:])
                if len(answer) >= head_end + 4 + int(fields.get("content-length", "-1")):
                    break
        elapsed = time.monotonic() - started
    status, _, body = answer.partition(b"\r\n\r\n")
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"upload answered {answer[:300]!r}")
    return elapsed, json.loads(body)


def run_upload(names: list[str], rounds: int, size: int, directory: str,
               work: str) -> dict[str, list[dict]]:
    boundary = "bench" + secrets.token_hex(16)
    block = random_block(f"\r\n--{boundary}".encode())
    results: dict[str, list[dict]] = defaultdict(list)
    for round_no in range(rounds):
        for name in names:
            port = free_port()
            with start(name, port, directory, work) as service:
                pid = service.pid
                _, answer = upload_once(port, WARM_UP_UPLOAD, block, boundary)
                if answer.get("file") != WARM_UP_UPLOAD:
                    raise RuntimeError(f"{name}: warm-up upload answered {answer}")
                time.sleep(0.5)
                load = os.getloadavg()[0]
                before = status_kib(pid, "VmRSS")
                hwm_reset = reset_peak(pid)
                cpu_before, waited = proc_stats(pid)[0], run_queue_seconds(pid)
                sampler = RssSampler(pid)
                sampler.start()
                try:
                    elapsed, answer = upload_once(port, size, block, boundary)
                finally:
                    sampler.stopped.set()
                    sampler.join()
                cpu = proc_stats(pid)[0] - cpu_before
                waited = run_queue_seconds(pid) - waited
                peak = status_kib(pid, "VmHWM") if hwm_reset else sampler.peak
                after = status_kib(pid, "VmRSS")
            if answer.get("file") != size:
                raise RuntimeError(f"{name}: the upload answered {answer}, not {size} bytes")
            result = {"mibps": size / MIB / elapsed, "seconds": elapsed, "before": before,
                      "peak": max(peak, sampler.peak), "sampled": sampler.peak, "after": after,
                      "growth": max(peak, sampler.peak) - before, "server_cpu": cpu / elapsed, "cpu_per_mib": cpu / (size / MIB),
                      "waited": waited / elapsed, "load": load, "hwm": float(hwm_reset)}
            results[name].append(result)
            print(f"upload round {round_no + 1}: {name:8} {result['mibps']:7,.0f} MiB/s  "
                  f"RSS {before / MIB:.1f} MiB before, peak {result['peak'] / MIB:.1f} MiB "
                  f"(+{result['growth'] / MIB:.1f}; sampled peak {sampler.peak / MIB:.1f}), "
                  f"{after / MIB:.1f} after  server CPU {result['server_cpu']:.0%}  "
                  f"server waited for a CPU {result['waited']:.0%}  "
                  f"load {load:.2f}", flush=True)
    return results


# --- report --------------------------------------------------------------------------------


def static_table(results: dict[str, list[dict]]) -> str:
    lines = ["| server | req/s | MiB/s | p50 (ms) | p99 (ms) | server CPU (of its core) "
             "| server CPU per request (µs) | wrk CPU (of its core) | server waited for a CPU "
             "| load (1 min) | corofw ÷ server | every round (req/s) |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    base = median([r["rps"] for r in results["corofw"]]) if "corofw" in results else None
    for name, runs in results.items():
        rps = median([r["rps"] for r in runs])
        ratio = f"{base / rps:.2f}×" if base and name != "corofw" else "—"
        lines.append(f"| {name} | {rps:,.0f} | {rps * FILE_SIZE / MIB:,.0f} "
                     f"| {median([r['p50'] for r in runs]):.1f} | {median([r['p99'] for r in runs]):.1f} "
                     f"| {median([r['server_cpu'] for r in runs]):.0%} "
                     f"| {median([r['server_cpu'] / r['rps'] * 1e6 for r in runs]):,.0f} "
                     f"| {median([r['wrk_cpu'] for r in runs]):.0%} "
                     f"| {median([r['waited'] for r in runs]):.0%} "
                     f"| {median([r['load'] for r in runs]):.2f} | {ratio} "
                     f"| {', '.join(format(r['rps'], ',.0f') for r in runs)} |")
    return "\n".join(lines)


def upload_table(results: dict[str, list[dict]]) -> str:
    lines = ["| server | MiB/s | seconds | RSS before | peak RSS | peak growth | server CPU (of its core) "
             "| server CPU per MiB (ms) | server waited for a CPU | load (1 min) "
             "| every round (MiB/s; growth MiB) |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for name, runs in results.items():
        lines.append(
            f"| {name} | {median([r['mibps'] for r in runs]):,.0f} "
            f"| {median([r['seconds'] for r in runs]):.2f} "
            f"| {median([r['before'] for r in runs]) / MIB:.1f} MiB "
            f"| {median([r['peak'] for r in runs]) / MIB:.1f} MiB "
            f"| {median([r['growth'] for r in runs]) / MIB:.1f} MiB "
            f"| {median([r['server_cpu'] for r in runs]):.0%} "
            f"| {median([r['cpu_per_mib'] for r in runs]) * 1e3:.2f} "
            f"| {median([r['waited'] for r in runs]):.0%} "
            f"| {median([r['load'] for r in runs]):.2f} "
            f"| {', '.join(format(r['mibps'], ',.0f') + '; ' + format(r['growth'] / MIB, '.1f') for r in runs)} |")
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def targets(static: dict, upload: dict) -> str:
    lines = ["| target | measured | result |", "|---|---|---|"]
    if "corofw" in static:
        mine = median([r["rps"] for r in static["corofw"]])
        for name, wanted in (("aiohttp", 2.0), ("nginx", 0.5)):
            if name in static:
                ratio = mine / median([r["rps"] for r in static[name]])
                lines.append(f"| 1 MiB static file, 64 connections: ≥ {wanted:g}× {name} "
                             f"| {ratio:.2f}× | {verdict(ratio >= wanted)} |")
        mine_cost = median([r["server_cpu"] / r["rps"] for r in static["corofw"]])
        for name in ("aiohttp", "nginx"):
            if name in static:
                cost = median([r["server_cpu"] / r["rps"] for r in static[name]])
                lines.append(f"| (beside it) server CPU per request, {name}'s ÷ corofw's "
                             f"| {cost * 1e6:,.0f} µs ÷ {mine_cost * 1e6:,.0f} µs = "
                             f"{cost / mine_cost:.2f}× | reported |")
    if "corofw" in upload:
        growth = median([r["growth"] for r in upload["corofw"]])
        worst = max(r["growth"] for r in upload["corofw"])
        lines.append(f"| 200 MiB upload: peak RSS grows ≤ 16 MiB | {growth / MIB:.1f} MiB "
                     f"(worst round {worst / MIB:.1f} MiB) | {verdict(growth <= 16 * MIB)} |")
        if "aiohttp" in upload:
            mine = median([r["mibps"] for r in upload["corofw"]])
            theirs = median([r["mibps"] for r in upload["aiohttp"]])
            lines.append(f"| 200 MiB upload: throughput ≥ aiohttp's | {mine:,.0f} vs {theirs:,.0f} "
                         f"MiB/s ({mine / theirs:.2f}×) | {verdict(mine >= theirs)} |")
            mine_cost = median([r["cpu_per_mib"] for r in upload["corofw"]])
            cost = median([r["cpu_per_mib"] for r in upload["aiohttp"]])
            lines.append(f"| (beside it) server CPU per MiB uploaded, aiohttp's ÷ corofw's "
                         f"| {cost * 1e3:.2f} ms ÷ {mine_cost * 1e3:.2f} ms = {cost / mine_cost:.2f}× "
                         f"| reported |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="servers, comma-separated")
    parser.add_argument("--parts", default="static,upload")
    parser.add_argument("--rounds", type=int, default=None, help="static rounds (default 7)")
    parser.add_argument("--upload-rounds", type=int, default=None, help="(default 5)")
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    stop_on_sigterm()
    os.sched_setaffinity(0, {LOAD_CPU})
    raise_fd_limit(4096)
    parts = args.parts.split(",")
    rounds = args.rounds or (1 if args.quick else 7)
    upload_rounds = args.upload_rounds or (1 if args.quick else 5)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    work = tempfile.mkdtemp(prefix="files-bench-")
    try:
        directory = os.path.join(work, "public")
        os.mkdir(directory)
        content = os.urandom(FILE_SIZE)
        Path(directory, FILE_NAME).write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        names = list(commands(0, directory, work))
        if args.only:
            names = [n for n in names if n in args.only.split(",")]
        before = load_average()
        static = run_static(names, rounds, seconds, directory, digest, work) \
            if "static" in parts else {}
        upload_names = [n for n in names if n != "nginx"]
        upload = run_upload(upload_names, upload_rounds, UPLOAD_SIZE, directory, work) \
            if "upload" in parts else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = "\n\n".join(part for part in (
        static and f"1 MiB static file, wrk `-t1 -c{CONNECTIONS} -d{seconds:g}s`, keep-alive "
                   f"(medians of {rounds} rounds):\n\n" + static_table(static),
        upload and f"{UPLOAD_SIZE >> 20} MiB multipart upload, one file part, one connection "
                   f"(medians of {upload_rounds} rounds):\n\n" + upload_table(upload),
        "Targets (issue 13):\n\n" + targets(static, upload)) if part)
    print("\n" + report)
    if args.quick:
        return
    options = " ".join(filter(None, [f"--only {args.only}" if args.only else "",
                                     f"--parts {args.parts}" if args.parts != "static,upload" else "",
                                     f"--rounds {rounds}" if args.rounds else "",
                                     f"--upload-rounds {upload_rounds}" if args.upload_rounds else "",
                                     f"--seconds {seconds:g}" if args.seconds else ""]))
    nginx_version = "not installed"
    if NGINX:
        nginx_version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    write_section("Static files and uploads", f"""
- Command: `make bench-files` (`.venv/bin/python benchmarks/files_bench.py{' ' + options if options else ''}`), {now_utc()}, corofw at `{git_revision()}`.
- Machine: {machine_line()}; {nginx_version}. Load average (1/5/15 min) before / after: {before} / {load_average()}; the "load" columns are the 1-minute load average just before each measured run, which counts this benchmark's own server and client (about 2 with nothing else running).
- Servers, each one process pinned to CPU {SERVER_CPU} (`taskset`), started afresh for every round: corofw `python -m corofw run benchmarks.peers.corofw_files:routes --no-access-log` (`routes.static`, sent with `os.sendfile`; the upload route `stream_body=True` reading `request.form()`, whose file part spools to a temporary file past 1 MiB); aiohttp (`benchmarks/peers/aiohttp_files.py`, `web.run_app`, access log off: `web.FileResponse`, which uses `sendfile`; `request.multipart()` with each file part read by `read_chunk(65536)` into a `tempfile.TemporaryFile`); nginx with one worker, `sendfile on`, `tcp_nopush on`, keep-alive with no request cap, `access_log off` (static file only).
- Static: a 1 MiB file of random bytes in a temporary directory; one GET to each server is checked (status, `Content-Length`, SHA-256) before and after the load; a 1 s wrk warm-up, then `taskset -c {LOAD_CPU} wrk -t1 -c{CONNECTIONS} -d{seconds:g}s` (keep-alive); {rounds} rounds with the servers interleaved; MiB/s is req/s × 1 MiB (bodies only). "Server CPU" is the server's user + system time over the counted seconds (its whole process tree for nginx), and per request that time divided by the requests served (kernel time in `sendfile` included); "wrk CPU" is wrk's user + system time over the same seconds (near 100%: the client, not the server, was the limit); "server waited for a CPU" is the time the server's threads were ready to run but queued (`/proc/PID/task/*/schedstat`) over the same seconds: other work on the shared machine (or the server's own other threads) holding it back.
- Upload: this script, pinned to CPU {LOAD_CPU}, sends one `POST /upload` with `Content-Length` and a `multipart/form-data` body holding one {UPLOAD_SIZE >> 20} MiB file part, from a generator over one 1 MiB random block (256 KiB `sendall`s on a raw socket); the answer must give the part's size as sent. Before it, a {WARM_UP_UPLOAD >> 20} MiB warm-up upload on the same server, then 0.5 s idle. RSS before = VmRSS just before the upload; peak = VmHWM after the upload, reset with `/proc/PID/clear_refs` just before (and never below the highest VmRSS sampled every 5 ms); growth = peak − before. Throughput = {UPLOAD_SIZE >> 20} MiB ÷ the time from the first byte sent to the end of the answer; server CPU per MiB = the server's user + system time during the upload ÷ {UPLOAD_SIZE >> 20}, which other work on the machine disturbs less than the throughput. {upload_rounds} rounds, servers interleaved, medians.

{report}
""")


if __name__ == "__main__":
    main()

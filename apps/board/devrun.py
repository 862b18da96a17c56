"""Running the whole board on one machine, for development (``make board``).

Three processes: a throwaway PostgreSQL cluster (:mod:`apps.board.devdb`),
the stand-in backend (``apps/backend.py``) and the board, both served by
``corofw run``. The two servers run in sessions of their own, so that a
Ctrl-C in the terminal reaches this process alone: it then asks each
server to stop with one SIGTERM to its PID, waits for it (and kills it if
it outstays its grace period), stops PostgreSQL with ``pg_ctl`` and
removes the temporary files.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from corofw import run

from .db import create_schema
from .devdb import free_port, throwaway_postgres

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRACE = 2.0
MAX_BODY = 16 << 20  # bigger than the image limit, so the board itself explains a refusal


def corofw_command(app: str, port: int, *extra: str) -> list[str]:
    """``corofw run APP`` on 127.0.0.1:``port`` with this interpreter."""
    return [sys.executable, "-m", "corofw", "run", app, "--host", "127.0.0.1",
            "--port", str(port), "--graceful-timeout", str(GRACE), *extra]


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Return once something accepts on 127.0.0.1:``port``; ``RuntimeError``
    if ``process`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(process.args[3:5])} exited with "
                               f"{process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


def stop(process: subprocess.Popen, grace: float = GRACE + 5.0) -> int:
    """SIGTERM ``process`` by its PID, wait up to ``grace`` seconds, then
    SIGKILL; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextmanager
def started(command: list[str], env: dict[str, str], port: int, log: IO[str] | None = None
            ) -> Iterator[subprocess.Popen]:
    """``command`` running in a session of its own until the block ends;
    its output goes to ``log`` (default: this process's)."""
    process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, start_new_session=True,
                               stdout=log, stderr=log)
    try:
        wait_listening(port, process)
        yield process
    finally:
        stop(process)


def run_everything(port: int, workers: int) -> int:
    """Run the three processes until SIGINT or SIGTERM (0), or until a server
    exits on its own (1); everything is stopped either way."""
    stopping = []

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)

    old = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT,
                                                                     signal.SIGTERM)}
    media = tempfile.mkdtemp(prefix="corofw-board-media-")
    try:
        with throwaway_postgres(prefix="corofw-board-pg-") as postgres:
            run(create_schema(postgres.dsn))
            backend_port = free_port()
            env = dict(os.environ, PYTHONPATH=PROJECT_ROOT, DATABASE_URL=postgres.dsn,
                       BACKEND_URL=f"http://127.0.0.1:{backend_port}", BOARD_MEDIA=media,
                       BOARD_SECRET=os.environ.get("BOARD_SECRET") or secrets.token_urlsafe(32))
            with started(corofw_command("apps.backend:routes", backend_port,
                                        "--no-access-log"), env, backend_port) as backend, \
                    started(corofw_command("apps.board.app:routes", port, "--workers",
                                           str(workers), "--max-body-size", str(MAX_BODY)),
                            env, port) as board:
                print(f"\nThe board is at http://127.0.0.1:{port}/ ({workers} worker(s); "
                      f"PostgreSQL pid {postgres.pid()} on port {postgres.port}, backend pid "
                      f"{backend.pid} on port {backend_port}, board pid {board.pid}).\n"
                      f"Ctrl-C stops everything.\n", flush=True)
                while not stopping and board.poll() is None and backend.poll() is None:
                    time.sleep(0.2)
                crashed = not stopping
                print("stopping the board, the backend and PostgreSQL...", flush=True)
        print("stopped.")
        return 1 if crashed else 0
    finally:
        shutil.rmtree(media, ignore_errors=True)
        for signum, handler in old.items():
            signal.signal(signum, handler)

"""Running an app as a server process, or as several supervised workers.

With one worker the server runs in this process. With ``workers > 1`` this
process becomes a supervisor: it forks the workers, each of which binds its
own listening socket to the same port with ``SO_REUSEPORT`` (the OS spreads
connections among them), restarts any worker that dies, and on SIGTERM or
SIGINT asks every worker to shut down gracefully before exiting itself.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from .http.server import ServerConfig, serve
from .kernel import run
from .kernel.traps import Coro
from .net import listen

log = logging.getLogger("corofw.runner")


def run_app(app: Any, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
            config: ServerConfig | None = None, backlog: int = 1024) -> int:
    """Serve ``app`` until SIGINT/SIGTERM; return the exit status (0 after a
    graceful shutdown). Raises ``OSError`` if the address cannot be bound."""
    config = config or ServerConfig()
    if workers <= 1:
        listener = listen(host, port, backlog)
        run(_serve_forever(app, listener, config))
        return 0
    reserved = _reserve_port(host, port)
    try:
        port = reserved.getsockname()[1]
        return _Supervisor(app, host, port, workers, config, backlog).run()
    finally:
        reserved.close()


def _serve_forever(app: Any, listener: Any, config: ServerConfig) -> Coro[None]:
    host, port = listener.getsockname()[:2]

    def ready(server: Any) -> None:
        log.info("serving on http://%s:%d (pid %d)", _url_host(host), port, os.getpid())

    yield from serve(app, listener, config, on_ready=ready)
    log.info("stopped (pid %d)", os.getpid())


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) to claim the port and check it is free; a
    bound socket that never listens receives no connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _Stop(Exception):
    pass


class _Supervisor:
    def __init__(self, app: Any, host: str, port: int, workers: int,
                 config: ServerConfig, backlog: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.count = workers
        self.config = config
        self.backlog = backlog
        self.workers: dict[int, float] = {}

    def run(self) -> int:
        def on_signal(signum: int, frame: Any) -> None:
            raise _Stop(signum)

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        log.info("supervisor %d starting %d workers on http://%s:%d", os.getpid(), self.count,
                 _url_host(self.host), self.port)
        try:
            for _ in range(self.count):
                self._start_worker()
            while True:
                pid, status = os.waitpid(-1, 0)
                self._reap(pid, status)
        except _Stop as stop:
            log.info("supervisor received %s: stopping workers",
                     signal.Signals(stop.args[0]).name)
        finally:
            for signum, handler in old.items():
                signal.signal(signum, handler)
        return self._stop_all()

    def _start_worker(self) -> None:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:
            self._worker_main(mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.workers[pid] = time.monotonic()
        log.info("worker %d started", pid)

    def _worker_main(self, mask: Any) -> None:
        status = 1
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            listener = listen(self.host, self.port, self.backlog, reuse_port=True)
            run(_serve_forever(self.app, listener, self.config))
            status = 0
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(status)

    def _reap(self, pid: int, status: int) -> None:
        started = self.workers.pop(pid, None)
        if started is None:
            return
        log.warning("worker %d exited (%s); starting a new one", pid, _describe(status))
        if time.monotonic() - started < 1.0:
            time.sleep(1.0)  # a worker that dies at once would otherwise spin
        self._start_worker()

    def _stop_all(self) -> int:
        for pid in self.workers:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.graceful_timeout + 5.0
        while self.workers and time.monotonic() < deadline:
            for pid in list(self.workers):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    self.workers.pop(pid)
                    log.info("worker %d stopped (%s)", pid, _describe(status))
            time.sleep(0.02)
        for pid in self.workers:
            log.warning("worker %d did not stop in time; killing it", pid)
            _kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return 0


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


__all__ = ["run_app"]
_ = sys

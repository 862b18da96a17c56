"""Running an app as a server process, or as several supervised workers.

With one worker the server runs in this process. With ``workers > 1`` this
process becomes a supervisor: it forks the workers, each of which binds its
own listening socket to the same port with ``SO_REUSEPORT`` (the OS spreads
connections among them), restarts any worker that dies, and on SIGTERM or
SIGINT asks every worker to shut down gracefully before exiting itself.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
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
        run(_serve_forever(app, listener, config), watchdog=config.watchdog)
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
        _tune_gc()
        log.info("serving on http://%s:%d (pid %d)", _url_host(host), port, os.getpid())

    yield from serve(app, listener, config, on_ready=ready)
    log.info("stopped (pid %d)", os.getpid())


def _tune_gc() -> None:
    """Tune the cyclic garbage collector for a server process: everything
    alive once the server is up (modules, the app, the routes) is frozen out
    of collections, and the youngest generation is collected every N
    allocations (50,000 by default) instead of every 700 (COROFW_GC_THRESHOLD, 0 leaves
    Python's defaults). Requests allocate many short-lived objects that
    reference counting frees; frequent collections would mostly rescan the
    same long-lived connections."""
    threshold = int(os.environ.get("COROFW_GC_THRESHOLD", "50000"))
    if threshold:
        gc.freeze()
        gc.set_threshold(threshold, *gc.get_threshold()[1:])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) to claim the port for the workers; a bound
    socket that never listens receives no connections.

    The port is first bound without ``SO_REUSEPORT``: with it, the bind would
    also succeed when another program's ``SO_REUSEPORT`` listener holds the
    port, and the two would silently share its connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
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
        self.stopping: list[int] | None = None
        self.supervisor_pid = os.getpid()

    def run(self) -> int:
        # SIGINT/SIGTERM interrupt the supervising loop with _Stop; once
        # stopping has begun they only ask _stop_all to hurry.
        def on_signal(signum: int, frame: Any) -> None:
            if self.stopping is None:
                raise _Stop(signum)
            self.stopping.append(signum)

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        log.info("supervisor %d starting %d workers on http://%s:%d", os.getpid(), self.count,
                 _url_host(self.host), self.port)
        try:
            try:
                for _ in range(self.count):
                    self._start_worker()
                while True:
                    pid, status = os.waitpid(-1, 0)
                    self._reap(pid, status)
            except _Stop as stop:
                self.stopping = []
                log.info("supervisor received %s: stopping workers",
                         signal.Signals(stop.args[0]).name)
            except BaseException:
                self.stopping = []
                self._stop_all(signal.SIGKILL)
                raise
            return self._stop_all()
        finally:
            for signum, handler in old.items():
                signal.signal(signum, handler)

    def _start_worker(self) -> None:
        # Signals stay blocked until the new pid is recorded: a _Stop raised
        # in between would leave a worker nobody stops.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
            if pid == 0:
                self._worker_main(mask)
            self.workers[pid] = time.monotonic()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        log.info("worker %d started", pid)

    def _worker_main(self, mask: Any) -> None:
        status = 1
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            _stop_with_parent(self.supervisor_pid)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            listener = listen(self.host, self.port, self.backlog, reuse_port=True)
            run(_serve_forever(self.app, listener, self.config), watchdog=self.config.watchdog)
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

    def _stop_all(self, signum: int = signal.SIGTERM) -> int:
        """Signal every worker and reap them all; a worker still alive after
        the grace period (plus a margin), or when a second SIGINT/SIGTERM
        arrives meanwhile, is killed."""
        for pid in self.workers:
            _kill(pid, signum)
        deadline = time.monotonic() + self.config.graceful_timeout + 5.0
        while self.workers and time.monotonic() < deadline and not self.stopping:
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
            if signum != signal.SIGKILL:
                log.warning("worker %d has not stopped; killing it", pid)
            _kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return 0


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the supervisor dies (even
    by SIGKILL), so no worker is left serving on its own (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


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

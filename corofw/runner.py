"""Running an app as a server process, or as several supervised workers.

With one worker the server runs in this process. With ``workers > 1`` this
process becomes a supervisor: it forks the workers, each of which binds its
own listening socket to the same port with ``SO_REUSEPORT`` (the OS spreads
connections among them), restarts any worker that dies, and on SIGTERM or
SIGINT asks every worker to shut down gracefully before exiting itself.
On a Unix socket or inherited sockets (``--uds``, ``--fd``, systemd) the
supervisor opens the sockets once and the workers inherit them, all
accepting on the same sockets.

The supervisor talks to each worker over a socket pair, never with signals:
a worker may also have received the stop signal directly (Ctrl-C signals the
whole process group, as does systemd's control-group kill), and the
supervisor's request must not count as a second signal, which would cancel
the requests in flight. Over the same pair a worker reports that it serves,
or why it could not start: a worker that cannot start makes the supervisor
give up with that reason instead of restarting workers forever.

:func:`run_reloading` (``corofw run --reload``) is the same supervisor with
one worker that imports the app itself, reports the source files it loaded,
and is replaced by a fresh one whenever one of them changes.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from typing import Any

from .http.config import ServerConfig
from .http.lifespan import StartupError
from .http.server import serve
from .kernel import current_kernel, run
from .kernel.traps import Coro
from .net import Socket, inherited_listener, listen, listen_unix
from .net.listeners import UnixListener, describe_listener

log = logging.getLogger("corofw.runner")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_BACKLOG = 1024
DEFAULT_GC_THRESHOLD = 50_000
# listen() and gc.set_threshold() take a C int (the kernel caps a backlog at somaxconn)
MAX_BACKLOG = MAX_GC_THRESHOLD = 2**31 - 1
# supervisor -> worker: one byte asks to stop, a second one to hurry
_STOP = b"s"
# worker -> supervisor, one line each: "R" serving, "E<reason>" could not
# start, "F<mtime_ns> <path>" a source file to watch (reload)
_READY = b"R"
_FAILED = b"E"
_SOURCE = b"F"
_QUICK_DEATHS = 5  # workers in a row dying before they serve: give up
_HURRY_SECONDS = 5.0

# worker(channel, ready): serve in the forked worker until asked to stop on
# ``channel``; call ``ready()`` once serving
WorkerTarget = Callable[[socket.socket, Callable[[], None]], None]


def run_app(app: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workers: int = 1,
            config: ServerConfig | None = None, backlog: int = DEFAULT_BACKLOG,
            gc_threshold: int | None = None, *, uds: str | None = None,
            fds: Sequence[int] = ()) -> int:
    """Serve ``app`` until SIGINT/SIGTERM; return the exit status (0 after a
    graceful shutdown). Raises ``OSError`` if the address cannot be bound,
    :class:`~corofw.net.ListenerError` for a Unix socket path or an fd that
    cannot be served, ``ValueError`` for a bad setting (before any worker
    starts) and :class:`StartupError` if the app's start-up, or the
    workers, fail as they start (each worker runs the app's start-up hooks).

    Instead of ``host`` and ``port``: ``uds`` listens on that Unix socket
    (see :func:`~corofw.net.listen_unix`; its file is removed when serving
    ends), ``fds`` serves the listening sockets already open as those file
    descriptors (inherited from the parent process, or passed by systemd).
    The workers share these sockets.

    ``gc_threshold``: see :func:`gc_threshold_setting`."""
    config = config or ServerConfig()
    threshold = gc_threshold_setting(gc_threshold)
    if uds is not None or fds:
        return _run_on_listeners(app, _open_listeners(uds, fds, backlog), workers, config,
                                 threshold)
    if workers <= 1:
        listener = listen(host, port, backlog)
        run(_serve_forever(app, [listener], config, threshold), watchdog=config.watchdog)
        return 0
    reserved = _reserve_port(host, port)
    try:
        port = reserved.getsockname()[1]

        def serve_in_worker(channel: socket.socket, ready: Callable[[], None]) -> None:
            listener = listen(host, port, backlog, reuse_port=True)
            run(_serve_forever(app, [listener], config, threshold, channel, ready),
                watchdog=config.watchdog)

        log.info("supervisor %d starting %d workers on http://%s:%d", os.getpid(), workers,
                 _url_host(host), port)
        return _Supervisor(serve_in_worker, workers, config).run()
    finally:
        reserved.close()


def _run_on_listeners(app: Any, listeners: list[Socket], workers: int, config: ServerConfig,
                      threshold: int) -> int:
    """Serve on sockets opened here: in this process, or in workers that
    inherit them (all accept on the same sockets) under a supervisor that
    closes its copies as soon as it is asked to stop, so that once the
    workers have closed theirs, new clients are refused (by the kernel, or
    by whoever passed the socket and still holds it)."""
    try:
        if workers <= 1:
            run(_serve_forever(app, listeners, config, threshold), watchdog=config.watchdog)
            return 0

        def serve_in_worker(channel: socket.socket, ready: Callable[[], None]) -> None:
            run(_serve_forever(app, listeners, config, threshold, channel, ready),
                watchdog=config.watchdog)

        log.info("supervisor %d starting %d workers on %s", os.getpid(), workers,
                 ", ".join(describe_listener(listener) for listener in listeners))
        on_stop = [listener.close for listener in listeners]
        return _Supervisor(serve_in_worker, workers, config, on_stop=on_stop).run()
    finally:
        _release(listeners)


def _open_listeners(uds: str | None, fds: Sequence[int], backlog: int) -> list[Socket]:
    if uds is not None and fds:
        raise ValueError("serve on a Unix socket or on inherited fds, not both")
    if uds is not None:
        return [listen_unix(uds, backlog)]
    listeners: list[Socket] = []
    try:
        for fd in fds:
            listeners.append(inherited_listener(fd))
    except BaseException:
        _release(listeners)
        raise
    return listeners


def _release(listeners: list[Socket]) -> None:
    """Close ``listeners`` and remove the files of the Unix sockets bound here."""
    for listener in listeners:
        listener.close()
        if isinstance(listener, UnixListener):
            listener.remove()


def run_reloading(load: Callable[[], Any], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  config: ServerConfig | None = None, backlog: int = DEFAULT_BACKLOG,
                  gc_threshold: int | None = None, interval: float = 0.5, *,
                  uds: str | None = None, fds: Sequence[int] = ()) -> int:
    """Serve the app that ``load()`` returns, for development: ``load`` runs
    in a fresh worker process (so the app is imported anew each time), and
    the worker is replaced whenever a source file it loaded changes (mtimes
    polled every ``interval`` seconds). A worker whose app fails to load
    waits for the next change. The port is bound here, once, so a restart
    refuses no connection (``uds`` and ``fds``: as for :func:`run_app`).
    Returns 0 after SIGINT/SIGTERM."""
    config = config or ServerConfig()
    threshold = gc_threshold_setting(gc_threshold)
    if uds is not None or fds:
        listeners = _open_listeners(uds, fds, backlog)
    else:
        listeners = [listen(host, port, backlog)]

    def serve_in_worker(channel: socket.socket, ready: Callable[[], None]) -> None:
        try:
            app = load()
        except BaseException as exc:
            _report_sources(channel, exc)
            raise
        _report_sources(channel, None)
        run(_serve_forever(app, listeners, config, threshold, channel, ready),
            watchdog=config.watchdog)

    log.info("reloader %d serving on %s, restarting on changes", os.getpid(),
             ", ".join(describe_listener(listener) for listener in listeners))
    try:
        return _Supervisor(serve_in_worker, 1, config, reload_interval=interval,
                           on_stop=[listener.close for listener in listeners]).run()
    finally:
        _release(listeners)


def gc_threshold_setting(value: int | None = None) -> int:
    """The garbage collector threshold to serve with: ``value``, else the
    ``COROFW_GC_THRESHOLD`` environment variable, else 50,000 (0 leaves
    Python's defaults). Raises ``ValueError`` (a one-line message) for a
    value that is not a whole number from 0 to ``MAX_GC_THRESHOLD``,
    before anything starts."""
    bounds = f"a whole number from 0 to {MAX_GC_THRESHOLD}"
    if value is None:
        text = os.environ.get("COROFW_GC_THRESHOLD", "").strip()
        if not text:
            return DEFAULT_GC_THRESHOLD
        digits = text.isdigit() and text.isascii() and len(text) <= 10
        value = int(text) if digits else -1
        if not 0 <= value <= MAX_GC_THRESHOLD:
            raise ValueError(f"COROFW_GC_THRESHOLD must be {bounds}, not {text!r}")
    if not 0 <= value <= MAX_GC_THRESHOLD:
        raise ValueError(f"the GC threshold must be {bounds}, not {value!r}")
    return value


def _serve_forever(app: Any, listeners: list[Socket], config: ServerConfig, gc_threshold: int,
                   stop: Any = None, on_ready: Callable[[], None] | None = None) -> Coro[None]:
    where = ", ".join(describe_listener(listener) for listener in listeners)

    def ready(server: Any) -> None:
        kernel = current_kernel()
        assert kernel is not None  # called by serve(), in its kernel
        for extra in listeners[1:]:  # serve() accepts on the first
            kernel.spawn(server.accept_loop(extra), "accept loop")
        _tune_gc(gc_threshold)
        log.info("serving on %s (pid %d)", where, os.getpid())
        if on_ready is not None:
            on_ready()

    yield from serve(app, listeners[0], config, stop=stop, on_ready=ready)
    log.info("stopped (pid %d)", os.getpid())


def _tune_gc(threshold: int) -> None:
    """Tune the cyclic garbage collector for a server process: everything
    alive once the server is up (modules, the app, the routes) is frozen out
    of collections, and the youngest generation is collected every
    ``threshold`` allocations instead of every 700 (0: Python's defaults).
    Requests allocate many short-lived objects that reference counting
    frees; frequent collections would mostly rescan the same long-lived
    connections."""
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


class _GiveUp(Exception):
    pass


class _Worker:
    """A forked worker as its supervisor sees it: its pid, when it
    started, and the socket pair end it talks over."""

    __slots__ = ("pid", "started", "channel", "received")

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.channel = channel
        self.received = b""

    def tell(self, message: bytes) -> None:
        try:
            self.channel.send(message)
        except OSError:
            pass  # it has exited already

    def reports(self) -> list[bytes]:
        """The complete lines the worker has sent so far (never blocks)."""
        while True:
            try:
                data = self.channel.recv(65536)
            except OSError:
                break
            if not data:
                break
            self.received += data
        return self.received.split(b"\n")[:-1]

    @property
    def ready(self) -> bool:
        return _READY in self.reports()

    def failure(self) -> str | None:
        for line in self.reports():
            if line.startswith(_FAILED):
                return line[1:].decode("utf-8", "replace")
        return None

    def sources(self) -> dict[str, int]:
        found = {}
        for line in self.reports():
            if line.startswith(_SOURCE):
                mtime, _, path = line[1:].partition(b" ")
                found[os.fsdecode(path)] = int(mtime)
        return found


class _Supervisor:
    """Forks ``count`` workers that each run ``target``, replaces those
    that die, and stops them all on SIGINT/SIGTERM. With
    ``reload_interval`` it also replaces the worker when a source file it
    reported changes, and waits for a change when it failed to start.
    ``on_stop`` are called when a signal asks it to stop, before the
    workers are asked."""

    def __init__(self, target: WorkerTarget, count: int, config: ServerConfig,
                 reload_interval: float | None = None,
                 on_stop: Sequence[Callable[[], None]] = ()) -> None:
        self.target = target
        self.on_stop = on_stop
        self.count = count
        self.config = config
        self.reload_interval = reload_interval
        self.workers: dict[int, _Worker] = {}
        self.stopping: list[int] | None = None  # signals received since stopping began
        self.supervisor_pid = os.getpid()
        self.quick_deaths = 0
        self.sources: dict[str, int] = {}

    def run(self) -> int:
        # SIGINT/SIGTERM interrupt the supervising loop with _Stop; once
        # stopping has begun they are queued for _stop_all, to hurry it.
        def on_signal(signum: int, frame: Any) -> None:
            if self.stopping is None:
                raise _Stop(signum)
            self.stopping.append(signum)

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                for _ in range(self.count):
                    self._start_worker()
                if self.reload_interval is None:
                    while True:
                        pid, status = os.waitpid(-1, 0)
                        self._reap(pid, status)
                else:
                    self._reload_on_changes(self.reload_interval)
            except _Stop as stop:
                self.stopping = []
                log.info("supervisor received %s: stopping workers",
                         signal.Signals(stop.args[0]).name)
                for callback in self.on_stop:
                    callback()
            except _GiveUp as failure:
                self.stopping = []
                self._stop_all()
                raise StartupError(str(failure)) from None
            except BaseException:
                self.stopping = []
                self._kill_all()
                raise
            self._stop_all()
            return 0
        finally:
            for signum, handler in old.items():
                signal.signal(signum, handler)
            for worker in self.workers.values():
                worker.channel.close()

    def _start_worker(self) -> None:
        # Signals stay blocked until the new pid is recorded: a _Stop raised
        # in between would leave a worker nobody stops.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            ours, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                ours.close()
                self._worker_main(mask, theirs)
            theirs.close()
            ours.setblocking(False)
            self.workers[pid] = _Worker(pid, ours)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        log.info("worker %d started", pid)

    def _worker_main(self, mask: Any, channel: socket.socket) -> None:
        status = 1
        serving = False

        def ready() -> None:
            nonlocal serving
            serving = True
            channel.send(_READY + b"\n")

        try:
            for worker in self.workers.values():
                worker.channel.close()  # other workers' channels are not ours
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            _stop_with_parent(self.supervisor_pid)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self.target(channel, ready)
            status = 0
        except BaseException as exc:
            if serving:
                log.exception("worker %d failed", os.getpid())
            else:
                reason = _one_line(exc)
                log.debug("worker %d could not start", os.getpid(), exc_info=True)
                try:
                    channel.sendall(_FAILED + reason.encode("utf-8", "replace") + b"\n")
                except OSError:
                    pass
                status = 3
        finally:
            logging.shutdown()
            os._exit(status)

    def _reap(self, pid: int, status: int) -> None:
        worker = self.workers.pop(pid, None)
        if worker is None:
            return
        failure = worker.failure()
        ready = worker.ready
        worker.channel.close()
        if failure is not None:
            raise _GiveUp(f"worker failed to start: {failure}")
        self.quick_deaths = 0 if ready else self.quick_deaths + 1
        if self.quick_deaths >= _QUICK_DEATHS:
            raise _GiveUp(f"{self.quick_deaths} workers in a row exited before serving "
                          f"(the last: {_describe(status)})")
        log.warning("worker %d exited (%s); starting a new one", pid, _describe(status))
        if time.monotonic() - worker.started < 1.0:
            time.sleep(1.0)  # a worker that dies at once would otherwise spin
        self._start_worker()

    def _reload_on_changes(self, interval: float) -> None:
        """Poll the reported sources' mtimes; replace the worker when one
        changes. A worker that exits is not replaced until a change."""
        while True:
            time.sleep(interval)
            for worker in list(self.workers.values()):
                self.sources.update(worker.sources())
                done, status = os.waitpid(worker.pid, os.WNOHANG)
                if done:
                    self.workers.pop(worker.pid)
                    what = "exited" if worker.ready else "could not start"
                    log.error("worker %d %s (%s); waiting for a change", worker.pid, what,
                              _describe(status))
                    worker.channel.close()
            changed = _changed(self.sources)
            if changed is not None:
                log.info("%s changed: restarting", changed)
                self.sources.clear()
                self.stopping = []
                self._stop_all()
                if self.stopping:
                    raise _Stop(self.stopping[0])
                self.stopping = None
                self._start_worker()

    def _stop_all(self) -> None:
        """Ask every worker to stop, over its channel, and reap them all.
        A SIGINT/SIGTERM arriving meanwhile asks them again, which cancels
        their requests in flight; a third kills them. A worker still alive
        after the grace period plus 5 s (or 5 s after being hurried) is
        killed."""
        for worker in self.workers.values():
            worker.tell(_STOP)
        deadline = time.monotonic() + self.config.graceful_timeout + _HURRY_SECONDS
        stopping = self.stopping if self.stopping is not None else []
        hurried = False
        while self.workers and time.monotonic() < deadline and len(stopping) < 2:
            if stopping and not hurried:
                hurried = True
                log.warning("supervisor received %s again: cancelling the requests in flight",
                            signal.Signals(stopping[0]).name)
                for worker in self.workers.values():
                    worker.tell(_STOP)
                deadline = min(deadline, time.monotonic() + _HURRY_SECONDS)
            for worker in list(self.workers.values()):
                try:
                    done, status = os.waitpid(worker.pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = worker.pid, 0
                if done:
                    self.workers.pop(worker.pid)
                    worker.channel.close()
                    log.info("worker %d stopped (%s)", worker.pid, _describe(status))
            time.sleep(0.02)
        for worker in self.workers.values():
            log.warning("worker %d has not stopped; killing it", worker.pid)
        self._kill_all()

    def _kill_all(self) -> None:
        for worker in self.workers.values():
            _kill(worker.pid, signal.SIGKILL)
            os.waitpid(worker.pid, 0)
            worker.channel.close()
        self.workers.clear()


def _report_sources(channel: socket.socket, error: BaseException | None) -> None:
    """Tell the supervisor which source files to watch: the app's modules
    (those not in the standard library or site-packages) and, when loading
    failed, the files in the error's traceback (a syntax error's too)."""
    paths = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            paths.add(path)
    while error is not None:
        if isinstance(error, SyntaxError) and error.filename:
            paths.add(error.filename)
        tb = error.__traceback__
        while tb is not None:
            paths.add(tb.tb_frame.f_code.co_filename)
            tb = tb.tb_next
        error = error.__cause__ or error.__context__
    installed = {os.path.realpath(sysconfig.get_paths()[name]) + os.sep
                 for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    lines = []
    for path in paths:
        path = os.path.realpath(path)
        if path.startswith(tuple(installed)) or "\n" in path:
            continue
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            continue
        lines.append(_SOURCE + b"%d " % mtime + os.fsencode(path) + b"\n")
    channel.sendall(b"".join(lines))


def _changed(sources: dict[str, int]) -> str | None:
    """The first of ``sources`` whose mtime differs (or that is gone)."""
    for path, mtime in sources.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return path
        except OSError:
            return path
    return None


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


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, StartupError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


__all__ = ["StartupError", "gc_threshold_setting", "run_app", "run_reloading"]

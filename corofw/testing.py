"""Helpers for testing corofw apps.

``serve_in_thread(app)`` serves an app on a free loopback port in a
background thread for the duration of a ``with`` block, for use with any
HTTP client (``httpx.Client`` in corofw's own tests)::

    with serve_in_thread(routes) as server:
        assert httpx.get(server.url + "/").text == "Hello, World!"

``run_virtual(coro)`` runs a coroutine under a
:class:`~corofw.kernel.clock.VirtualClock`, so sleeps and timeouts take no
real time.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .http.config import ServerConfig
from .http.server import Server, serve
from .kernel import VirtualClock, run
from .net import listen


class TestServer:
    """A running server: ``host``, ``port``, ``url`` and, once serving, the
    :class:`~corofw.http.server.Server` (``requests_served``, ...)."""

    __test__ = False  # not a pytest test class

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.server: Server | None = None
        self.error: BaseException | None = None


@contextmanager
def serve_in_thread(app: Any, config: ServerConfig | None = None,
                    host: str = "127.0.0.1", port: int = 0,
                    timeout: float = 10.0) -> Iterator[TestServer]:
    """Serve ``app`` in a background thread until the block exits; then shut
    the server down gracefully and join the thread (nothing is left behind).
    The app's start-up hooks run before the block is entered (one that
    fails raises :class:`~corofw.http.lifespan.StartupError` here), its
    shutdown hooks before the block's exit returns. An exception that
    stopped the server is re-raised at the end."""
    config = config or ServerConfig(access_log=False)
    listener = listen(host, port)
    bound_host, bound_port = listener.getsockname()[:2]
    info = TestServer(bound_host, bound_port)
    ready = threading.Event()
    stop_r, stop_w = socket.socketpair()

    def on_ready(server: Server) -> None:
        info.server = server
        ready.set()

    def target() -> None:
        try:
            run(serve(app, listener, config, stop=stop_r, on_ready=on_ready),
                watchdog=config.watchdog if config is not None else 0.1)
        except BaseException as exc:
            info.error = exc
        finally:
            listener.close()
            ready.set()

    thread = threading.Thread(target=target, name="corofw-test-server", daemon=True)
    try:
        thread.start()
    except BaseException:
        listener.close()
        stop_r.close()
        stop_w.close()
        raise
    try:
        if not ready.wait(timeout):
            raise RuntimeError("the test server did not start")
        if info.error is not None:
            raise info.error
        yield info
    finally:
        stop_w.send(b"x")
        # requests in flight get the grace period to finish
        thread.join(timeout + config.graceful_timeout)
        if thread.is_alive():
            raise RuntimeError("the test server did not stop in time")
        stop_r.close()
        stop_w.close()
    if info.error is not None:
        raise info.error


def run_virtual(coro: Any, start: float = 0.0, autojump_threshold: float = 0.0) -> Any:
    """Run ``coro`` with a :class:`VirtualClock`: waits on timers take no
    real time, and elapsed times measured with ``current_time()`` are exact."""
    return run(coro, clock=VirtualClock(start, autojump_threshold))

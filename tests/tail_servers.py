"""Backends for the tail-tolerance tests, served by corofw in the test's own
kernel (under a virtual clock, so a 1-second straggler costs no real time):
each request's delay and status come from its arrival number."""

from __future__ import annotations

import socket

from corofw import Cancelled, Response, Router, ServerConfig, VirtualClock, run, serve, sleep, spawn
from corofw.http.deadlines import DEADLINE_HEADER
from corofw.net import listen

QUICK = ServerConfig(access_log=False, graceful_timeout=0.5)


class Backend:
    """``GET /item/{i}``: the ``n``-th request (counting from 0, across
    every route) waits ``delay(n)`` seconds, then answers ``status(n)``
    with ``{"id": i, "n": n}`` (and ``Retry-After: retry_after(n)`` when
    that is not None). Records what it saw."""

    def __init__(self, delay=None, status=None, retry_after=None, middleware=()):
        self.delay = delay or (lambda n: 0.0)
        self.status = status or (lambda n: 200)
        self.retry_after = retry_after or (lambda n: None)
        self.calls = 0
        self.deadlines: list[str | None] = []
        self.cancelled: list[str] = []
        self.routes = Router()
        for fn in middleware:
            self.routes.middleware(fn)
        self.routes.get("/item/{i:int}")(self.item)
        self.routes.post("/item/{i:int}")(self.item)

    def item(self, request, i):
        n = self.calls
        self.calls += 1
        self.deadlines.append(request.headers.get(DEADLINE_HEADER))
        try:
            yield from sleep(self.delay(n))
        except Cancelled as exc:
            self.cancelled.append(exc.reason)
            raise
        retry_after = self.retry_after(n)
        headers = {"retry-after": str(retry_after)} if retry_after is not None else None
        return Response.json({"id": i, "n": n}, status=self.status(n), headers=headers)


def closed_port_url():
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def run_served(apps, body, clock=None):
    """Serve each app on a loopback port of its own in a fresh kernel
    (under a VirtualClock unless ``clock`` is given), run ``body(*urls)``,
    stop the servers, and return what ``body`` returned. An app may be a
    plain function: it is called with the list of every server's URL and
    returns the app (so one app can call another)."""

    def main():
        stops = [socket.socketpair() for _ in apps]
        listeners = [listen("127.0.0.1", 0) for _ in apps]
        urls = [f"http://127.0.0.1:{lsn.getsockname()[1]}" for lsn in listeners]
        servers = []
        try:
            for app, lsn, (stop_r, _) in zip(apps, listeners, stops, strict=True):
                if not isinstance(app, Router):
                    app = app(urls)
                servers.append((yield from spawn(serve(app, lsn, QUICK, stop=stop_r))))
            return (yield from body(*urls))
        finally:
            for _, stop_w in stops:
                stop_w.send(b"x")
            for task in servers:
                yield from task.join()
            for pair in stops:
                for sock in pair:
                    sock.close()
            for lsn in listeners:
                lsn.close()

    return run(main(), clock=clock or VirtualClock())


def percentile(values, p):
    """Nearest-rank percentile of ``values`` (0 < p <= 100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]

"""Raw misbehaving servers for the client's tests: a blocking-socket server
in a thread whose handler scripts each connection, and a runner that drives
one client call in a fresh kernel and checks that nothing was left behind."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

import corofw
from corofw import Client, ClientError, current_kernel, run

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RawServer:
    """A blocking-socket server in a thread, for scripted misbehaviour. Each
    accepted connection is passed to ``handler(server, conn, index)``, one at
    a time; ``stopping`` is set when the ``with`` block ends, and any
    unexpected exception in a handler fails the test there."""

    def __init__(self, handler, backlog=16):
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self.requests: list[bytes] = []
        self.notes: list[str] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.events = {name: threading.Event() for name in ("closed", "client-closed")}
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="raw-server", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopping.set()
        self._stop_w.send(b"x")
        self._thread.join(10)
        for sock in (self.listener, self._stop_r, self._stop_w):
            sock.close()
        assert not self._thread.is_alive(), "the raw server did not stop"
        if self.errors and exc_info[0] is None:
            raise self.errors[0]

    def _serve(self):
        while True:
            ready, _, _ = select.select([self.listener, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            conn, _ = self.listener.accept()
            index = self.accepted
            self.accepted += 1
            conn.settimeout(10)
            try:
                self.handler(self, conn, index)
            except (ConnectionError, TimeoutError):
                pass
            except BaseException as exc:
                self.errors.append(exc)
            finally:
                conn.close()

    def read_request(self, conn):
        """One request (head and Content-Length body); None at EOF."""
        data = b""
        while b"\r\n\r\n" not in data:
            got = conn.recv(65536)
            if not got:
                return None
            data += got
        head, _, rest = data.partition(b"\r\n\r\n")
        body = bytearray(rest)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            got = conn.recv(1 << 20)
            if not got:
                return None
            body += got
        self.requests.append(head + b"\r\n\r\n" + bytes(body))
        return head

    def wait_for_eof(self, conn):
        """Block until the client closes its side (recording it), or stop."""
        while not self.stopping.is_set():
            ready, _, _ = select.select([conn], [], [], 0.05)
            if ready:
                try:
                    if not conn.recv(65536):
                        break
                except ConnectionError:
                    break
        else:
            return
        self.notes.append("client closed")
        self.events["client-closed"].set()


def reset(conn):
    """Close ``conn`` with an RST instead of a FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def call(make_coro, **client_options):
    """Run ``make_coro(client)`` in a fresh kernel; return (result or the
    exception raised, seconds taken). Afterwards no task is left and the
    pool holds no connection other than idle ones."""

    def main():
        client = Client(**client_options)
        started = time.monotonic()
        try:
            try:
                result = yield from make_coro(client)
            except ClientError as exc:
                result = exc
            me = yield from corofw.current_task()
            assert current_kernel().tasks == {me}
            idle = sum(len(conns) for conns in client.pool._idle.values())
            assert client.pool.total == idle, client.pool
            return result, time.monotonic() - started
        finally:
            client.close()

    return run(main())


def get(url, **kwargs):
    def go(client):
        return (yield from client.get(url, **kwargs))

    return go


def answer(*parts, gap=0.0, then=None):
    """A handler: read one request, send ``parts`` (``gap`` seconds apart),
    then ``then(server, conn)`` (default: wait for the client to close)."""

    def handler(server, conn, index):
        if server.read_request(conn) is None:
            return
        for i, part in enumerate(parts):
            if i and gap:
                time.sleep(gap)
            conn.sendall(part)
        (then or RawServer.wait_for_eof)(server, conn)

    return handler


def close_now(server, conn):
    pass

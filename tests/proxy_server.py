"""A small forward proxy for the client's tests, on blocking sockets in
threads: plain requests in absolute form are forwarded (one upstream
connection each, closed after the answer), ``CONNECT`` opens a tunnel that
relays bytes both ways. It records what it was asked, can demand
``Proxy-Authorization`` and can refuse tunnels."""

from __future__ import annotations

import select
import socket
import threading
from urllib.parse import urlsplit


class ProxyServer:
    def __init__(self, credentials: str | None = None, refuse_connect: bool = False):
        self.credentials = credentials  # the Proxy-Authorization value required, if any
        self.refuse_connect = refuse_connect
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[tuple[str, dict[str, str]]] = []  # (request line, headers)
        self.errors: list[BaseException] = []
        self._stop_r, self._stop_w = socket.socketpair()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self):
        self._start(self._accept_loop)
        return self

    def __exit__(self, *exc_info):
        self._stop_w.send(b"x")
        for thread in list(self._threads):
            thread.join(10)
        for sock in (self.listener, self._stop_r, self._stop_w):
            sock.close()
        assert not any(t.is_alive() for t in self._threads), "the proxy did not stop"
        if self.errors and exc_info[0] is None:
            raise self.errors[0]

    def _start(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _stopping(self):
        return select.select([self._stop_r], [], [], 0)[0]

    def _accept_loop(self):
        while True:
            ready, _, _ = select.select([self.listener, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            conn, _ = self.listener.accept()
            self._start(self._serve, conn)

    def _serve(self, conn):
        try:
            with conn:
                conn.settimeout(10)
                head, rest = self._read_head(conn)
                if head is None:
                    return
                line, headers = self._parse(head)
                self.seen.append((line, headers))
                if self.credentials and headers.get("proxy-authorization") != self.credentials:
                    conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                method, target, _ = line.split(" ")
                if method == "CONNECT":
                    self._tunnel(conn, target, rest)
                else:
                    self._forward(conn, method, target, headers, rest)
        except (ConnectionError, TimeoutError, OSError):
            pass
        except BaseException as exc:
            self.errors.append(exc)

    def _read_head(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            got = conn.recv(65536)
            if not got:
                return None, b""
            data += got
        head, _, rest = data.partition(b"\r\n\r\n")
        return head.decode("latin-1"), rest

    def _parse(self, head):
        line, *fields = head.split("\r\n")
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        return line, headers

    def _tunnel(self, conn, target, rest):
        if self.refuse_connect:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as upstream:
            conn.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            self._relay(conn, upstream)

    def _relay(self, a, b):
        while not self._stopping():
            ready, _, _ = select.select([a, b, self._stop_r], [], [], 1)
            for sock in ready:
                if sock is self._stop_r:
                    return
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)

    def _forward(self, conn, method, target, headers, rest):
        url = urlsplit(target)
        assert url.scheme == "http", target  # absolute form, as a proxy must get it
        path = url.path + (f"?{url.query}" if url.query else "")
        lines = [f"{method} {path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()
                  if name not in ("proxy-authorization", "connection")]
        lines.append("connection: close")
        length = int(headers.get("content-length", "0"))
        body = rest
        while len(body) < length:
            body += conn.recv(65536)
        with socket.create_connection((url.hostname, url.port or 80), timeout=10) as upstream:
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            while data := upstream.recv(65536):
                conn.sendall(data)

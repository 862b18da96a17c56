"""The ceiling for one pure-Python process: an epoll loop that answers every
request head it sees with a canned response, parsing nothing.

It counts the heads in what arrives (each ends with a blank line, and a
hello-world GET has no body), so pipelined requests are answered too, and
keeps a connection open until the client closes it::

    python benchmarks/peers/epoll_ceiling.py PORT
"""

from __future__ import annotations

import select
import socket
import sys

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 13\r\n\r\nHello, World!")


def serve(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    listening = listener.fileno()
    connections: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}  # a head split between two reads
    while True:
        for fd, _ in poller.poll():
            if fd == listening:
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    connections[conn.fileno()] = conn
                    poller.register(conn.fileno(), select.EPOLLIN)
                continue
            conn = connections[fd]
            try:
                data = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                poller.unregister(fd)
                connections.pop(fd).close()
                pending.pop(fd, None)
                continue
            data = pending.pop(fd, b"") + data
            heads = data.count(b"\r\n\r\n")
            rest = data[data.rfind(b"\r\n\r\n") + 4:] if heads else data
            if rest:
                pending[fd] = rest
            if heads:
                try:
                    conn.send(RESPONSE * heads)  # small enough for the socket buffer
                except OSError:
                    pass


if __name__ == "__main__":
    serve(int(sys.argv[1]))

"""Helpers for the board's tests (tests/test_board*.py): serving the app on
a fresh schema, an HTTP client that knows its forms, a reader of the live
event stream, and real images to upload."""

from __future__ import annotations

import json
import re
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h11
import httpx

from apps.board.app import make_app
from apps.board.db import create_schema
from apps.board.settings import Settings
from corofw import Limits, ServerConfig, run
from corofw.data import pg
from corofw.testing import TestServer, serve_in_thread

KEY = "a test key that is long enough to sign with"
PASSWORD = "correct horse battery"
BODY_LIMIT = 4 << 20  # the server's; the board's image limit is below it


def reset_database(dsn: str) -> None:
    """The board's schema, empty."""

    def main():
        yield from create_schema(dsn)
        conn = yield from pg.connect(dsn)
        with conn:
            yield from conn.execute("TRUNCATE posts, users RESTART IDENTITY CASCADE")

    run(main())


def query(dsn: str, sql: str, *args: Any) -> list[Any]:
    """The rows of one query, in a connection of its own."""

    def main():
        conn = yield from pg.connect(dsn)
        with conn:
            return (yield from conn.fetch(sql, *args))

    return run(main())


@contextmanager
def serve_board(dsn: str, backend_url: str, media_dir: str, **settings: Any
                ) -> Iterator[tuple[TestServer, Any]]:
    """The board served in a thread on 127.0.0.1, port 0: the server and
    the app's :class:`~apps.board.context.Board`. ``settings`` override
    those of :class:`Settings` (a short keep-alive by default)."""
    settings.setdefault("heartbeat", 0.2)
    board_settings = Settings(database_url=dsn, backend_url=backend_url, secret_keys=(KEY,),
                              media_dir=media_dir, **settings)
    routes, board = make_app(board_settings)
    config = ServerConfig(access_log=False, limits=Limits(max_body_bytes=BODY_LIMIT),
                          graceful_timeout=2.0)
    with serve_in_thread(routes, config) as server:   # its hooks open and close the pool
        yield server, board


def hidden_token(page: str) -> str:
    """The CSRF token a page's form carries."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


class BoardClient(httpx.Client):
    """An ``httpx.Client`` on the board that keeps its cookies, as a
    browser does, and fills in the CSRF token of its forms."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(base_url=url, timeout=10.0, **kwargs)

    @property
    def csrf(self) -> str:
        """This client's CSRF token (the signed value of its cookie)."""
        if "csrftoken" not in self.cookies:
            self.get("/login")
        return self.cookies["csrftoken"]

    def submit(self, path: str, data: dict[str, Any] | None = None, files: Any = None,
               token: str | None = None, **kwargs: Any) -> httpx.Response:
        """POST a form as the page would, with this client's CSRF token
        unless ``token`` is given."""
        fields = {"csrf_token": self.csrf if token is None else token, **(data or {})}
        return self.post(path, data=fields, files=files, **kwargs)

    def signup(self, name: str, password: str = PASSWORD) -> httpx.Response:
        return self.submit("/signup", {"username": name, "password": password})

    def login(self, name: str, password: str = PASSWORD, next: str = "") -> httpx.Response:
        return self.submit("/login", {"username": name, "password": password, "next": next})

    def post_text(self, body: str) -> int:
        """Post through the JSON API; the new post's id."""
        response = self.post("/api/posts", json={"body": body},
                             headers={"x-csrf-token": self.csrf})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())


class EventStream:
    """A server-sent event stream read off a socket of its own, in the
    calling thread: ``status`` and ``headers`` of the answer, then
    :meth:`next_event` for each event (comments skipped)."""

    def __init__(self, port: int, path: str, headers: dict[str, str],
                 timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h11.Connection(h11.CLIENT)
        self.text = ""
        self.ended = False
        request = h11.Request(method="GET", target=path,
                              headers=[("host", f"127.0.0.1:{port}"),
                                       ("accept", "text/event-stream"), *headers.items()])
        self.sock.sendall(self.conn.send(request))
        head = self._next(timeout)
        assert isinstance(head, h11.Response), head
        self.status = head.status_code
        self.headers = {name.decode(): value.decode() for name, value in head.headers}

    def _next(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("nothing arrived on the event stream in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("nothing arrived on the event stream in time") from None
            self.conn.receive_data(data)

    def body(self, timeout: float = 5.0) -> str:
        """The whole body of a response that is not a stream."""
        while not self.ended:
            self._pull(timeout)
        return self.text

    def _pull(self, timeout: float) -> None:
        event = self._next(timeout)
        if isinstance(event, h11.Data):
            self.text += bytes(event.data).decode()
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            self.ended = True
        else:
            raise AssertionError(f"unexpected {event!r}")

    def next_event(self, timeout: float = 5.0) -> dict[str, str]:
        """The next event's fields (``event``, ``id``, ``data``, ``retry``)."""
        deadline = time.monotonic() + timeout
        while True:
            block, separator, rest = self.text.partition("\n\n")
            if separator:
                self.text = rest
                fields: dict[str, str] = {}
                for line in block.split("\n"):
                    if line.startswith(":") or not line:
                        continue
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
                if fields:
                    return fields
                continue
            if self.ended:
                raise EOFError("the event stream ended")
            self._pull(max(deadline - time.monotonic(), 0.001))

    def next_of(self, kind: str, timeout: float = 5.0) -> dict[str, str]:
        """The next event named ``kind``, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(deadline - time.monotonic(), 0.001))
            if event.get("event") == kind:
                return event

    def next_posts(self, timeout: float = 5.0) -> tuple[str, list[dict[str, Any]]]:
        """The next ``posts`` event: its id, and its posts (id and HTML each)."""
        event = self.next_of("posts", timeout)
        return event["id"], json.loads(event["data"])

    def post_ids(self, count: int, timeout: float = 5.0) -> list[int]:
        """The ids of the posts the next ``posts`` events bring, until
        there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        ids: list[int] = []
        while len(ids) < count:
            ids += [post["id"] for post in
                    self.next_posts(max(deadline - time.monotonic(), 0.001))[1]]
        return ids

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_events(server: TestServer, client: BoardClient, path: str = "/events?after=0",
                **headers: str) -> EventStream:
    """``client``'s live stream on ``server``."""
    return EventStream(server.port, path, {"cookie": client.cookie_header(), **headers})


def make_png(width: int = 16, height: int = 16, rgb: tuple[int, int, int] = (47, 111, 221),
             padding: int = 0) -> bytes:
    """A real PNG of one colour; ``padding`` adds an ancillary chunk of
    that many bytes (decoders skip it) to make the file as large as needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    extra = chunk(b"teXt", b"padding\x00" + b"x" * padding) if padding else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

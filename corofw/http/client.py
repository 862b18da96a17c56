"""The outbound HTTP/1.1 client, used from handlers with ``yield from``::

    client = Client(timeout=5)
    resp = yield from client.get("http://127.0.0.1:9001/api/1", params={"delay": 1})
    resp.raise_for_status()
    data = resp.json()

Each call is a coroutine doing non-blocking connect, send and recv, so ten
calls gathered together wait at the same time: while they wait, the
process sleeps in ``epoll_wait``. Connections are pooled per
``(scheme, host, port)`` and kept alive between calls. The module-level
:func:`get`, :func:`post`, ... use a default client (one per thread).
"""

from __future__ import annotations

import dataclasses
import errno
import json as _json
import re
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..kernel.deadline import Deadline
from ..kernel.loop import current_kernel
from ..kernel.task import Cancelled
from ..kernel.traps import CLOCK, CURRENT, READ, WRITE, Coro
from ..net import open_connection
from .client_errors import (
    TIMEOUTS,
    ClientError,
    ConnectError,
    ConnectionRefused,
    DNSError,
    HTTPStatusError,
    ReadError,
    RemoteProtocolError,
    TLSError,
    WriteError,
)
from .headers import Headers
from .parser import DEFAULT_RESPONSE_LIMITS, ProtocolError
from .pool import Pool, PooledConnection

_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f]")
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_CACHE_SIZE = 2048
_RECV_SIZE = 65536
_encode_json = _json.JSONEncoder(separators=(",", ":")).encode
_decode_json = _json.JSONDecoder().decode
# A body read into memory is capped (1 GiB); a streamed one is not.
_STREAM_LIMITS = dataclasses.replace(DEFAULT_RESPONSE_LIMITS, max_body_bytes=1 << 62)


@dataclass(frozen=True)
class Timeout:
    """Seconds allowed per phase (None: no limit). ``read`` is the longest
    silence while waiting for the response; ``total`` bounds the whole call."""

    connect: float | None = 10.0
    read: float | None = 30.0
    write: float | None = 30.0
    pool: float | None = 30.0
    total: float | None = None

    @classmethod
    def of(cls, value: Any) -> Timeout:
        """A Timeout from a Timeout, a number (every phase) or None (none)."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(None, None, None, None, None)
        seconds = float(value)
        return cls(seconds, seconds, seconds, seconds, None)


class ClientResponse:
    """A response, shaped like httpx's: ``status_code``, ``reason_phrase``,
    ``headers`` (case-insensitive), ``content``, ``text``, ``json()``,
    ``raise_for_status()``. With ``stream=True`` the body is read with
    ``yield from resp.read_chunk()`` (``b""`` at the end) or
    ``yield from resp.read()``; call :meth:`close` (or use ``with``) if you
    stop early: until then the response holds its pool slot."""

    __slots__ = ("status_code", "reason_phrase", "http_version", "headers", "url", "method",
                 "elapsed", "_content", "_client", "_conn", "_keep_alive", "_timeout",
                 "_total_until", "_started", "_done")

    def __init__(self, client: Client, conn: PooledConnection, method: str, url: str,
                 timeout: Timeout, started: float, total_until: float | None = None) -> None:
        head = conn.parser.head
        assert head is not None
        self.status_code = head.status
        self.reason_phrase = head.reason
        self.http_version = head.version
        self.headers = Headers.from_raw(head.fields)
        self.url = url
        self.method = method
        self.elapsed = 0.0
        self._content: bytes | None = None
        self._client = client
        self._conn: PooledConnection | None = conn
        self._keep_alive = head.keep_alive and head.status != 101  # 101: not HTTP any more
        self._timeout = timeout
        self._total_until = total_until
        self._started = started
        self._done = False

    def __repr__(self) -> str:
        return f"<ClientResponse [{self.status_code} {self.reason_phrase}]>"

    @property
    def content(self) -> bytes:
        """The whole body (for a streamed response, once read)."""
        if self._content is None:
            raise RuntimeError("the body of a streamed response has not been read; "
                               "use `yield from response.read()`")
        return self._content

    @property
    def text(self) -> str:
        """The body decoded with the Content-Type charset (UTF-8 if none)."""
        charset = None
        for part in (self.headers.get("content-type") or "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset":
                charset = value.strip('"')
        return self.content.decode(charset or "utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (UTF-8, or UTF-16/32 as ``json.loads``
        detects them)."""
        content = self.content
        if b"\x00" in content[:4] or content[:3] == b"\xef\xbb\xbf":
            return _json.loads(content)  # UTF-16/32, or a UTF-8 BOM: let json detect it
        return _decode_json(content.decode("utf-8", "surrogatepass"))

    @property
    def is_success(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status_code < 300

    @property
    def is_error(self) -> bool:
        """True for a 4xx or 5xx status."""
        return self.status_code >= 400

    def raise_for_status(self) -> ClientResponse:
        """Raise :class:`HTTPStatusError` for a 4xx/5xx status; else return self."""
        if self.status_code >= 400:
            kind = "client error" if self.status_code < 500 else "server error"
            raise HTTPStatusError(f"{kind} {self.status_code} {self.reason_phrase}",
                                  self.url, self)
        return self

    def read_chunk(self) -> Coro[bytes]:
        """The next piece of the body; ``b""`` once it has all been read."""
        while not self._done:
            conn = self._conn
            assert conn is not None
            try:
                data, done = yield from self._client._read_body(conn, self._timeout,
                                                                self._total_until, self.url)
            except BaseException:
                self._finish(False)
                raise
            if done:
                self._finish(True)
            if data:
                return data
        return b""

    def read(self) -> Coro[bytes]:
        """The rest of the body (all of it, if nothing was read yet)."""
        if self._content is None:
            parts = []
            while True:
                data = yield from self.read_chunk()
                if not data:
                    break
                parts.append(data)
            self._content = b"".join(parts)
        return self._content

    def close(self) -> None:
        """Stop reading: the connection is closed, not reused."""
        if not self._done:
            self._finish(False)

    def __enter__(self) -> ClientResponse:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """``with (yield from client.get(url, stream=True)) as resp:`` gives
        the connection back even when the block stops reading early."""
        self.close()

    def _finish(self, complete: bool) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._give_back(conn, complete and self._keep_alive)
        self.elapsed = _clock() - self._started


class Client:
    """An HTTP/1.1 client with a keep-alive connection pool.

    ``base_url`` is prepended to relative URLs; ``headers`` are sent with
    every request; ``timeout`` is a :class:`Timeout` or a number of
    seconds; ``max_connections`` / ``max_per_host`` cap the pool (callers
    wait for a free slot); ``ssl_context`` replaces the default, which
    verifies certificates against the system trust store (``verify=False``
    turns verification off).
    """

    def __init__(self, base_url: str = "", headers: Any = None, timeout: Any = Timeout(),
                 max_connections: int = 100, max_per_host: int | None = None,
                 max_idle_per_host: int = 100, idle_timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, verify: bool = True,
                 user_agent: str = "corofw") -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = Timeout.of(timeout)
        self.pool = Pool(max_connections, max_per_host, max_idle_per_host, idle_timeout)
        self._ssl_context = ssl_context
        self._verify = verify
        default = [("user-agent", user_agent), ("accept", "*/*")]
        self._base_pairs = _merge_headers(default, headers)
        self._base_headers = _encode_headers(self._base_pairs)
        self._base_names = frozenset(name.lower() for name, _ in self._base_pairs)
        self._origins: dict[str, tuple[str, str, int, str]] = {}
        self._prepared: dict[tuple[str, str, str], tuple[str, tuple[str, str, int], bytes]] = {}

    def __repr__(self) -> str:
        return f"<Client {self.pool!r}>"

    def close(self) -> None:
        """Close the idle pooled connections."""
        self.pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- the public calls ------------------------------------------------------

    def get(self, url: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A GET request; see :meth:`request` for the arguments."""
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A HEAD request; see :meth:`request` for the arguments."""
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A OPTIONS request; see :meth:`request` for the arguments."""
        return self.request("OPTIONS", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A POST request; see :meth:`request` for the arguments."""
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A PUT request; see :meth:`request` for the arguments."""
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A PATCH request; see :meth:`request` for the arguments."""
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Coro[ClientResponse]:
        """A DELETE request; see :meth:`request` for the arguments."""
        return self.request("DELETE", url, **kwargs)

    def request(self, method: str, url: str, *, params: Any = None, headers: Any = None,
                content: bytes | str | None = None, data: Any = None, json: Any = None,
                timeout: Any = ..., stream: bool = False) -> Coro[ClientResponse]:
        """Send one request and return the response (body read, unless
        ``stream``). Raises a :class:`ClientError` subclass naming the URL:
        ConnectError (ConnectionRefused, DNSError, TLSError), ReadError,
        WriteError, RemoteProtocolError or a ClientTimeout per phase."""
        method = method.upper()
        timeouts = self.timeout if timeout is ... else Timeout.of(timeout)
        plain = params is headers is content is data is json is None
        prepared = self._prepared.get((method, self.base_url, url)) if plain else None
        if prepared is None:
            prepared = self._prepare(method, url, params, headers, content, data, json)
            if plain:
                if len(self._prepared) >= _URL_CACHE_SIZE:
                    self._prepared.clear()
                self._prepared[method, self.base_url, url] = prepared
        full_url, key, payload = prepared
        retryable = method in _IDEMPOTENT
        kernel = current_kernel()
        task = kernel.current if kernel is not None else None
        if task is None:
            task = yield (CURRENT,)
        started = task._kernel.clock()
        total_until = None if timeouts.total is None else started + timeouts.total
        waiting: Deadline | None = None  # for the pool and connect phases, made if needed
        deadline: Deadline | None = None
        try:
            for attempt in range(2):
                conn = self.pool.take_idle(key, started, retryable)
                if conn is None:
                    if waiting is None:
                        waiting = Deadline(task)
                    conn = yield from self._open(key, waiting, timeouts, total_until, full_url)
                deadline = conn.deadline
                deadline.retarget(task)
                parser = conn.parser
                parser.limits = _STREAM_LIMITS if stream else DEFAULT_RESPONSE_LIMITS
                parser.start(method)
                conn.received = 0
                try:
                    yield from _exchange(conn, payload, timeouts, total_until, full_url)
                    break
                except (ReadError, WriteError, RemoteProtocolError) as exc:
                    deadline.clear()
                    self.pool.discard(conn, key)
                    # A reused connection that died before answering was most
                    # likely closed by the server while idle: try once more on a
                    # fresh one, if the request may be repeated or never left.
                    unanswered = conn.reused and not conn.received
                    unsent = isinstance(exc, WriteError) and not conn.sent
                    if attempt == 0 and unanswered and (retryable or unsent):
                        continue
                    raise
                except BaseException:
                    deadline.clear()
                    self.pool.discard(conn, key)
                    raise
            response = ClientResponse(self, conn, method, full_url, timeouts, started,
                                      total_until)
            if stream:
                deadline.clear()  # reading the body arms it again
            else:
                try:
                    try:
                        data, done = parser.read_body()  # most bodies came with the head
                    except ProtocolError as exc:
                        raise RemoteProtocolError(exc.message, full_url) from None
                    if done:
                        response._content = data
                        deadline.clear()
                        response._finish(True)
                    else:
                        yield from _read_all(response, timeouts, total_until, data)
                except BaseException:
                    response.close()
                    raise
            return response
        except Cancelled as exc:
            scope = exc.scope
            if scope is not None and (scope is waiting or scope is deadline):
                label = scope.label
                raise TIMEOUTS[label](f"{label} timeout", full_url) from None
            raise
        finally:
            if waiting is not None:
                waiting.close()

    # -- one exchange ------------------------------------------------------------

    def _open(self, key: tuple[str, str, int], waiting: Deadline, timeouts: Timeout,
              total_until: float | None, url: str) -> Coro[PooledConnection]:
        """A connection for ``key``: an idle one freed while waiting for the
        pool's limits, or a new one."""
        _phase(waiting, "pool", timeouts.pool, total_until)
        now = yield (CLOCK,)
        conn = yield from self.pool.acquire(key, now)
        if conn is not None:
            waiting.clear()
            return conn
        try:
            _phase(waiting, "connect", timeouts.connect, total_until)
            sock = yield from self._connect(key, url)
        except BaseException:
            self.pool.discard(None, key)
            raise
        finally:
            waiting.clear()
        return PooledConnection(key, sock, Deadline(waiting.task))

    def _connect(self, key: tuple[str, str, int], url: str) -> Coro[Any]:
        scheme, host, port = key
        context = None
        if scheme == "https":
            context = self._ssl_context or _default_context(self._verify)
        try:
            return (yield from open_connection(host, port, ssl=context))
        except socket.gaierror as exc:
            raise DNSError(f"cannot resolve {host!r}: {exc.strerror}", url) from None
        except ssl.SSLError as exc:
            raise TLSError(f"TLS handshake with {host}:{port} failed: {exc}", url) from None
        except ConnectionRefusedError:
            raise ConnectionRefused(f"connection to {host}:{port} refused", url) from None
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                raise ConnectionRefused(f"connection to {host}:{port} refused", url) from None
            raise ConnectError(f"cannot connect to {host}:{port}: {exc}", url) from None

    def _read_body(self, conn: PooledConnection, timeouts: Timeout, total_until: float | None,
                   url: str) -> Coro[tuple[bytes, bool]]:
        task = yield (CURRENT,)
        deadline = conn.deadline
        deadline.retarget(task)
        try:
            return (yield from _read_some_body(conn, timeouts, total_until, url))
        except Cancelled as exc:
            if exc.scope is deadline:
                label = deadline.label
                raise TIMEOUTS[label](f"{label} timeout", url) from None
            raise
        finally:
            deadline.clear()

    def _give_back(self, conn: PooledConnection, reusable: bool) -> None:
        # Bytes beyond the end of the response would be taken for the next
        # response on this connection: such a connection is never reused.
        if reusable and not conn.parser.buffered:
            self.pool.release(conn, _clock())
        else:
            self.pool.discard(conn, conn.key)

    # -- building the request ----------------------------------------------------

    def _prepare(self, method: str, url: str, params: Any, headers: Any, content: Any,
                 data: Any, json: Any) -> tuple[str, tuple[str, str, int], bytes]:
        """``(full URL, pool key, request bytes)``; a plain request (no
        params, headers or body) is prepared once per method and URL."""
        if "://" in url:
            full_url = url
        elif self.base_url:
            full_url = self.base_url + url
        else:
            raise ClientError("a relative URL needs a client with a base_url", url)
        scheme, host, port, target, authority = self._split(full_url)
        if params:
            query = urlencode(params, doseq=True)
            target += ("&" if "?" in target else "?") + query
            full_url += ("&" if "?" in full_url else "?") + query
        payload = self._serialize(method, target, authority, headers, content, data, json)
        return full_url, (scheme, host, port), payload

    def _split(self, url: str) -> tuple[str, str, int, str, str]:
        """``(scheme, host, port, target, authority)`` of an absolute URL.
        The origin part is parsed once and cached; the target is the rest
        (without a fragment), so distinct paths cost no parsing."""
        start = url.find("://") + 3
        end = len(url)
        for mark in "/?#":
            found = url.find(mark, start)
            if 0 <= found < end:
                end = found
        origin = url[:end]
        parsed = self._origins.get(origin)
        if parsed is None:
            parsed = self._parse_origin(origin, url)
            if len(self._origins) >= _URL_CACHE_SIZE:
                self._origins.clear()
            self._origins[origin] = parsed
        target = url[end:].partition("#")[0] or "/"
        if target[0] == "?":
            target = "/" + target
        scheme, host, port, authority = parsed
        return scheme, host, port, target, authority

    @staticmethod
    def _parse_origin(origin: str, url: str) -> tuple[str, str, int, str]:
        parts = urlsplit(origin)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ClientError(f"unsupported URL scheme {parts.scheme!r}", url)
        host = parts.hostname
        if not host:
            raise ClientError("the URL has no host", url)
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            raise ClientError("invalid port in URL", url) from None
        shown = f"[{host}]" if ":" in host else host
        authority = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
        return scheme, host, port, authority

    def _serialize(self, method: str, target: str, authority: str, headers: Any,
                   content: Any, data: Any, json: Any) -> bytes:
        body = b""
        content_type = None
        if json is not None:
            body = _encode_json(json).encode()
            content_type = "application/json"
        elif data is not None:
            if isinstance(data, (bytes, str)):
                body = data.encode() if isinstance(data, str) else data
            else:
                body = urlencode(data, doseq=True).encode()
                content_type = "application/x-www-form-urlencoded"
        elif content is not None:
            body = content.encode() if isinstance(content, str) else bytes(content)
        if _UNSAFE_TARGET.search(target):
            raise ClientError("the URL contains whitespace or line breaks", target)
        if headers or "host" in self._base_names:
            pairs = _merge_headers(self._base_pairs, headers)
            names = {name.lower() for name, _ in pairs}
            host = [value for name, value in pairs if name.lower() == "host"]
            if host:
                authority = host[-1]
                pairs = [p for p in pairs if p[0].lower() != "host"]
            encoded = _encode_headers(pairs)
        else:
            names = self._base_names
            encoded = self._base_headers
        if any(c in authority for c in "\r\n\0"):
            raise ClientError("invalid Host header", target)
        lines = [f"{method} {target} HTTP/1.1\r\nhost: {authority}\r\n".encode("latin-1"),
                 encoded]
        if content_type and "content-type" not in names:
            lines.append(f"content-type: {content_type}\r\n".encode())
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)


_FRAMING = frozenset({"content-length", "transfer-encoding"})


def _merge_headers(base: list[tuple[str, str]], extra: Any) -> list[tuple[str, str]]:
    """``base`` with every header named in ``extra`` replaced by ``extra``'s
    values (names compare without case). The body's framing headers are the
    client's to write: a caller's Content-Length or Transfer-Encoding is
    dropped, so the request can never disagree with its own body."""
    if not extra:
        return list(base)
    added = [(name, value) for name, value in Headers(extra).items()
             if name.lower() not in _FRAMING]
    names = {name.lower() for name, _ in added}
    return [pair for pair in base if pair[0].lower() not in names] + added


def _encode_headers(pairs: Any) -> bytes:
    out = []
    for name, value in pairs:
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ClientError(f"invalid header {name!r}")
        out.append(f"{name}: {value}\r\n".encode("latin-1"))
    return b"".join(out)


def _clock() -> float:
    """The running kernel's clock (virtual under a VirtualClock)."""
    kernel = current_kernel()
    return kernel.clock() if kernel is not None else time.monotonic()


def _phase(deadline: Deadline, label: str, seconds: float | None,
           total_until: float | None) -> None:
    """Arm ``deadline`` for a phase, bounded by the call's total deadline."""
    if total_until is not None:
        left = total_until - deadline.kernel.clock()
        if seconds is None or left < seconds:
            deadline.set(max(left, 0.0), "total")
            return
    if seconds is None:
        deadline.clear()
    else:
        deadline.set(seconds, label)


def _exchange(conn: PooledConnection, payload: bytes, timeouts: Timeout,
              total_until: float | None, url: str) -> Coro[None]:
    """Send the request and read until the response head has been parsed.
    ``conn.sent`` and ``conn.received`` count the bytes that went each way
    (what decides whether a failed request may be retried). The write
    deadline only runs when the socket cannot take the request at once."""
    sock = conn.sock
    raw = sock.sock
    parser = conn.parser
    plain = type(raw) is socket.socket  # TLS encrypts as it sends, and may buffer replies
    conn.sent = 0
    try:
        if plain:
            try:
                sent = raw.send(payload)
            except BlockingIOError:
                sent = 0
        else:
            sent = yield from sock.send(payload)
    except OSError as exc:
        raise WriteError(f"sending the request failed: {exc}", url) from None
    conn.sent = sent
    if sent < len(payload):
        yield from _send_rest(conn, payload, sent, timeouts, total_until, url)
    if plain and not parser.buffered:
        # The request has just left: nothing can have come back yet, so wait
        # first instead of a recv that would fail.
        _phase(conn.deadline, "read", timeouts.read, total_until)
        yield (READ, sock.fd)
        try:
            _deliver(conn, raw.recv(_RECV_SIZE))
        except BlockingIOError:
            pass  # woken early: the loop below waits again
        except OSError as exc:
            raise ReadError(f"reading the response failed: {exc}", url) from None
    while True:
        try:
            if parser.next_head() is not None:
                return
        except ProtocolError as exc:
            if not conn.received:  # closed at once: a dead connection, not bad HTTP
                raise ReadError(exc.message, url) from None
            raise RemoteProtocolError(exc.message, url) from None
        yield from _receive(conn, timeouts, total_until, url)


def _send_rest(conn: PooledConnection, payload: bytes, sent: int, timeouts: Timeout,
               total_until: float | None, url: str) -> Coro[None]:
    _phase(conn.deadline, "write", timeouts.write, total_until)
    try:
        yield from conn.sock.send_all(memoryview(payload)[sent:])
    except OSError as exc:
        raise WriteError(f"sending the request failed: {exc}", url) from None
    conn.sent = len(payload)


def _receive(conn: PooledConnection, timeouts: Timeout, total_until: float | None,
             url: str) -> Coro[None]:
    """Feed the parser the next bytes from the server (or its end of
    stream). The read deadline, the longest silence allowed, is armed each
    time the call has to wait."""
    sock = conn.sock
    raw = sock.sock
    while True:
        try:
            data = raw.recv(_RECV_SIZE)
            break
        except (BlockingIOError, ssl.SSLWantReadError):
            trap = (READ, sock.fd)
        except ssl.SSLWantWriteError:
            trap = (WRITE, sock.fd)
        except ssl.SSLEOFError:
            data = b""
            break
        except OSError as exc:
            raise ReadError(f"reading the response failed: {exc}", url) from None
        _phase(conn.deadline, "read", timeouts.read, total_until)
        yield trap
    _deliver(conn, data)


def _deliver(conn: PooledConnection, data: bytes) -> None:
    """Hand the parser what a recv returned: bytes, or ``b""`` for the end
    of the stream."""
    if data:
        conn.received += len(data)
        conn.parser.feed(data)
    else:
        conn.parser.feed_eof()


def _read_some_body(conn: PooledConnection, timeouts: Timeout, total_until: float | None,
                    url: str) -> Coro[tuple[bytes, bool]]:
    parser = conn.parser
    while True:
        try:
            data, done = parser.read_body()
        except ProtocolError as exc:
            raise RemoteProtocolError(exc.message, url) from None
        if data or done:
            return data, done
        yield from _receive(conn, timeouts, total_until, url)


def _read_all(response: ClientResponse, timeouts: Timeout, total_until: float | None,
              data: bytes) -> Coro[None]:
    """Read the rest of a body whose start (``data``) came with the head."""
    conn = response._conn
    assert conn is not None
    parts = [data] if data else []
    done = False
    while not done:
        data, done = yield from _read_some_body(conn, timeouts, total_until, response.url)
        if data:
            parts.append(data)
    response._content = b"".join(parts)
    conn.deadline.clear()
    response._finish(True)


_contexts: dict[bool, ssl.SSLContext] = {}


def _default_context(verify: bool) -> ssl.SSLContext:
    context = _contexts.get(verify)
    if context is None:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _contexts[verify] = context
    return context


_local = threading.local()


def default_client() -> Client:
    """The default :class:`Client` of the kernel running in this thread
    (created on first use). A kernel's connections cannot outlive it: when
    a new kernel asks, the previous kernel's idle connections are closed."""
    kernel = current_kernel()
    client = getattr(_local, "client", None)
    if client is None or _local.kernel_ref() is not kernel:
        if client is not None:
            client.close()
        client = _local.client = Client()
        _local.kernel_ref = weakref.ref(kernel) if kernel is not None else (lambda: None)
    return client


def request(method: str, url: str, **kwargs: Any) -> Coro[ClientResponse]:
    """One request with the default client; see :meth:`Client.request`."""
    return default_client().request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> Coro[ClientResponse]:
    """A GET request with the default client."""
    return default_client().request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Coro[ClientResponse]:
    """A POST request with the default client."""
    return default_client().request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> Coro[ClientResponse]:
    """A PUT request with the default client."""
    return default_client().request("PUT", url, **kwargs)


def patch(url: str, **kwargs: Any) -> Coro[ClientResponse]:
    """A PATCH request with the default client."""
    return default_client().request("PATCH", url, **kwargs)


def delete(url: str, **kwargs: Any) -> Coro[ClientResponse]:
    """A DELETE request with the default client."""
    return default_client().request("DELETE", url, **kwargs)

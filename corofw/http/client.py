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
import math
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from ..kernel.deadline import Deadline
from ..kernel.loop import current_kernel
from ..kernel.task import Cancelled
from ..kernel.traps import CLOCK, CURRENT, Coro
from ..net import open_connection
from .client_errors import (
    TIMEOUTS,
    ConnectError,
    ConnectionRefused,
    DNSError,
    HTTPStatusError,
    ReadError,
    RemoteProtocolError,
    TLSError,
    WriteError,
)
from .exchange import arm, exchange, read_some_body
from .headers import Headers
from .parser import DEFAULT_RESPONSE_LIMITS, ProtocolError
from .pool import Pool, PooledConnection
from .prepare import CACHE_SIZE, RequestBuilder

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_PHASES = ("connect", "read", "write", "pool", "total")
_decode_json = _json.JSONDecoder().decode
# A body read into memory is capped (1 GiB); a streamed one is not.
_STREAM_LIMITS = dataclasses.replace(DEFAULT_RESPONSE_LIMITS, max_body_bytes=1 << 62)


@dataclass(frozen=True)
class Timeout:
    """Seconds allowed per phase (None or ``inf``: no limit). ``read`` is
    the longest silence while waiting for the response, ``write`` the
    longest stall while sending the request; ``total`` bounds the whole
    call. A negative or NaN value is a ValueError here, not a surprise
    later."""

    connect: float | None = 10.0
    read: float | None = 30.0
    write: float | None = 30.0
    pool: float | None = 30.0
    total: float | None = None

    def __post_init__(self) -> None:
        for phase in _PHASES:
            value = getattr(self, phase)
            if value is None:
                continue
            if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
                raise TypeError(f"Timeout {phase} must be a number of seconds or None, "
                                f"got {value!r}")
            seconds = float(value)
            if not seconds >= 0:  # also catches NaN
                raise ValueError(f"Timeout {phase} must be zero or more seconds, got {value!r}")
            object.__setattr__(self, phase, None if math.isinf(seconds) else seconds)

    @classmethod
    def of(cls, value: Any) -> Timeout:
        """A Timeout from a Timeout, a number (every phase) or None (none)."""
        if isinstance(value, Timeout):
            return value
        return cls(value, value, value, value, None)


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
        """The body decoded with the Content-Type charset; UTF-8 when there
        is none or Python does not know it (as httpx does). Undecodable
        bytes become U+FFFD."""
        charset = None
        for part in (self.headers.get("content-type") or "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset":
                charset = value.strip().strip('"')
        if charset:
            try:
                return self.content.decode(charset, "replace")
            except LookupError:
                pass  # unknown, or not a text encoding
        return self.content.decode("utf-8", "replace")

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
    wait for a free slot, first come first served); ``ssl_context``
    replaces the default, which verifies certificates against the system
    trust store (``verify=False`` turns verification off).

    A client may be kept at module level and used by one ``run()`` after
    another: its connections belong to the kernel that opened them, and a
    new kernel starts with an empty pool (the old connections are closed).
    """

    def __init__(self, base_url: str = "", headers: Any = None, timeout: Any = Timeout(),
                 max_connections: int = 100, max_per_host: int | None = None,
                 max_idle_per_host: int = 100, idle_timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, verify: bool = True,
                 user_agent: str = "corofw") -> None:
        if not idle_timeout >= 0:
            raise ValueError(f"idle_timeout must be zero or more seconds, got {idle_timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = Timeout.of(timeout)
        self.pool = Pool(max_connections, max_per_host, max_idle_per_host, idle_timeout)
        self._ssl_context = ssl_context
        self._verify = verify
        self._builder = RequestBuilder(headers, user_agent)
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
        InvalidURL, ConnectError (ConnectionRefused, DNSError, TLSError),
        ReadError, WriteError, RemoteProtocolError or a ClientTimeout per
        phase."""
        method = method.upper()
        timeouts = self.timeout if timeout is ... else Timeout.of(timeout)
        plain = params is headers is content is data is json is None
        prepared = self._prepared.get((method, self.base_url, url)) if plain else None
        if prepared is None:
            prepared = self._builder.build(method, url, self.base_url, params, headers,
                                           content, data, json)
            if plain:
                if len(self._prepared) >= CACHE_SIZE:
                    self._prepared.clear()
                self._prepared[method, self.base_url, url] = prepared
        full_url, key, payload = prepared
        retryable = method in _IDEMPOTENT
        kernel = current_kernel()
        task = kernel.current if kernel is not None else None
        if task is None:
            task = yield (CURRENT,)
        pool = self.pool
        if pool.kernel is not task._kernel:
            pool.adopt(task._kernel)
        started = task._kernel.clock()
        total_until = None if timeouts.total is None else started + timeouts.total
        waiting: Deadline | None = None  # for the pool and connect phases, made if needed
        deadline: Deadline | None = None
        try:
            for attempt in range(2):
                # A retry always gets a new connection: when one idle connection
                # was dead (a restarted server), its idle siblings are too.
                conn = pool.take_idle(key, started, retryable) if not attempt else None
                if conn is None:
                    if waiting is None:
                        waiting = Deadline(task)
                    conn = yield from self._open(key, waiting, timeouts, total_until, full_url,
                                                 fresh=attempt > 0)
                deadline = conn.deadline
                deadline.retarget(task)
                parser = conn.parser
                parser.limits = _STREAM_LIMITS if stream else DEFAULT_RESPONSE_LIMITS
                parser.start(method)
                conn.received = 0
                try:
                    whole = yield from exchange(conn, payload, timeouts, total_until, full_url)
                    break
                except (ReadError, WriteError, RemoteProtocolError) as exc:
                    deadline.clear()
                    pool.discard(conn, key)
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
                    pool.discard(conn, key)
                    raise
            response = ClientResponse(self, conn, method, full_url, timeouts, started,
                                      total_until)
            if not whole:
                response._keep_alive = False  # the server answered before the body was sent
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
              total_until: float | None, url: str, fresh: bool) -> Coro[PooledConnection]:
        """A connection for ``key``: one freed while waiting for the pool's
        limits (an idle one too, unless ``fresh``), or a new one."""
        arm(waiting, "pool", timeouts.pool, total_until)
        now = yield (CLOCK,)
        conn = yield from self.pool.acquire(key, now, fresh)
        if conn is not None:
            waiting.clear()
            return conn
        try:
            arm(waiting, "connect", timeouts.connect, total_until)
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
            return (yield from read_some_body(conn, timeouts, total_until, url))
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


def _clock() -> float:
    """The running kernel's clock (virtual under a VirtualClock)."""
    kernel = current_kernel()
    return kernel.clock() if kernel is not None else time.monotonic()


def _read_all(response: ClientResponse, timeouts: Timeout, total_until: float | None,
              data: bytes) -> Coro[None]:
    """Read the rest of a body whose start (``data``) came with the head."""
    conn = response._conn
    assert conn is not None
    parts = [data] if data else []
    done = False
    while not done:
        data, done = yield from read_some_body(conn, timeouts, total_until, response.url)
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

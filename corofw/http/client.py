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
import ssl
import threading
import weakref
from typing import Any

from ..kernel.loop import current_kernel
from ..kernel.traps import CURRENT, Coro
from .client_errors import RemoteProtocolError
from .client_response import ClientResponse
from .connector import Connector
from .exchange import Exchange
from .parser import DEFAULT_RESPONSE_LIMITS, ProtocolError
from .pool import Pool
from .prepare import RequestBuilder
from .timeouts import DEFAULT_TIMEOUT, Timeout

__all__ = ["Client", "ClientResponse", "Timeout", "default_client", "delete", "get", "patch",
           "post", "put", "request"]

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# A body read into memory is capped (1 GiB); a streamed one is not.
_STREAM_LIMITS = dataclasses.replace(DEFAULT_RESPONSE_LIMITS, max_body_bytes=1 << 62)


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

    def __init__(self, base_url: str = "", headers: Any = None, timeout: Any = DEFAULT_TIMEOUT,
                 max_connections: int = 100, max_per_host: int | None = None,
                 max_idle_per_host: int = 100, idle_timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, verify: bool = True,
                 user_agent: str = "corofw") -> None:
        if not idle_timeout >= 0:
            raise ValueError(f"idle_timeout must be zero or more seconds, got {idle_timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = Timeout.of(timeout)
        self.pool = Pool(max_connections, max_per_host, max_idle_per_host, idle_timeout)
        self._connector = Connector(ssl_context, verify)
        self._builder = RequestBuilder(headers, user_agent)

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
        full_url, key, payload = self._builder.build(method, url, self.base_url, params,
                                                      headers, content, data, json)
        kernel = current_kernel()
        task = kernel.current if kernel is not None else None
        if task is None:
            task = yield (CURRENT,)
        pool = self.pool
        if pool.kernel is not task._kernel:
            pool.adopt(task._kernel)
        total = timeouts.total
        total_until = None if total is None else task._kernel.clock() + total
        exchange = Exchange(pool, self._connector, method, full_url, key, timeouts, total_until,
                            task)
        limits = _STREAM_LIMITS if stream else DEFAULT_RESPONSE_LIMITS
        whole = yield from exchange.start(payload, method in _IDEMPOTENT, limits)
        response = ClientResponse(exchange, whole)
        if not stream:
            conn = exchange.conn
            assert conn is not None
            try:
                data, done = conn.parser.read_body()  # most bodies came with the head
            except ProtocolError as exc:
                response.close()
                raise RemoteProtocolError(exc.message, full_url) from None
            if done:
                response._content = data
                response._finish(True)
            else:
                yield from response._read_all(data)
        return response


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

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
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol, cast

from ..kernel.context import current_kernel
from ..kernel.traps import TASK, Coro
from ..ws.protocol import DEFAULT_MAX_MESSAGE_SIZE
from .auth import as_auth
from .client_errors import StreamConsumed, TooManyRedirects
from .client_response import ClientResponse
from .connector import Connector
from .cookiejar import CookieJar
from .decoders import ACCEPT_ENCODING
from .exchange import Exchange
from .headers import Headers
from .parser import DEFAULT_RESPONSE_LIMITS
from .pool import Pool
from .prepare import Prepared, RequestBuilder, merge_headers
from .proxies import Proxies
from .redirects import (
    MAX_REDIRECTS,
    header_pairs,
    is_redirect,
    redirect,
    redirect_headers,
    same_origin,
)
from .request_body import NO_BODY, Body, encode_body
from .timeouts import DEFAULT_TIMEOUT, Timeout
from .websocket import CLOSE_TIMEOUT, ClientWebSocket, open_websocket

__all__ = ["Client", "ClientResponse", "Timeout", "default_client", "delete", "get", "patch",
           "post", "put", "request"]



class CallTrace(Protocol):
    """What a Client's ``tracer`` gives for one call it traces."""

    def headers(self) -> list[tuple[str, str]]:
        """The headers to send with the call (``traceparent``, ...)."""

    def end_call(self, url: str, status: int | None, error: BaseException | None) -> None:
        """The call to ``url`` answered ``status``, or raised ``error``.
        Called once; it must be quick and must not raise."""


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

    Opt-in, as each changes what is sent or returned:

    - ``follow_redirects=True`` follows up to ``max_redirects`` redirects
      (a call can say otherwise; see :mod:`corofw.http.redirects`);
    - ``cookies=True`` (or a :class:`~corofw.http.cookiejar.CookieJar`)
      keeps the cookies servers set and sends them back, in ``cookies``;
    - ``auth=(user, password)`` or ``auth=BearerToken(token)`` sends
      credentials with every call (see :mod:`corofw.http.auth`);
    - ``proxy="http://host:port"``, or ``trust_env=True`` for the
      ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY`` variables (see
      :mod:`corofw.http.proxies`);
    - ``decompress=True`` sends ``Accept-Encoding: gzip, deflate`` and
      decodes such bodies as they are read.

    A client may be kept at module level and used by one ``run()`` after
    another: its connections belong to the kernel that opened them, and a
    new kernel starts with an empty pool (the old connections are closed).

    ``observer``, when set, is called once per finished call as
    ``observer(host, seconds, error)``: the ``host[:port]`` called, the
    seconds the call took (redirects and reading the body included; for a
    ``stream`` call, until the head), and the exception it raised or None.
    It must be quick and must not raise (see :class:`~corofw.web.metrics.Metrics`).

    ``tracer``, when set, is called before each call as ``tracer(method)``;
    it returns None (the call is not traced) or a :class:`CallTrace`, whose
    ``headers()`` are sent with the call (over any the caller gave of the
    same names) and whose ``end_call(url, status, error)`` is called once
    when the call finishes, as the observer is (see
    :class:`~corofw.web.tracing.Tracing`).
    """

    observer: Callable[[str, float, BaseException | None], None] | None = None
    tracer: Callable[[str], CallTrace | None] | None = None

    def __init__(self, base_url: str = "", headers: Any = None, timeout: Any = DEFAULT_TIMEOUT,
                 max_connections: int = 100, max_per_host: int | None = None,
                 max_idle_per_host: int = 100, idle_timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, verify: bool = True,
                 user_agent: str = "corofw", *, follow_redirects: bool = False,
                 max_redirects: int = MAX_REDIRECTS, cookies: Any = None, auth: Any = None,
                 proxy: str | None = None, trust_env: bool = False,
                 decompress: bool = False) -> None:
        if not idle_timeout >= 0:
            raise ValueError(f"idle_timeout must be zero or more seconds, got {idle_timeout!r}")
        if max_redirects < 0:
            raise ValueError(f"max_redirects must be zero or more, got {max_redirects!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = Timeout.of(timeout)
        self.pool = Pool(max_connections, max_per_host, max_idle_per_host, idle_timeout)
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self.cookies: CookieJar | None = _jar(cookies)
        self.auth = as_auth(auth)
        self.decompress = decompress
        proxies = Proxies(proxy, trust_env)
        self.proxies = proxies if proxies else None
        self._connector = Connector(ssl_context, verify, self.proxies)
        if decompress:
            defaults = [("accept-encoding", ACCEPT_ENCODING)]
            headers = merge_headers(defaults, Headers(headers) if headers else None)
        self._builder = RequestBuilder(headers, user_agent, self.proxies)

    def __repr__(self) -> str:
        return f"<Client {self.pool!r}>"

    def close(self) -> None:
        """Close the idle pooled connections."""
        self.pool.close()

    def _adopt(self, kernel: Any) -> None:
        """Let ``kernel`` use this client: a client serves one kernel after
        another (each ``run()`` starts with an empty pool), never two at once."""
        owner = self.pool.kernel
        if owner is not None and not owner.closed:
            raise RuntimeError("this Client is in use by a kernel still running in another "
                               "thread; give each thread its own Client")
        self.pool.adopt(kernel)

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
                content: Any = None, data: Any = None, json: Any = None, files: Any = None,
                auth: Any = None, timeout: Any = ..., stream: bool = False,
                follow_redirects: bool | None = None) -> Coro[ClientResponse]:
        """Send one request and return the response (body read, unless
        ``stream``). The body comes from ``json``, ``data`` (a form),
        ``files`` (multipart, with ``data`` as its other fields) or
        ``content`` (bytes, text, a file, or an iterable of bytes, sent
        chunked); see :mod:`corofw.http.request_body`. ``auth`` and
        ``follow_redirects`` replace the client's for this call.

        Raises a :class:`ClientError` subclass naming the URL: InvalidURL,
        ConnectError (ConnectionRefused, DNSError, TLSError, ProxyError),
        ReadError, WriteError, RemoteProtocolError, DecodingError,
        TooManyRedirects, StreamConsumed, or a ClientTimeout per phase."""
        method = method.upper()
        timeouts = self.timeout if timeout is ... else Timeout.of(timeout)
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        builder = self._builder
        trace = None if self.tracer is None else self.tracer(method)
        try:
            if trace is not None:
                headers = merge_headers(header_pairs(headers), trace.headers())
            if not follow and auth is None and self.auth is None and self.cookies is None:
                prepared = None
                if params is headers is content is data is json is files is None:
                    prepared = builder.prepared.get((method, self.base_url, url))
                if prepared is None:
                    prepared = builder.build(method, url, self.base_url, params, headers,
                                             content, data, json, files)
            else:
                headers = self._call_headers(headers, auth)
                body = encode_body(content, data, json, files)
                prepared = builder.prepare(method, url, self.base_url, params, headers, body,
                                           self.cookies)
        except BaseException as exc:
            if trace is not None:
                trace.end_call(url, None, exc)
            raise
        kernel = current_kernel()
        task = kernel.current if kernel is not None else None
        if task is None:
            task = yield TASK
        if self.pool.kernel is not task.kernel:
            self._adopt(task.kernel)
        total = timeouts.total
        total_until = None if total is None else task.kernel.clock() + total
        # What _send does, written out: the common call costs no generator more.
        full_url, key, payload, body_stream, origin, _, _ = prepared
        observer = self.observer
        if observer is not None:
            started = time.perf_counter()
        try:
            exchange = Exchange(self.pool, self._connector, method, full_url, key, timeouts,
                                total_until, task)
            limits = _STREAM_LIMITS if stream else DEFAULT_RESPONSE_LIMITS
            retry = method in _IDEMPOTENT
            whole = yield from exchange.start(payload, retry, limits, body_stream)
            response = ClientResponse(exchange, whole, self.decompress)
            if not stream:
                rest = response._body_with_head()
                if rest is not None:
                    yield from response._read_all(*rest)
            if follow or self.cookies is not None:
                response = yield from self._after(response, prepared, method, headers, body,
                                                  follow, timeouts, total_until, task, stream)
        except BaseException as exc:
            if observer is not None:
                observer(origin.authority, time.perf_counter() - started, exc)
            if trace is not None:
                trace.end_call(full_url, None, exc)
            raise
        if observer is not None:
            observer(origin.authority, time.perf_counter() - started, None)
        if trace is not None:
            trace.end_call(full_url, response.status_code, None)
        return response

    # -- one request, then what follows it -------------------------------------------

    def _send(self, prepared: Prepared, method: str, timeouts: Timeout,
              total_until: float | None, task: Any, stream: bool) -> Coro[ClientResponse]:
        """One request's response (its body read unless ``stream``)."""
        exchange = Exchange(self.pool, self._connector, method, prepared.url, prepared.key,
                            timeouts, total_until, task)
        limits = _STREAM_LIMITS if stream else DEFAULT_RESPONSE_LIMITS
        whole = yield from exchange.start(prepared.payload, method in _IDEMPOTENT, limits,
                                          prepared.stream)
        response = ClientResponse(exchange, whole, self.decompress)
        if not stream:
            rest = response._body_with_head()
            if rest is not None:
                yield from response._read_all(*rest)
        return response

    def _after(self, response: ClientResponse, prepared: Prepared, method: str,
               headers: list[tuple[str, str]], body: Body, follow: bool, timeouts: Timeout,
               total_until: float | None, task: Any, stream: bool) -> Coro[ClientResponse]:
        """Keep the response's cookies; follow it if it is a redirect to
        follow (see :mod:`corofw.http.redirects`)."""
        jar = self.cookies
        history: list[ClientResponse] = []
        pairs = headers
        while True:
            origin = prepared.origin
            if jar is not None:
                jar.update(origin.scheme, origin.host, prepared.path,
                           response.headers.get_all("set-cookie"))
            location = response.headers.get("location")
            if not follow or not is_redirect(response.status_code, location):
                break
            yield from response.read()  # the connection goes back to the pool
            if len(history) >= self.max_redirects:
                raise TooManyRedirects(f"more than {self.max_redirects} redirects",
                                       response.url, response)
            history.append(response)
            hop = redirect(method, prepared.raw_url, response.status_code,
                           cast(str, location))  # is_redirect(): a non-empty str
            new_origin = self._builder.origin(hop.url)
            if not hop.keeps_body:
                body = NO_BODY
            elif body.stream is not None:
                raise StreamConsumed(f"cannot follow the {response.status_code} redirect: the "
                                     "request's body was streamed and cannot be sent again",
                                     response.url)
            pairs = redirect_headers(pairs, hop.keeps_body, same_origin(origin, new_origin))
            method = hop.method
            prepared = self._builder.prepare(method, hop.url, "", None, pairs, body, jar)
            response = yield from self._send(prepared, method, timeouts, total_until, task,
                                             stream)
        response.history = history
        return response

    def _call_headers(self, headers: Any, auth: Any) -> list[tuple[str, str]]:
        """A call's headers as pairs, with the credentials of ``auth`` (or
        the client's) unless they name their own Authorization."""
        pairs = header_pairs(headers)
        credentials = as_auth(auth) or self.auth
        if credentials is not None and not any(n.lower() == "authorization" for n, _ in pairs):
            pairs.append(("authorization", credentials.header()))
        return pairs

    # -- WebSockets ------------------------------------------------------------------

    def websocket(self, url: str, *, subprotocols: Any = (), headers: Any = None,
                  params: Any = None, auth: Any = None, timeout: Any = ...,
                  max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, deflate: bool = False,
                  origin: str | None = None,
                  close_timeout: float = CLOSE_TIMEOUT) -> Coro[ClientWebSocket]:
        """Open a WebSocket: ``ws = yield from client.websocket("ws://...")``
        (``wss://`` for TLS; a relative URL joins ``base_url``).
        ``subprotocols`` are offered in order of preference; ``deflate``
        offers permessage-deflate; ``origin`` sends an Origin header;
        ``max_message_size`` bounds a received message (1 MiB by default;
        a bigger one closes the connection with 1009). ``headers``,
        ``params``, ``auth`` and ``timeout`` as for :meth:`request`. See
        :mod:`corofw.http.websocket` for what the WebSocket does."""
        return (yield from open_websocket(self, url, subprotocols=subprotocols,
                                          headers=headers, params=params, auth=auth,
                                          timeout=timeout, max_message_size=max_message_size,
                                          deflate=deflate, origin=origin,
                                          close_timeout=close_timeout))


def _jar(cookies: Any) -> CookieJar | None:
    if cookies is None or cookies is False:
        return None
    if cookies is True:
        return CookieJar()
    if not isinstance(cookies, CookieJar):
        raise TypeError(f"cookies must be True or a CookieJar, got {type(cookies).__name__}")
    return cookies


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

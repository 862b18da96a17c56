"""Request and Response objects."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, quote, unquote

from ..kernel.costs import Cost
from ..kernel.traps import Coro
from .charsets import content_type_charset, text_codec
from .cookies import EPOCH, format_set_cookie, parse_cookie_header
from .forms import FormData, check_limits, read_form
from .headers import Headers
from .jsontext import decode_json, encode_json
from .multidict import MultiDict
from .multipart import FormError, FormLimits
from .request_id import DEFAULT_IDS, RequestIds, made_id
from .status import reason_phrase

# what a URL cannot carry as is: a "%" that starts no %XX escape, and any
# character that is neither unreserved nor reserved (RFC 3986 section 2)
#: where ``request.form()`` keeps the form it read, in ``request.state``
FORM_STATE_KEY = "corofw.form"
#: where request.background() keeps its coroutines until the server starts them
BACKGROUND_STATE_KEY = "corofw.background"
_FORM_PIECE = 65536
_NOT_IN_URL = re.compile(r"%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


class QueryParams(MultiDict[str]):
    """Query-string parameters, a read-only :class:`MultiDict`:
    ``q["a"]`` / ``q.get("a")`` give the first value, ``q.getlist("a")``
    every value in order, ``dict(q)`` one (the first) value per name.
    Blank values are kept (``?a=&b`` gives ``a`` and ``b`` as ``""``)."""

    __slots__ = ()

    def __init__(self, query_string: str = "") -> None:
        super().__init__(parse_qsl(query_string, keep_blank_values=True)
                         if query_string else ())


class Request:
    """An HTTP request as the server received it.

    ``method`` and ``version`` ("HTTP/1.1") as sent; ``target`` is the raw
    request-target; ``path`` is its percent-decoded path and
    ``query_string`` the raw part after ``?``. ``headers`` is a
    case-insensitive :class:`Headers`, ``body`` the whole body as bytes.
    ``path_params`` holds the router's converted path parameters, ``client``
    the peer's ``(host, port)``, and ``state`` is a dict for middleware.
    """

    # _cookies is left unset until first read: a request that never looks
    # at its cookies pays nothing for them
    __slots__ = ("method", "target", "path", "query_string", "version", "headers", "body",
                 "client", "keep_alive", "path_params", "route", "_query", "_state",
                 "_cookies", "_id", "_stream", "_cost")
    _cookies: MultiDict[str]

    def __init__(self, method: str, target: str, path: str | None = None,
                 query_string: str = "", version: str = "HTTP/1.1",
                 headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                 body: bytes = b"", client: Any = None, keep_alive: bool = True) -> None:
        self.method = method
        self.target = target
        if path is None:
            raw_path, _, query_string = target.partition("?")
            path = unquote(raw_path)
        self.path = path
        self.query_string = query_string
        self.version = version
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self.client = client
        self.keep_alive = keep_alive
        self.path_params: dict[str, Any] = {}
        self.route: Any = None
        self._query: QueryParams | None = None
        self._state: dict[str, Any] | None = None
        # what makes its id on first use (a server sets its own), then the id
        self._id: str | int | RequestIds = DEFAULT_IDS
        self._stream: Any = None  # a streamed body's reader (request_stream.BodyStream)
        self._cost: Cost | None = None  # set by a server with request costs on

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"

    @property
    def query(self) -> QueryParams:
        """The parsed query string (multi-valued)."""
        if self._query is None:
            self._query = QueryParams(self.query_string)
        return self._query

    @property
    def cookies(self) -> MultiDict[str]:
        """The cookies the client sent, parsed from the ``Cookie`` header(s)
        on first use: a read-only :class:`MultiDict` of name to value (the
        first pair of a repeated name, which browsers send as the most
        specific; ``getlist`` gives them all). Malformed pairs are left
        out, never an error (see :mod:`corofw.http.cookies`)."""
        try:
            return self._cookies
        except AttributeError:
            pass
        headers = self.headers.get_all("cookie")
        cookies = MultiDict(parse_cookie_header("; ".join(headers)) if headers else ())
        self._cookies = cookies
        return cookies

    @property
    def cost(self) -> Cost | None:
        """What answering this request has cost so far (its
        :class:`~corofw.kernel.costs.Cost`: ``cpu`` and ``waits()``), when
        the server runs with request costs on; otherwise None."""
        return self._cost

    @property
    def id(self) -> str:
        """This request's id, the one its access log line carries: the
        value of the server's request-id header (``x-request-id`` unless
        configured otherwise) when the client or a proxy sent a valid one,
        otherwise one made for it (see :mod:`corofw.http.request_id`).
        Read once, it stays; the response then echoes it in that header."""
        try:
            ident = self._id
        except AttributeError:
            ident = DEFAULT_IDS
        if type(ident) is not str:
            ident = self._id = made_id(ident) if type(ident) is int \
                else cast(RequestIds, ident).assign(self)
        return ident

    @property
    def state(self) -> dict[str, Any]:
        """A dict for this request's own data (set by middleware, read by
        handlers), created on first use."""
        if self._state is None:
            self._state = {}
        return self._state

    def background(self, coro: Coro[Any]) -> None:
        """Run the coroutine ``coro`` as a task of its own once this
        request's response has been sent (or its client has gone):
        ``request.background(send_welcome_mail(user))``. It runs even if
        the client leaves, but not if the handler fails or is cancelled.
        A graceful shutdown waits for it within the grace period, then
        cancels it. The server runs it: a handler called directly (in a
        unit test) leaves it in ``request.state``."""
        if not hasattr(coro, "send") or not hasattr(coro, "throw"):
            raise TypeError(f"background() needs a generator object (call the generator "
                            f"function), not {coro!r}")
        self.state.setdefault(BACKGROUND_STATE_KEY, []).append(coro)

    @property
    def host(self) -> str | None:
        """The Host header, or None."""
        return self.headers.get("host")

    @property
    def content_type(self) -> str | None:
        """The Content-Type header, or None."""
        return self.headers.get("content-type")

    @property
    def text(self) -> str:
        """The body decoded with the charset of Content-Type, or UTF-8 when
        there is none or it is not a real character set
        (``charset=nope``, ``charset=hex``, ``charset=unicode_escape``,
        ``charset=utf-7``: see :mod:`corofw.http.charsets`). Bytes that do
        not decode become U+FFFD: reading ``text`` never fails, escapes in
        the body stay as written, and the text has no lone surrogates, so
        it can always be sent back as UTF-8."""
        return self.body.decode(text_codec(content_type_charset(self.content_type)),
                                "replace")

    def form(self, limits: FormLimits | None = None) -> Coro[FormData]:
        """The body read as a form: ``form = yield from request.form()``.

        ``application/x-www-form-urlencoded`` and ``multipart/form-data``
        bodies give a :class:`~corofw.http.forms.FormData` of field name
        to ``str``, or to :class:`~corofw.http.forms.UploadFile` for file
        parts; ``limits`` (a :class:`~corofw.http.multipart.FormLimits`)
        bounds it. The form is read once and kept: later calls return it,
        checked against their own ``limits`` (a middleware that read it
        first with looser limits does not lift the handler's). Its uploads
        are closed once the request has been answered.

        A body that cannot be read raises :class:`MalformedBody`, an
        ``HTTPError`` (and ``ValueError``) answered with a message saying
        why: 400 for a malformed form, 413 for one over ``limits``, 415
        for a Content-Type that is not a form's.

        It is a coroutine so that it can read a body as it arrives: the
        parsers are incremental and pull the body piece by piece."""
        state = self._state
        if state is not None:
            cached: FormData | None = state.get(FORM_STATE_KEY)
            if cached is not None:
                if limits is not None:
                    try:
                        check_limits(cached, limits)
                    except FormError as exc:
                        raise MalformedBody(str(exc), exc.status) from None
                return cached
        try:
            form = yield from read_form(self.content_type, self._body_reader(), limits)
        except FormError as exc:
            raise MalformedBody(str(exc), exc.status) from None
        self.state[FORM_STATE_KEY] = form
        return form

    @property
    def streamed(self) -> bool:
        """Whether the body is read as it arrives (a route with
        ``stream_body=True``): :meth:`read_chunk`, :meth:`read` or
        :meth:`form` read it; ``body`` is None until :meth:`read` is done."""
        return self._stream is not None and self._stream is not _READ

    def read_chunk(self) -> Coro[bytes]:
        """The next piece of the body, ``b""`` at its end:
        ``chunk = yield from request.read_chunk()``. For a body already
        read whole, that body at once. :class:`MalformedBody` when the body
        cannot be read to its end (400 malformed or cut short, 408 too
        slow, 413 over the route's ``max_body_size``)."""
        stream = self._stream
        if stream is None:
            body, self._stream = self.body or b"", _READ
            return body
        if stream is _READ:
            return b""
        try:
            chunk: bytes = yield from stream.read_chunk()
            return chunk
        except ValueError as exc:  # a BodyError
            raise MalformedBody(str(exc), getattr(exc, "status", 400)) from None

    def read(self) -> Coro[bytes]:
        """The whole body (for a streamed one, read to its end and kept in
        ``body``): ``data = yield from request.read()``."""
        if self.body is None:
            pieces = []
            while chunk := (yield from self.read_chunk()):
                pieces.append(chunk)
            self.body = b"".join(pieces)
        return self.body

    def _body_reader(self) -> Any:
        """A ``read_chunk`` coroutine function over the body: the buffered
        one, or a streamed one as it arrives."""
        if self._stream is not None and self.body is None:
            return self.read_chunk
        body = self.body or b""
        pieces = iter([body[start:start + _FORM_PIECE]
                       for start in range(0, len(body), _FORM_PIECE)])

        def read_chunk() -> Coro[bytes]:
            yield from ()  # nothing to wait for: the body is here already
            return next(pieces, b"")

        return read_chunk

    def json(self) -> Any:
        """The body parsed as JSON. A body that is not JSON raises
        :class:`MalformedBody`: the client gets a 400 that says what is
        wrong, and a handler may still catch it as a ``ValueError``.
        ``NaN``, ``Infinity`` and numbers beyond a float's range
        (``1e999``) are not JSON here either (see :mod:`.jsontext`)."""
        try:
            return decode_json(self.body)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8/16/32
            raise MalformedBody(f"request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise MalformedBody("request body is not valid JSON: nested too deeply") from None


class _ResponseHeaders:
    """Header helpers shared by every response type (which have a
    ``headers`` slot holding a :class:`Headers` or None)."""

    __slots__ = ("headers",)
    headers: Headers | None

    def set_header(self, name: str, value: str) -> None:
        """Replace ``name`` (creating the headers collection on first use)."""
        if self.headers is None:
            self.headers = Headers()
        self.headers[name] = value

    def set_cookie(self, name: str, value: str = "", *,
                   max_age: int | timedelta | None = None,
                   expires: datetime | int | float | str | None = None,
                   path: str | None = "/", domain: str | None = None, secure: bool = False,
                   httponly: bool = False, samesite: str | None = "lax") -> None:
        """Add a ``Set-Cookie`` header (each call adds one; earlier cookies stay).

        ``max_age`` in seconds (or a ``timedelta``); ``expires`` a
        ``datetime`` (naive means UTC), a Unix time or an HTTP date string;
        ``path`` defaults to ``"/"``, ``None`` leaves it out; ``samesite``
        is ``"lax"`` (the default, as in Starlette), ``"strict"``,
        ``"none"`` (which needs ``secure=True``) or ``None``.

        ``ValueError``, naming the problem, for a name that is not an HTTP
        token, and for a value holding anything but visible ASCII without
        ``"``, ``,``, ``;`` and ``\\`` (RFC 6265 cookie-octets): CR, LF,
        ``;``, ``,``, spaces, control and non-ASCII characters are refused,
        not escaped, so encode such a value yourself (``urllib.parse.quote``,
        base64). Also refused: ``;`` or control characters in ``path``, a
        ``domain`` that is not a host name, a ``__Secure-``/``__Host-``
        name without the attributes its prefix requires."""
        line = format_set_cookie(name, value, max_age=max_age, expires=expires, path=path,
                                 domain=domain, secure=secure, httponly=httponly,
                                 samesite=samesite)
        if self.headers is None:
            self.headers = Headers()
        self.headers.add("set-cookie", line)

    def delete_cookie(self, name: str, *, path: str | None = "/", domain: str | None = None,
                      secure: bool = False, httponly: bool = False,
                      samesite: str | None = "lax") -> None:
        """Tell the client to drop cookie ``name``: an empty value with
        ``Max-Age=0`` and an ``Expires`` in 1970. ``path`` and ``domain``
        must be those the cookie was set with, or the browser keeps it."""
        self.set_cookie(name, "", max_age=0, expires=EPOCH, path=path, domain=domain,
                        secure=secure, httponly=httponly, samesite=samesite)


class Response(_ResponseHeaders):
    """An HTTP response: ``body`` (bytes or str), ``status``, ``headers``.

    A ``str`` body is encoded as UTF-8 and defaults to ``text/plain``;
    bytes default to ``application/octet-stream``. Content-Length and Date
    are added by the server; do not set them yourself.
    """

    __slots__ = ("status", "body", "content_type")

    def __init__(self, body: bytes | str = b"", status: int = 200,
                 headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
                 content_type: str | None = None) -> None:
        if isinstance(body, str):
            body = body.encode()
            if content_type is None:
                content_type = "text/plain; charset=utf-8"
        elif not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"Response body must be bytes or str, not {type(body).__name__}")
        self.body = body
        self.status = int(status)
        self.headers = headers if isinstance(headers, Headers) or headers is None \
            else Headers(headers)
        if content_type is None and body:
            content_type = "application/octet-stream"
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Any = None) -> Response:
        """``data`` serialised as compact JSON, ``application/json``."""
        body = encode_json(data)
        return cls(body, status, headers, "application/json")

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Any = None) -> Response:
        """``text`` as UTF-8, ``text/plain``."""
        return cls(text.encode(), status, headers, "text/plain; charset=utf-8")

    @classmethod
    def html(cls, html: str, status: int = 200, headers: Any = None) -> Response:
        """``html`` as UTF-8, ``text/html``."""
        return cls(html.encode(), status, headers, "text/html; charset=utf-8")

    @classmethod
    def redirect(cls, location: str, status: int = 307) -> Response:
        """An empty response sending the client to ``location``; 307 keeps
        the method and body, pass 301, 302, 303 or 308 for the others.

        ``location`` is percent-encoded as UTF-8 where a URL cannot carry
        it as is (non-ASCII, spaces, control characters, a stray ``%``);
        ``%XX`` escapes and reserved characters (``/?#&=:@``...) are kept."""
        return cls(b"", status, [("location", encode_url(location))])


class StreamingResponse(_ResponseHeaders):
    """A response whose body is produced by a generator, sent as it comes.

    The generator yields ``bytes``/``str`` chunks, and may wait in between
    with ``yield from`` (``sleep``, client calls, ...): the server tells the
    chunks from the kernel's traps and forwards the traps. Sent with
    ``Transfer-Encoding: chunked`` to HTTP/1.1 clients and delimited by
    closing the connection for HTTP/1.0 ones.

    ``endless``: the stream has no natural end (server-sent events, a live
    feed), so a graceful shutdown ends it at once (its generator is
    cancelled where it waits, its ``finally`` blocks run) instead of
    waiting for it until the grace period is over.
    """

    __slots__ = ("status", "body", "content_type", "endless")

    def __init__(self, body: Any, status: int = 200, headers: Any = None,
                 content_type: str | None = "application/octet-stream") -> None:
        if not hasattr(body, "send"):
            raise TypeError("StreamingResponse needs a generator object as its body")
        self.body = body
        self.status = int(status)
        self.headers = headers if isinstance(headers, Headers) or headers is None \
            else Headers(headers)
        self.content_type = content_type
        self.endless = False

    def __repr__(self) -> str:
        return f"<StreamingResponse {self.status}>"


def encode_url(url: str) -> str:
    """``url`` with each character a URL cannot carry as is percent-encoded
    as UTF-8; unreserved and reserved characters and valid ``%XX`` escapes
    are kept, so encoding an encoded URL changes nothing."""
    if not isinstance(url, str):
        raise TypeError(f"a URL must be a str, not {type(url).__name__}")
    return _NOT_IN_URL.sub(lambda found: quote(found.group(), safe=""), url)


class HTTPError(Exception):
    """Raise from a handler to answer with ``status`` and a short message
    (as text, or as JSON when ``detail`` is a dict/list)."""

    def __init__(self, status: int, detail: Any = None, headers: Any = None) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.headers = headers

    def to_response(self) -> Response:
        """The response the router sends for this error: JSON for a
        dict/list ``detail``, else ``detail`` (or the status's reason
        phrase) as a line of text."""
        if isinstance(self.detail, (dict, list)):
            return Response.json(self.detail, self.status, self.headers)
        text = self.detail if self.detail is not None else reason_phrase(self.status)
        return Response.text(f"{text}\n", self.status, self.headers)


_READ = object()  # read_chunk() has handed over the whole buffered body


class MalformedBody(HTTPError, ValueError):
    """A request body that is not what the handler read it as (JSON that
    does not parse, a broken form): answered with ``detail`` saying why,
    400 by default (413 for a form over its limits, 415 for a body that is
    not a form). Also a ``ValueError``, for handlers that catch that
    around ``request.json()`` or ``request.form()``."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(status, detail)

"""Sans-I/O HTTP/1.1 parsing: bytes in, requests (or responses) out.

No sockets here: :meth:`RequestParser.feed` takes whatever bytes arrived and
:meth:`RequestParser.next_request` returns each complete request, ``None``
while more bytes are needed, or raises :class:`ProtocolError` carrying the
status to answer with. After an error the parser is dead: the connection
must be answered and closed, never parsed further. Requests that were
complete before the bad bytes are still returned first, in order.

Strict where leniency has let requests be smuggled past other servers
(RFC 9112 is the yardstick): framing headers are matched against explicit
byte patterns (never ``int()`` on raw text), lines end in CRLF only, header
names are tokens with no space before the colon, values carry no control
bytes, obs-fold is refused, Content-Length with Transfer-Encoding is
refused, and the only transfer coding decoded is a final ``chunked``.

The byte patterns are in :mod:`corofw.http.grammar`; what requests and
responses share (the buffer, finding heads, delimiting bodies) in
:mod:`corofw.http.framing`. Parsing is linear: each search resumes where the previous one stopped, a
byte that can never appear in a head fails as soon as it arrives, limits are
enforced before a line or head is complete, and complete lines are validated
by one regular expression per block.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from .framing import DEFAULT_LIMITS, SEEN_HEAD_MAX, Limits, MessageParser, framing
from .grammar import (
    ABSOLUTE_FORM,
    AUTHORITY_FORM,
    BAD_ESCAPE,
    CONTROL,
    HOST,
    METHOD_SP,
    REQUEST_LINE,
    STATUS_LINE,
    TCHAR_BYTES,
    ProtocolError,
    connection_tokens,
)
from .headers import Headers
from .messages import Request

_METHODS = {m.encode(): m for m in
            ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE")}


def _new_request(parts: tuple[Any, ...], client: object) -> Request:
    """A Request straight from parsed ``parts`` (method, target, path,
    query string, version, wire fields, keep-alive), with no re-parsing of
    the target; its body is None until the parser has it."""
    request = Request.__new__(Request)
    (request.method, request.target, request.path, request.query_string, request.version,
     fields, request.keep_alive) = parts
    request.headers = Headers.from_raw(fields)
    request.body = None  # type: ignore[assignment]
    request.client = client
    request.path_params = {}
    request.route = None
    request._query = None
    request._state = None
    request._stream = None
    request._cost = None
    return request


class RequestParser(MessageParser):
    """Parses the requests a client sends on one connection, in order.

    Each :class:`Request` has ``target`` exactly as sent; ``path`` is its
    path percent-decoded as UTF-8 (``%2F`` becomes ``/`` like any escape,
    so a handler that must tell them apart reads ``target``), or the path of
    an absolute-form target (whose authority then replaces Host, RFC 9112
    §3.2.2); invalid escapes, invalid UTF-8 and escaped control characters
    are refused (400). ``query_string`` is the raw text after ``?``.
    Trailer fields are validated and dropped."""

    _kind = "request"
    _awaiting: Request | None

    def __init__(self, limits: Limits = DEFAULT_LIMITS, client: object = None) -> None:
        super().__init__(limits)
        self.client = client
        self._line: tuple[bytes, bytes, bool] = (b"", b"", False)
        self._framing: tuple[list[bytes], list[bytes]] | None = None  # None: no body
        self.expect_continue = False
        """True while the current request's head asked for 100-continue and
        its body has not arrived: the server should send ``100 Continue``."""

    @property
    def awaiting_body(self) -> Request | None:
        """The request whose head has been parsed while its body has not all
        arrived yet (its ``body`` is None meanwhile); None otherwise."""
        return self._awaiting

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive."""
        if self._dead:
            self._check_dead()
        request = self._awaiting
        if request is None:
            if self._pos == len(self._buf):
                return None  # nothing buffered: the common case after each request
            request = self._reuse_head() if self._line_len < 0 else None
            if request is None:
                request = self._parse_head()
                if request is None:
                    return None
        if request.body is None:
            body = self._read_body()
            if body is None:
                self._awaiting = request
                return None
            request.body = body
        self._awaiting = None
        self.expect_continue = False
        return request

    def take_body(self) -> tuple[bytes, bool]:
        """For the request whose head was handed over before its body (see
        :attr:`awaiting_body`): the body bytes that have arrived, taken
        now, and whether the body is complete; once it is, the parser goes
        on to the next request. ProtocolError for a malformed or oversized
        body."""
        if self._dead:
            self._check_dead()
        if self._chunked:
            done = self._read_chunked()
            if not done and self._body_left > 1:
                self._take_partial_chunk()
            data = b"".join(self._chunks)
            self._chunks = []
        else:
            buf = self._buf
            pos = self._pos
            take = min(self._body_left, len(buf) - pos)
            data = bytes(buf[pos:pos + take])
            self._pos = self._scan = pos + take
            self._body_left -= take
            done = self._body_left == 0
        if done:
            self._awaiting = None
            self.expect_continue = False
        return data, done

    def _parse_head(self) -> Request | None:
        buf = self._buf
        if self._line_len < 0:
            pos = self._pos
            while buf.startswith(b"\r\n", pos):  # RFC 9112 §2.2: ignore empty lines first
                pos += 2
            self._pos = pos
            if pos < len(buf) and buf[pos] not in TCHAR_BYTES \
                    and not (buf[pos] == 13 and pos + 1 == len(buf)):
                raise self._fail(400, "malformed request line")
        bounds = self._scan_head()
        if bounds is None:
            return None
        line_end, end = bounds
        fields = self._parse_fields(bytes(buf[line_end + 2:end + 2])) if end > line_end else []
        head = bytes(buf[self._pos:end]) if end - self._pos <= SEEN_HEAD_MAX else None
        self._consume_head(end)
        method_b, target_b, http10 = self._line
        request = self._build(method_b, target_b, http10, fields)
        parts = (request.method, request.target, request.path, request.query_string,
                 request.version, request.headers._raw, request.keep_alive)
        self._remember(head, (parts, self.expect_continue, self._framing))
        return request

    def _reuse_head(self) -> Request | None:
        """The request for a head seen before, byte for byte (clients send
        the same few heads again and again): everything the full parse
        checked and derived is reused, so only the body framing is set up
        again (a request without one gets its empty body at once). None when
        the head is incomplete or new; a head after blank lines is always
        new (the full parse skips them)."""
        entry = self._recall()
        if entry is None:
            return None
        request = _new_request(entry[0], self.client)
        framing = entry[2]
        if framing is None:
            request.body = b""
        else:
            self._frame_body(*framing)
            self.expect_continue = entry[1]
        return request

    def _check_line(self, line: bytes) -> None:
        match = REQUEST_LINE.fullmatch(line)
        if match is None:
            raise self._fail(400, "malformed request line")
        method_b, target_b, major, minor = match.groups()
        if major != b"1":
            raise self._fail(505, "only HTTP/1.x is supported")
        self._line = (method_b, target_b, minor == b"0")

    def _line_too_long(self) -> ProtocolError:
        if METHOD_SP.match(self._buf, self._pos, self._pos + self.limits.max_request_line):
            return self._fail(414, "request line too long")
        return self._fail(400, "malformed request line (method too long)")

    def _build(self, method_b: bytes, target_b: bytes, http10: bool,
               fields: list[tuple[bytes, bytes]]) -> Request:
        te, cl, keep_alive = framing(fields, http10)
        hosts = [value for name, value in fields if name == b"host"]
        if len(hosts) > 1:
            raise self._fail(400, "more than one Host header")
        if not hosts and not http10:
            raise self._fail(400, "missing Host header")
        if hosts and not HOST.fullmatch(hosts[0]):
            raise self._fail(400, "invalid Host header")
        if te and http10:
            raise self._fail(400, "Transfer-Encoding in an HTTP/1.0 request")
        method = _METHODS.get(method_b) or method_b.decode("ascii")
        path, query, authority = self._split_target(method, target_b)
        if authority is not None:  # RFC 9112 §3.2.2: the target's authority wins
            fields = [(n, v) for n, v in fields if n != b"host"] + [(b"host", authority)]
        self._framing = (te, cl) if self._frame_body(te, cl) else None  # None: no body
        self.expect_continue = False
        expect = [value for name, value in fields if name == b"expect"]
        if expect and not http10:
            members = connection_tokens(expect) - {b""}
            if members - {b"100-continue"}:
                raise self._fail(417, "unsupported expectation")
            self.expect_continue = bool(members)
        return _new_request((method, target_b.decode("ascii"), path, query,
                             "HTTP/1.0" if http10 else "HTTP/1.1", fields, keep_alive),
                            self.client)

    def _split_target(self, method: str, target: bytes) -> tuple[str, str, bytes | None]:
        """(path, raw query, authority of an absolute-form target or None)."""
        authority = None
        if method == "CONNECT":
            if not AUTHORITY_FORM.fullmatch(target):
                raise self._fail(400, "CONNECT needs a host:port target")
            return target.decode("ascii"), "", None
        if target[:1] == b"/":
            raw = target
        elif target == b"*":
            if method != "OPTIONS":
                raise self._fail(400, "the * target is only valid with OPTIONS")
            return "*", "", None
        else:
            match = ABSOLUTE_FORM.fullmatch(target)
            if match is None:
                raise self._fail(400, "invalid request target")
            scheme, authority, raw = match.groups()
            if scheme.lower() not in (b"http", b"https") or not HOST.fullmatch(authority):
                raise self._fail(400, "invalid absolute request target")
            if raw[:1] != b"/":
                raw = b"/" + raw
        raw_path, _, query = raw.partition(b"?")
        if b"%" in raw_path:
            if BAD_ESCAPE.search(raw_path):
                raise self._fail(400, "invalid percent-escape in the path")
            decoded = unquote_to_bytes(raw_path)
            if CONTROL.search(decoded):
                raise self._fail(400, "control character in the path")
            try:
                path = decoded.decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail(400, "the path is not valid UTF-8")
        else:
            path = raw_path.decode("ascii")
        return path, query.decode("ascii"), authority


DEFAULT_RESPONSE_LIMITS = Limits(max_request_line=8190, max_header_bytes=65536,
                                 max_headers=200, max_body_bytes=1 << 30)


class ResponseHead:
    """A response's status line and headers, as the client parsed them."""

    __slots__ = ("status", "reason", "version", "fields", "keep_alive")

    def __init__(self, status: int, reason: str, version: str,
                 fields: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.fields = fields
        self.keep_alive = keep_alive


class ResponseParser(MessageParser):
    """Parses the responses on one client connection, as strictly as
    :class:`RequestParser` parses requests. Errors are
    :class:`ProtocolError` (the status is meaningless here: 502)."""

    _kind = "response"

    def __init__(self, limits: Limits = DEFAULT_RESPONSE_LIMITS) -> None:
        super().__init__(limits)
        self._method = "GET"
        self._until_close = False
        self._no_body = False
        self._eof = False
        self._status_line: tuple[bool, int, str] = (False, 0, "")
        self.head: ResponseHead | None = None

    def start(self, method: str) -> None:
        """Expect the response to a ``method`` request next."""
        self._method = method
        self.head = None

    def feed_eof(self) -> None:
        """The server closed its side; no more bytes will come."""
        self._eof = True

    @property
    def received_anything(self) -> bool:
        """Whether any byte of the current response has arrived."""
        return self.head is not None or self.buffered > 0

    def _fail(self, status: int, message: str) -> ProtocolError:
        return super()._fail(502, message)

    def next_head(self) -> ResponseHead | None:
        """The final (non-1xx) response head, or None until it arrives."""
        self._check_dead()
        while True:
            head = self._reuse_head() if self._line_len < 0 else None
            if head is None:
                head = self._parse_head()
            if head is None:
                if self._eof:
                    what = "in the middle of the response head" if self.buffered \
                        else "before sending a response"
                    raise self._fail(502, f"the server closed the connection {what}")
                return None
            if 100 <= head.status < 200 and head.status != 101:
                continue
            self.head = head
            return head

    def _check_line(self, line: bytes) -> None:
        match = STATUS_LINE.fullmatch(line)
        if match is None:
            raise self._fail(502, f"malformed status line {line[:80]!r}")
        major, minor, code, reason = match.groups()
        if major != b"1":
            raise self._fail(502, "only HTTP/1.x responses are supported")
        if code[:1] == b"0":
            raise self._fail(502, f"invalid status code {code.decode()}")
        self._status_line = (minor == b"0", int(code), (reason or b"").decode("latin-1").strip())

    def _line_too_long(self) -> ProtocolError:
        return self._fail(502, "status line too long")

    def _reuse_head(self) -> ResponseHead | None:
        """The head seen before byte for byte (a server repeats the same few
        heads): the status line and fields checked then are reused, only the
        body framing is set up again. None when incomplete or new."""
        entry = self._recall()
        return None if entry is None else self._head_from(*entry)

    def _parse_head(self) -> ResponseHead | None:
        bounds = self._scan_head()
        if bounds is None:
            return None
        line_end, end = bounds
        buf = self._buf
        fields = self._parse_fields(bytes(buf[line_end + 2:end + 2])) if end > line_end else []
        head = bytes(buf[self._pos:end]) if end - self._pos <= SEEN_HEAD_MAX else None
        self._consume_head(end)
        http10, status, reason = self._status_line
        te, cl, keep_alive = framing(fields, http10)
        entry = (status, reason, http10, fields, te, cl, keep_alive)
        response = self._head_from(*entry)
        self._remember(head, entry)
        return response

    def _head_from(self, status: int, reason: str, http10: bool,
                   fields: list[tuple[bytes, bytes]], te: list[bytes], cl: list[bytes],
                   keep_alive: bool) -> ResponseHead:
        """Set up the body framing for a parsed head (it depends on the
        request's method too) and build the :class:`ResponseHead`."""
        self._no_body = self._method == "HEAD" or status < 200 or status in (204, 304)
        self._until_close = False
        if self._no_body:
            self._frame_body([], [])
        elif not self._frame_body(te, cl):  # RFC 9112 §6.3: read until the server closes
            self._until_close = True
            keep_alive = False
        return ResponseHead(status, reason, "HTTP/1.0" if http10 else "HTTP/1.1",
                            fields, keep_alive)

    def read_body(self) -> tuple[bytes, bool]:
        """The body bytes available now, and whether the body is complete."""
        self._check_dead()
        if self._no_body:
            return b"", True
        buf = self._buf
        pos = self._pos
        if self._until_close:
            data = bytes(buf[pos:])
            self._pos = self._scan = len(buf)
            return data, self._eof
        if self._chunked:
            done = self._read_chunked()
            if not done and self._body_left > 1:
                self._take_partial_chunk()
            data = b"".join(self._chunks)
            self._chunks = []
        else:
            take = min(self._body_left, len(buf) - pos)
            data = bytes(buf[pos:pos + take])
            self._pos = self._scan = pos + take
            self._body_left -= take
            done = self._body_left == 0
        if not done and self._eof:
            raise self._fail(502, "the server closed the connection before the body ended")
        return data, done


__all__ = ["DEFAULT_LIMITS", "DEFAULT_RESPONSE_LIMITS", "Limits", "ProtocolError",
           "RequestParser", "ResponseHead", "ResponseParser"]

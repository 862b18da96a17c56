"""Sans-I/O HTTP/1.1 parsing: bytes in, requests (or responses) out.

No sockets here: :meth:`RequestParser.feed` takes whatever bytes arrived and
:meth:`RequestParser.next_request` returns each complete request, ``None``
while more bytes are needed, or raises :class:`ProtocolError` carrying the
status to answer with. After an error the parser is dead: the connection
must be answered and closed, never parsed further.

Strict where leniency has let requests be smuggled past other servers:
framing headers are matched against explicit byte patterns (never
``int()``), lines end in CRLF only, header names are tokens with no space
before the colon, values carry no control bytes, obs-fold is refused, and
Content-Length with Transfer-Encoding is refused. Parsing is linear: each
search resumes where the previous one stopped, and lines are found with
``bytes.find`` and validated by one regular expression per block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .headers import Headers
from .messages import Request

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e\x80-\xff]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3}) ([\t\x20-\x7e\x80-\xff]*)")
_FIELD_LINES = re.compile(rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_DIGITS = re.compile(rb"[0-9]+")
_QUOTED = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*" + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*)[ \t]*")
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^#]*)")
_KNOWN_CODINGS = frozenset({b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress",
                            b"identity", b"br", b"zstd"})
_METHODS = {m.encode(): m for m in
            ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE")}
_MAX_CHUNK_LINE = 4096
_MAX_SIZE_DIGITS = 16


class ProtocolError(Exception):
    """The peer broke HTTP/1.1; answer with ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Size limits of an incoming message; exceeding one is answered with
    414 (request line), 431 (header block or count) or 413 (body)."""

    max_request_line: int = 8190
    max_header_bytes: int = 32768
    max_headers: int = 100
    max_body_bytes: int = 1 << 20


DEFAULT_LIMITS = Limits()


def parse_fields(block: bytes, max_fields: int) -> list[tuple[bytes, bytes]]:
    """Split a validated block of ``name: value\\r\\n`` lines into pairs of
    (lower-case name, value without surrounding whitespace)."""
    if not _FIELD_LINES.fullmatch(block):
        for line in block.split(b"\r\n"):
            if line[:1] in (b" ", b"\t"):
                raise ProtocolError(400, "obsolete line folding is not accepted")
        raise ProtocolError(400, "malformed header line")
    lines = block.split(b"\r\n")
    lines.pop()
    if len(lines) > max_fields:
        raise ProtocolError(431, f"more than {max_fields} header fields")
    fields = []
    for line in lines:
        name, _, value = line.partition(b":")
        fields.append((name.lower(), value.strip(b" \t")))
    return fields


def content_length(values: list[bytes]) -> int:
    """The one length that every Content-Length value (comma lists
    included) agrees on; anything else is a framing error."""
    lengths = set()
    for value in values:
        for item in value.split(b","):
            item = item.strip(b" \t")
            if not _DIGITS.fullmatch(item):
                raise ProtocolError(400, "invalid Content-Length")
            if len(item) > 18:
                raise ProtocolError(413, "Content-Length too large")
            lengths.add(int(item))
    if len(lengths) != 1:
        raise ProtocolError(400, "conflicting Content-Length values")
    return lengths.pop()


def transfer_codings(values: list[bytes]) -> list[bytes]:
    codings = []
    for value in values:
        for item in value.split(b","):
            item = item.strip(b" \t").lower()
            if item:
                codings.append(item.split(b";", 1)[0].strip(b" \t"))
    if not codings:
        raise ProtocolError(400, "empty Transfer-Encoding")
    return codings


def connection_tokens(values: list[bytes]) -> set[bytes]:
    return {item.strip(b" \t").lower() for value in values for item in value.split(b",")}


class _MessageParser:
    """The buffer and body framing shared by requests and responses."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0
        self._head: object | None = None
        self._dead = False
        self._body_left = 0
        self._chunked = False
        self._chunks: list[bytes] = []
        self._body_size = 0
        self._in_trailer = False

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        if self._pos:
            del self._buf[:self._pos]
            self._scan -= self._pos
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buf) - self._pos

    def _fail(self, status: int, message: str) -> ProtocolError:
        self._dead = True
        return ProtocolError(status, message)

    def _find_head_end(self, start: int, limit: int, status: int, what: str) -> int:
        """Index of the CRLFCRLF ending the head, or -1 if incomplete."""
        buf = self._buf
        scan = max(self._scan, start)
        end = buf.find(b"\r\n\r\n", scan)
        if end >= 0:
            return end
        if _BARE_LF.search(buf, scan):
            raise self._fail(400, "header lines must end with CRLF")
        if len(buf) - start > limit:
            raise self._fail(status, f"{what} too large")
        self._scan = max(start, len(buf) - 3)
        return -1

    def _frame_body(self, fields_te: list[bytes], fields_cl: list[bytes]) -> None:
        self._chunked = False
        self._body_left = 0
        self._chunks = []
        self._body_size = 0
        self._in_trailer = False
        if fields_te:
            if fields_cl:
                raise self._fail(400, "both Content-Length and Transfer-Encoding")
            codings = transfer_codings(fields_te)
            if codings[-1] != b"chunked":
                unknown = [c for c in codings if c not in _KNOWN_CODINGS and c != b"chunked"]
                if unknown:
                    raise self._fail(501, f"unsupported transfer coding {unknown[0].decode()!r}")
                raise self._fail(400, "chunked must be the final transfer coding")
            if len(codings) > 1:
                if codings.count(b"chunked") > 1:
                    raise self._fail(400, "chunked applied more than once")
                raise self._fail(501, "only the chunked transfer coding is supported")
            self._chunked = True
        elif fields_cl:
            try:
                self._body_left = content_length(fields_cl)
            except ProtocolError as exc:
                raise self._fail(exc.status, exc.message)
            if self._body_left > self.limits.max_body_bytes:
                raise self._fail(413, "body larger than the server accepts")

    def _read_body(self) -> bytes | None:
        """The complete body once it has arrived, else None."""
        if self._chunked:
            return b"".join(self._chunks) if self._read_chunked() else None
        need = self._body_left
        pos = self._pos
        if len(self._buf) - pos < need:
            return None
        self._pos = pos + need
        return bytes(self._buf[pos:pos + need]) if need else b""

    def _read_chunked(self) -> bool:
        """Consume complete chunks into ``_chunks``; True once the last chunk
        and the trailer section have arrived."""
        buf = self._buf
        limit = self.limits.max_body_bytes
        while True:
            pos = self._pos
            if self._in_trailer:
                if buf[pos:pos + 2] == b"\r\n":
                    self._pos = pos + 2
                    return True
                end = buf.find(b"\r\n\r\n", max(pos, self._scan))
                if end < 0:
                    if _BARE_LF.search(buf, pos):
                        raise self._fail(400, "trailer lines must end with CRLF")
                    if len(buf) - pos > self.limits.max_header_bytes:
                        raise self._fail(431, "trailer section too large")
                    self._scan = max(pos, len(buf) - 3)
                    return False
                try:
                    parse_fields(bytes(buf[pos:end + 2]), self.limits.max_headers)
                except ProtocolError as exc:
                    raise self._fail(exc.status, "invalid trailer: " + exc.message)
                self._pos = end + 4
                return True
            if self._body_left:
                need = self._body_left
                if len(buf) - pos < need + 2:
                    return False
                if buf[pos + need:pos + need + 2] != b"\r\n":
                    raise self._fail(400, "chunk data not followed by CRLF")
                self._chunks.append(bytes(buf[pos:pos + need]))
                self._pos = pos + need + 2
                self._body_left = 0
                continue
            lf = buf.find(b"\n", pos)
            if lf < 0:
                if len(buf) - pos > _MAX_CHUNK_LINE:
                    raise self._fail(400, "chunk size line too long")
                return False
            if lf == pos or buf[lf - 1] != 13:
                raise self._fail(400, "chunk size line must end with CRLF")
            match = _CHUNK_LINE.fullmatch(bytes(buf[pos:lf - 1]))
            if match is None:
                raise self._fail(400, "invalid chunk size line")
            digits = match.group(1)
            if len(digits) > _MAX_SIZE_DIGITS:
                raise self._fail(400, "chunk size too large")
            size = int(digits, 16)
            self._body_size += size
            if self._body_size > limit:
                raise self._fail(413, "body larger than the server accepts")
            self._pos = lf + 1
            if size == 0:
                self._in_trailer = True
                self._scan = self._pos
            else:
                self._body_left = size


class RequestParser(_MessageParser):
    """Parses the requests a client sends on one connection, in order."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, client: object = None) -> None:
        super().__init__(limits)
        self.client = client
        self.expect_continue = False
        """True while the current request's head asked for 100-continue and
        its body has not arrived: the server should send ``100 Continue``."""

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive."""
        if self._dead:
            raise ProtocolError(400, "the connection already failed")
        request = self._head
        if request is None:
            request = self._parse_head()
            if request is None:
                return None
        if request.body is None:  # type: ignore[attr-defined]
            body = self._read_body()
            if body is None:
                self._head = request
                return None
            request.body = body  # type: ignore[attr-defined]
        self._head = None
        self.expect_continue = False
        return request  # type: ignore[return-value]

    def _parse_head(self) -> Request | None:
        buf = self._buf
        pos = self._pos
        while buf.startswith(b"\r\n", pos):  # tolerate blank lines between requests
            pos += 2
        self._pos = pos
        lf = buf.find(b"\n", pos)
        if lf < 0:
            if len(buf) - pos > self.limits.max_request_line:
                raise self._fail(414, "request line too long")
            return None
        if lf - pos > self.limits.max_request_line + 1:
            raise self._fail(414, "request line too long")
        if lf == pos or buf[lf - 1] != 13:
            raise self._fail(400, "request line must end with CRLF")
        line_end = lf - 1
        end = self._find_head_end(line_end, self.limits.max_header_bytes, 431, "header section")
        if end < 0:
            return None
        match = _REQUEST_LINE.fullmatch(bytes(buf[pos:line_end]))
        if match is None:
            raise self._fail(400, "malformed request line")
        method_b, target_b, major, minor = match.groups()
        if major != b"1":
            raise self._fail(505, "only HTTP/1.x is supported")
        http10 = minor == b"0"
        fields = self._fields(bytes(buf[line_end + 2:end + 2])) if end > line_end else []
        self._pos = end + 4
        self._scan = self._pos
        return self._build(method_b, target_b, http10, fields)

    def _fields(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return parse_fields(block, self.limits.max_headers)
        except ProtocolError as exc:
            raise self._fail(exc.status, exc.message)

    def _build(self, method_b: bytes, target_b: bytes, http10: bool,
               fields: list[tuple[bytes, bytes]]) -> Request:
        te: list[bytes] = []
        cl: list[bytes] = []
        conn: list[bytes] = []
        hosts = 0
        host = b""
        expect = None
        for name, value in fields:
            if name == b"content-length":
                cl.append(value)
            elif name == b"transfer-encoding":
                te.append(value)
            elif name == b"host":
                hosts += 1
                host = value
            elif name == b"connection":
                conn.append(value)
            elif name == b"expect":
                expect = value
        if hosts > 1:
            raise self._fail(400, "more than one Host header")
        if hosts == 0 and not http10:
            raise self._fail(400, "missing Host header")
        if hosts and not _HOST.fullmatch(host):
            raise self._fail(400, "invalid Host header")
        if te and http10:
            raise self._fail(400, "Transfer-Encoding in an HTTP/1.0 request")
        self._frame_body(te, cl)
        method = _METHODS.get(method_b) or method_b.decode("ascii")
        path, query = self._split_target(method, target_b)
        tokens = connection_tokens(conn) if conn else ()
        if http10:
            keep_alive = b"keep-alive" in tokens
        else:
            keep_alive = b"close" not in tokens
        self.expect_continue = False
        if expect is not None and not http10:
            if expect.lower() != b"100-continue":
                raise self._fail(417, "unsupported expectation")
            self.expect_continue = True
        request = Request.__new__(Request)
        request.method = method
        request.target = target_b.decode("latin-1")
        request.path = path
        request.query_string = query
        request.version = "HTTP/1.0" if http10 else "HTTP/1.1"
        request.headers = Headers.from_raw(fields)
        request.body = None  # type: ignore[assignment]
        request.client = self.client
        request.keep_alive = keep_alive
        request.path_params = {}
        request.route = None
        request._query = None
        request._state = None
        return request

    def _split_target(self, method: str, target: bytes) -> tuple[str, str]:
        if target[:1] == b"/":
            raw = target
        elif target == b"*":
            if method != "OPTIONS":
                raise self._fail(400, "the * target is only valid with OPTIONS")
            return "*", ""
        elif method == "CONNECT":
            if not _HOST.fullmatch(target):
                raise self._fail(400, "invalid CONNECT target")
            return target.decode("latin-1"), ""
        else:
            match = _ABSOLUTE.fullmatch(target)
            if match is None:
                raise self._fail(400, "invalid request target")
            raw = match.group(3) or b"/"
            if raw[:1] == b"?":
                raw = b"/" + raw
        raw_path, _, query = raw.partition(b"?")
        if b"%" in raw_path or not raw_path.isascii():
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        else:
            path = raw_path.decode("ascii")
        return path, query.decode("latin-1")


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


class ResponseParser(_MessageParser):
    """Parses the responses on one client connection, as strictly as
    :class:`RequestParser` parses requests. Errors are
    :class:`ProtocolError` (the status is meaningless here: 502)."""

    def __init__(self, limits: Limits = DEFAULT_RESPONSE_LIMITS) -> None:
        super().__init__(limits)
        self._method = "GET"
        self._until_close = False
        self._no_body = False
        self._eof = False
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
        return self.head is not None or self.buffered > 0

    def next_head(self) -> ResponseHead | None:
        """The final (non-1xx) response head, or None until it arrives."""
        while True:
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

    def _parse_head(self) -> ResponseHead | None:
        buf = self._buf
        pos = self._pos
        lf = buf.find(b"\n", pos)
        if lf < 0:
            if len(buf) - pos > self.limits.max_request_line:
                raise self._fail(502, "status line too long")
            return None
        if lf == pos or buf[lf - 1] != 13:
            raise self._fail(502, "status line must end with CRLF")
        line_end = lf - 1
        end = self._find_head_end(line_end, self.limits.max_header_bytes, 502, "response head")
        if end < 0:
            return None
        line = bytes(buf[pos:line_end])
        match = _STATUS_LINE.fullmatch(line) or _STATUS_LINE.fullmatch(line + b" ")
        if match is None:
            raise self._fail(502, f"malformed status line {line[:80]!r}")
        major, minor, code, reason = match.groups()
        if major != b"1":
            raise self._fail(502, "only HTTP/1.x responses are supported")
        block = bytes(buf[line_end + 2:end + 2]) if end > line_end else b""
        try:
            fields = parse_fields(block, self.limits.max_headers) if block else []
        except ProtocolError as exc:
            raise self._fail(502, exc.message)
        self._pos = end + 4
        self._scan = self._pos
        status = int(code)
        http10 = minor == b"0"
        te: list[bytes] = []
        cl: list[bytes] = []
        conn: list[bytes] = []
        for name, value in fields:
            if name == b"content-length":
                cl.append(value)
            elif name == b"transfer-encoding":
                te.append(value)
            elif name == b"connection":
                conn.append(value)
        tokens = connection_tokens(conn) if conn else ()
        keep_alive = b"keep-alive" in tokens if http10 else b"close" not in tokens
        self._no_body = self._method == "HEAD" or status < 200 or status in (204, 304)
        self._until_close = False
        if self._no_body:
            self._frame_body([], [])
        else:
            try:
                self._frame_body(te, cl)
            except ProtocolError as exc:
                raise self._fail(502, exc.message)
            if not te and not cl:
                self._until_close = True
                keep_alive = False
        return ResponseHead(status, reason.decode("latin-1").strip(),
                            "HTTP/1.0" if http10 else "HTTP/1.1", fields, keep_alive)

    def read_body(self) -> tuple[bytes, bool]:
        """The body bytes available now, and whether the body is complete."""
        if self._no_body:
            return b"", True
        buf = self._buf
        pos = self._pos
        if self._until_close:
            data = bytes(buf[pos:])
            self._pos = len(buf)
            return data, self._eof
        if self._chunked:
            done = self._read_chunked()
            data = b"".join(self._chunks)
            self._chunks = []
        else:
            take = min(self._body_left, len(buf) - pos)
            data = bytes(buf[pos:pos + take])
            self._pos = pos + take
            self._body_left -= take
            done = self._body_left == 0
        if not done and self._eof:
            raise self._fail(502, "the server closed the connection before the body ended")
        return data, done

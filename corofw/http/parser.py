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

Parsing is linear: each search resumes where the previous one stopped, a
byte that can never appear in a head fails as soon as it arrives, limits are
enforced before a line or head is complete, and complete lines are validated
by one regular expression per block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .headers import Headers
from .messages import Request

_TCHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TCHAR_BYTES = frozenset(_TCHARS)
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
# request-target: visible ASCII except "#" (a fragment is never sent)
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21\x22\x24-\x7e]+) HTTP/([0-9])\.([0-9])")
_METHOD_SP = re.compile(_TOKEN + rb" ")
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_FIELD_LINES = re.compile(rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*")
# bytes no head, chunk line or trailer may hold: controls other than HTAB, and
# a CR or LF that is not part of a CRLF pair
_HEAD_BAD = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|(?<!\r)\n")
_DIGITS = re.compile(rb"[0-9]+")
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*")
_CODING = re.compile(
    rb"[ \t]*(" + _TOKEN + rb")((?:[ \t]*;[ \t]*" + _TOKEN
    + rb"[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))*)[ \t]*")
_HOST_NAME = rb"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})+)"
_HOST = re.compile(_HOST_NAME + rb"(?::[0-9]*)?")
_AUTHORITY_FORM = re.compile(_HOST_NAME + rb":[0-9]+")
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?]*)(.*)")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_METHODS = {m.encode(): m for m in
            ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE")}
_NOT_IN_TRAILERS = frozenset({b"content-length", b"transfer-encoding", b"host"})
_MAX_CHUNK_LINE = 4096
_MAX_SIZE_DIGITS = 16
_MAX_CONTENT_LENGTH = (1 << 63) - 1
_CACHED_HEAD_MAX = 2048  # heads up to this size are remembered, per kind and Limits
_CACHED_HEADS = 512
_head_caches: dict[tuple[str, Limits], dict[bytes, tuple]] = {}


def _head_cache(kind: str, limits: Limits) -> dict[bytes, tuple]:
    cache = _head_caches.get((kind, limits))
    if cache is None:
        cache = _head_caches[kind, limits] = {}
    return cache


def _remember(cache: dict[bytes, tuple], head: bytes, entry: tuple) -> None:
    if len(cache) >= _CACHED_HEADS:
        cache.clear()
    cache[head] = entry


def _new_request(parts: tuple, client: object) -> Request:
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
    return request


class ProtocolError(Exception):
    """The peer broke HTTP/1.1; answer with ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Size limits of an incoming message; exceeding one is answered with
    414 (request line), 431 (header block or count) or 413 (body).

    ``max_request_line`` counts the request line without its CRLF,
    ``max_header_bytes`` the field lines with their CRLFs (not the request
    line, not the final empty line), ``max_body_bytes`` the decoded body."""

    max_request_line: int = 8190
    max_header_bytes: int = 32768
    max_headers: int = 100
    max_body_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("max_request_line", "max_header_bytes", "max_headers", "max_body_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")


DEFAULT_LIMITS = Limits()


def parse_fields(block: bytes, max_fields: int) -> list[tuple[bytes, bytes]]:
    """Split a block of ``name: value\\r\\n`` lines into pairs of (lower-case
    name, value without surrounding whitespace); ProtocolError if any line
    is not a valid field line or there are more than ``max_fields``."""
    if not _FIELD_LINES.fullmatch(block):
        raise ProtocolError(400, _field_error(block))
    lines = block.split(b"\r\n")
    lines.pop()
    if len(lines) > max_fields:
        raise ProtocolError(431, f"more than {max_fields} header fields")
    fields = []
    for line in lines:
        name, _, value = line.partition(b":")
        fields.append((name.lower(), value.strip(b" \t")))
    return fields


def _field_error(block: bytes) -> str:
    """Why a block failed to match ``_FIELD_LINES`` (the error path only)."""
    for line in block.split(b"\r\n"):
        if not line or _FIELD_LINES.fullmatch(line + b"\r\n"):
            continue
        if line[:1] in (b" ", b"\t"):
            return "obsolete line folding is not accepted"
        name, colon, _ = line.partition(b":")
        if not colon:
            return "header line without a colon"
        if name[-1:] in (b" ", b"\t"):
            return "whitespace between header name and colon"
        if not re.fullmatch(_TOKEN, name):
            return "invalid header name"
        return "invalid character in header value"
    return "malformed header line"


def content_length(values: list[bytes]) -> int:
    """The one length that every Content-Length value (comma lists
    included) states, as identical strings of at most 19 digits below
    2**63; anything else is a framing error (400)."""
    if len(values) == 1:
        value = values[0]
        if value.isdigit() and len(value) <= 18:  # bytes.isdigit: ASCII digits only
            return int(value)
    lengths = set()
    for value in values:
        for item in value.split(b","):
            item = item.strip(b" \t")
            if not _DIGITS.fullmatch(item):
                raise ProtocolError(400, "invalid Content-Length")
            lengths.add(item)
    if len(lengths) != 1:
        raise ProtocolError(400, "conflicting Content-Length values")
    digits = lengths.pop()
    if len(digits) > 19 or int(digits) > _MAX_CONTENT_LENGTH:
        raise ProtocolError(400, "Content-Length out of range")
    return int(digits)


def transfer_codings(values: list[bytes]) -> list[tuple[bytes, bool]]:
    """The transfer codings in order, as (lower-case name, has parameters).
    Empty list elements are skipped (RFC 9110 §5.6.1) but a field line
    without any coding, like any bad syntax, is a framing error (400)."""
    codings = []
    for value in values:
        count = len(codings)
        for item in value.split(b","):
            if not item.strip(b" \t"):
                continue
            match = _CODING.fullmatch(item)
            if match is None:
                raise ProtocolError(400, "invalid Transfer-Encoding")
            codings.append((match.group(1).lower(), bool(match.group(2))))
        if len(codings) == count:
            raise ProtocolError(400, "empty Transfer-Encoding")
    return codings


def connection_tokens(values: list[bytes]) -> set[bytes]:
    """The lower-case tokens of Connection (or Expect) field values."""
    return {item.strip(b" \t").lower() for value in values for item in value.split(b",")}


class _MessageParser:
    """The buffer, head scanning and body framing shared by requests and
    responses. ``_pos`` is where unconsumed bytes start, ``_scan`` where the
    next search resumes, ``_line_len`` the length of the start line once
    its CRLF has arrived (-1 before)."""

    _kind = ""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0
        self._line_len = -1
        self._head: object | None = None
        self._dead = False
        self._error: tuple[int, str] | None = None
        self._body_left = 0
        self._chunked = False
        self._chunks: list[bytes] = []
        self._body_size = 0
        self._in_trailer = False
        self._heads_for: Limits | None = None
        self._heads_cache: dict[bytes, tuple] = {}

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer (ignored once dead)."""
        if self._dead:
            return
        if self._pos:
            del self._buf[:self._pos]
            self._scan = max(0, self._scan - self._pos)
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buf) - self._pos

    def _heads(self) -> dict[bytes, tuple]:
        """The remembered heads for this kind of message and these limits."""
        limits = self.limits
        if self._heads_for is not limits:
            self._heads_for = limits
            self._heads_cache = _head_cache(self._kind, limits)
        return self._heads_cache

    def _remembered(self) -> tuple | None:
        """What was remembered of the head at the start of the buffer, seen
        before byte for byte, with that head consumed; None (and nothing
        consumed) when the head is incomplete or new."""
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\r\n\r\n", pos, pos + _CACHED_HEAD_MAX + 4)
        if end < 0:
            return None
        entry = self._heads().get(bytes(buf[pos:end]))
        if entry is not None:
            self._pos = self._scan = end + 4
        return entry

    def _fail(self, status: int, message: str) -> ProtocolError:
        self._dead = True
        self._error = (status, message)
        return ProtocolError(status, message)

    def _check_dead(self) -> None:
        if self._error is not None:
            status, message = self._error
            raise ProtocolError(status, message)

    # -- the head ---------------------------------------------------------------

    def _scan_head(self) -> tuple[int, int] | None:
        """Find the head starting at ``_pos``: ``(line_end, end)``, the
        indexes of the CRLF ending the start line and of the CRLFCRLF ending
        the head (equal when there are no fields), or None while incomplete.
        The start line is validated by :meth:`_check_line` as soon as its
        CRLF arrives; bad bytes and oversized lines or heads fail at once."""
        buf = self._buf
        pos = self._pos
        scan = max(self._scan, pos)
        line_limit = self.limits.max_request_line
        if self._line_len < 0:
            lf = buf.find(b"\n", scan)
            if lf < 0:
                if _HEAD_BAD.search(buf, scan):
                    raise self._fail(400, "invalid byte in the start line")
                if len(buf) - pos - 1 > line_limit:
                    raise self._line_too_long()
                self._scan = max(pos, len(buf) - 1)
                return None
            if lf == pos or buf[lf - 1] != 13:
                raise self._fail(400, "the start line must end with CRLF")
            if lf - 1 - pos > line_limit:
                raise self._line_too_long()
            self._check_line(bytes(buf[pos:lf - 1]))
            self._line_len = lf - 1 - pos
            scan = lf - 1
        line_end = pos + self._line_len
        scan = max(scan, line_end)
        limit = self.limits.max_header_bytes
        end = buf.find(b"\r\n\r\n", scan)
        if end < 0:
            if _HEAD_BAD.search(buf, scan):
                raise self._fail(400, "header lines must end with CRLF and hold no control bytes")
            if len(buf) - line_end - 3 > limit:
                raise self._fail(431, "header section too large")
            self._scan = max(line_end, len(buf) - 3)
            return None
        if end - line_end > limit:
            raise self._fail(431, "header section too large")
        return line_end, end

    def _consume_head(self, end: int) -> None:
        self._pos = end + 4
        self._scan = self._pos
        self._line_len = -1

    def _check_line(self, line: bytes) -> None:
        raise NotImplementedError

    def _line_too_long(self) -> ProtocolError:
        return self._fail(414, "start line too long")

    def _parse_fields(self, block: bytes, what: str = "") -> list[tuple[bytes, bytes]]:
        try:
            return parse_fields(block, self.limits.max_headers)
        except ProtocolError as exc:
            raise self._fail(exc.status, what + exc.message)

    # -- the body ---------------------------------------------------------------

    def _frame_body(self, fields_te: list[bytes], fields_cl: list[bytes]) -> None:
        """Set up reading the body that the framing headers announce."""
        self._chunked = False
        self._body_left = 0
        self._chunks = []
        self._body_size = 0
        self._in_trailer = False
        if fields_te:
            if fields_cl:
                raise self._fail(400, "both Content-Length and Transfer-Encoding")
            try:
                codings = transfer_codings(fields_te)
            except ProtocolError as exc:
                raise self._fail(exc.status, exc.message)
            names = [name for name, _ in codings]
            if b"chunked" in names:
                if names.count(b"chunked") > 1:
                    raise self._fail(400, "chunked applied more than once")
                if names[-1] != b"chunked":
                    raise self._fail(400, "chunked must be the final transfer coding")
                if codings[-1][1]:
                    raise self._fail(400, "the chunked coding takes no parameters")
                if len(names) > 1:
                    raise self._fail(501, f"unsupported transfer coding {names[0].decode()!r}")
            else:
                raise self._fail(501, f"unsupported transfer coding {names[0].decode()!r}")
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
        self._scan = self._pos
        return bytes(self._buf[pos:pos + need]) if need else b""

    def _read_chunked(self) -> bool:
        """Consume complete chunks into ``_chunks``; True once the last chunk
        and the trailer section have arrived."""
        buf = self._buf
        while True:
            pos = self._pos
            if self._in_trailer:
                return self._read_trailer()
            if self._body_left:
                need = self._body_left
                have = len(buf) - pos
                if have > need and buf[pos + need] != 13 \
                        or have > need + 1 and buf[pos + need + 1] != 10:
                    raise self._fail(400, "chunk data not followed by CRLF")
                if have < need + 2:
                    return False
                self._chunks.append(bytes(buf[pos:pos + need]))
                self._pos = self._scan = pos + need + 2
                self._body_left = 0
                continue
            scan = max(pos, self._scan)
            lf = buf.find(b"\n", scan)
            if lf < 0:
                if _HEAD_BAD.search(buf, scan):
                    raise self._fail(400, "invalid byte in a chunk size line")
                if len(buf) - pos > _MAX_CHUNK_LINE:
                    raise self._fail(400, "chunk size line too long")
                self._scan = max(pos, len(buf) - 1)
                return False
            if lf == pos or buf[lf - 1] != 13:
                raise self._fail(400, "chunk size line must end with CRLF")
            if lf - pos > _MAX_CHUNK_LINE:
                raise self._fail(400, "chunk size line too long")
            match = _CHUNK_LINE.fullmatch(bytes(buf[pos:lf - 1]))
            if match is None:
                raise self._fail(400, "invalid chunk size line")
            digits = match.group(1)
            if len(digits) > _MAX_SIZE_DIGITS:
                raise self._fail(400, "chunk size too large")
            size = int(digits, 16)
            self._body_size += size
            if self._body_size > self.limits.max_body_bytes:
                raise self._fail(413, "body larger than the server accepts")
            self._pos = self._scan = lf + 1
            if size == 0:
                self._in_trailer = True
            else:
                self._body_left = size

    def _read_trailer(self) -> bool:
        buf = self._buf
        pos = self._pos
        if buf[pos:pos + 2] == b"\r\n":
            self._pos = self._scan = pos + 2
            return True
        scan = max(pos, self._scan)
        end = buf.find(b"\r\n\r\n", scan)
        if end < 0:
            if _HEAD_BAD.search(buf, scan):
                raise self._fail(400, "trailer lines must end with CRLF and hold no control bytes")
            if len(buf) - pos - 1 > self.limits.max_header_bytes:
                raise self._fail(431, "trailer section too large")
            self._scan = max(pos, len(buf) - 3)
            return False
        if end + 2 - pos > self.limits.max_header_bytes:
            raise self._fail(431, "trailer section too large")
        for name, _ in self._parse_fields(bytes(buf[pos:end + 2]), "invalid trailer: "):
            if name in _NOT_IN_TRAILERS:
                raise self._fail(400, f"{name.decode()} is not allowed in a trailer")
        self._pos = self._scan = end + 4
        return True


class RequestParser(_MessageParser):
    """Parses the requests a client sends on one connection, in order.

    Each :class:`Request` has ``target`` exactly as sent; ``path`` is its
    path percent-decoded as UTF-8 (``%2F`` becomes ``/`` like any escape,
    so a handler that must tell them apart reads ``target``), or the path of
    an absolute-form target (whose authority then replaces Host, RFC 9112
    §3.2.2); invalid escapes, invalid UTF-8 and escaped control characters
    are refused (400). ``query_string`` is the raw text after ``?``.
    Trailer fields are validated and dropped."""

    _kind = "request"

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
        return self._head  # type: ignore[return-value]

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive."""
        if self._dead:
            self._check_dead()
        request = self._head
        if request is None:
            if self._pos == len(self._buf):
                return None  # nothing buffered: the common case after each request
            request = self._cached_head() if self._line_len < 0 else None
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
        if self._line_len < 0:
            pos = self._pos
            while buf.startswith(b"\r\n", pos):  # RFC 9112 §2.2: ignore empty lines first
                pos += 2
            self._pos = pos
            if pos < len(buf) and buf[pos] not in _TCHAR_BYTES \
                    and not (buf[pos] == 13 and pos + 1 == len(buf)):
                raise self._fail(400, "malformed request line")
        bounds = self._scan_head()
        if bounds is None:
            return None
        line_end, end = bounds
        fields = self._parse_fields(bytes(buf[line_end + 2:end + 2])) if end > line_end else []
        head = bytes(buf[self._pos:end]) if end - self._pos <= _CACHED_HEAD_MAX else None
        self._consume_head(end)
        method_b, target_b, http10 = self._line
        request = self._build(method_b, target_b, http10, fields)
        if head is not None:
            parts = (request.method, request.target, request.path, request.query_string,
                     request.version, request.headers._raw, request.keep_alive)
            _remember(self._heads(), head, (parts, self.expect_continue, self._framing))
        return request

    def _cached_head(self) -> Request | None:
        """The request for a head seen before, byte for byte (clients send
        the same few heads again and again): everything the full parse
        checked and derived is reused, so only the body framing is set up
        again (a request without one gets its empty body at once). None when
        the head is incomplete or new; a head after blank lines is always
        new (the full parse skips them)."""
        entry = self._remembered()
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
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            raise self._fail(400, "malformed request line")
        method_b, target_b, major, minor = match.groups()
        if major != b"1":
            raise self._fail(505, "only HTTP/1.x is supported")
        self._line = (method_b, target_b, minor == b"0")

    def _line_too_long(self) -> ProtocolError:
        if _METHOD_SP.match(self._buf, self._pos, self._pos + self.limits.max_request_line):
            return self._fail(414, "request line too long")
        return self._fail(400, "malformed request line (method too long)")

    def _build(self, method_b: bytes, target_b: bytes, http10: bool,
               fields: list[tuple[bytes, bytes]]) -> Request:
        te: list[bytes] = []
        cl: list[bytes] = []
        conn: list[bytes] = []
        expect: list[bytes] = []
        hosts = 0
        host = b""
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
                expect.append(value)
        if hosts > 1:
            raise self._fail(400, "more than one Host header")
        if hosts == 0 and not http10:
            raise self._fail(400, "missing Host header")
        if hosts and not _HOST.fullmatch(host):
            raise self._fail(400, "invalid Host header")
        if te and http10:
            raise self._fail(400, "Transfer-Encoding in an HTTP/1.0 request")
        method = _METHODS.get(method_b) or method_b.decode("ascii")
        path, query, authority = self._split_target(method, target_b)
        if authority is not None:  # RFC 9112 §3.2.2: the target's authority wins
            fields = [(n, v) for n, v in fields if n != b"host"] + [(b"host", authority)]
        self._frame_body(te, cl)
        self._framing = (te, cl) if te or cl else None
        tokens = connection_tokens(conn) if conn else ()
        if http10:
            keep_alive = b"keep-alive" in tokens and b"close" not in tokens
        else:
            keep_alive = b"close" not in tokens
        self.expect_continue = False
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
            if not _AUTHORITY_FORM.fullmatch(target):
                raise self._fail(400, "CONNECT needs a host:port target")
            return target.decode("ascii"), "", None
        if target[:1] == b"/":
            raw = target
        elif target == b"*":
            if method != "OPTIONS":
                raise self._fail(400, "the * target is only valid with OPTIONS")
            return "*", "", None
        else:
            match = _ABSOLUTE.fullmatch(target)
            if match is None:
                raise self._fail(400, "invalid request target")
            scheme, authority, raw = match.groups()
            if scheme.lower() not in (b"http", b"https") or not _HOST.fullmatch(authority):
                raise self._fail(400, "invalid absolute request target")
            if raw[:1] != b"/":
                raw = b"/" + raw
        raw_path, _, query = raw.partition(b"?")
        if b"%" in raw_path:
            if _BAD_ESCAPE.search(raw_path):
                raise self._fail(400, "invalid percent-escape in the path")
            decoded = unquote_to_bytes(raw_path)
            if _CONTROL.search(decoded):
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


class ResponseParser(_MessageParser):
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
            head = self._cached_head() if self._line_len < 0 else None
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
        match = _STATUS_LINE.fullmatch(line)
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

    def _cached_head(self) -> ResponseHead | None:
        """The head seen before byte for byte (a server repeats the same few
        heads): the status line and fields checked then are reused, only the
        body framing is set up again. None when incomplete or new."""
        entry = self._remembered()
        return None if entry is None else self._head_from(*entry)

    def _parse_head(self) -> ResponseHead | None:
        bounds = self._scan_head()
        if bounds is None:
            return None
        line_end, end = bounds
        buf = self._buf
        fields = self._parse_fields(bytes(buf[line_end + 2:end + 2])) if end > line_end else []
        head = bytes(buf[self._pos:end]) if end - self._pos <= _CACHED_HEAD_MAX else None
        self._consume_head(end)
        http10, status, reason = self._status_line
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
        if http10:
            keep_alive = b"keep-alive" in tokens and b"close" not in tokens
        else:
            keep_alive = b"close" not in tokens
        entry = (status, reason, http10, fields, te, cl, keep_alive)
        response = self._head_from(*entry)
        if head is not None:
            _remember(self._heads(), head, entry)
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
        else:
            self._frame_body(te, cl)
            if not te and not cl:
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

    def _take_partial_chunk(self) -> None:
        """Pass on the part of a chunk that has arrived, so a huge or
        stalled chunk streams instead of being held whole. The chunk's last
        byte waits for the CRLF after it, which the chunk reader checks."""
        pos = self._pos
        take = min(len(self._buf) - pos, self._body_left - 1)
        if take > 0:
            self._chunks.append(bytes(self._buf[pos:pos + take]))
            self._pos = self._scan = pos + take
            self._body_left -= take

"""What requests and responses share: limits, framing, and the parser's buffer.

:func:`framing` reads the framing fields of either kind of message (how its
body is delimited, whether the connection persists), and
:class:`MessageParser` holds the bytes received, finds each head in them
(remembering heads seen before), and delimits each body by the same rules
(Content-Length, or chunked with its trailer section), for the
:class:`~corofw.http.parser.RequestParser` and
:class:`~corofw.http.parser.ResponseParser` built on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .grammar import (
    CHUNK_LINE,
    HEAD_BAD,
    ProtocolError,
    connection_tokens,
    content_length,
    parse_fields,
    transfer_codings,
)

_NOT_IN_TRAILERS = frozenset({b"content-length", b"transfer-encoding", b"host"})
_MAX_CHUNK_LINE = 4096
_MAX_SIZE_DIGITS = 16
# Heads seen before, byte for byte, with what parsing them found: clients and
# servers send the same few heads again and again. Kept per kind of message
# and Limits (a head within some limits may break others), up to _SEEN_MAX
# heads of at most SEEN_HEAD_MAX bytes each; a full table starts over.
_HEADS_SEEN: dict[tuple[str, Limits], dict[bytes, tuple[Any, ...]]] = {}
SEEN_HEAD_MAX = 2048
_SEEN_MAX = 512


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


def framing(fields: list[tuple[bytes, bytes]], http10: bool
            ) -> tuple[list[bytes], list[bytes], bool]:
    """The framing of a message, read alike for requests and responses:
    its Transfer-Encoding and Content-Length values (which delimit the
    body, RFC 9112 §6), and whether the connection persists after it
    (§9.3: over HTTP/1.1 unless ``Connection: close``, over HTTP/1.0 only
    with ``keep-alive``)."""
    te: list[bytes] = []
    cl: list[bytes] = []
    connection: list[bytes] = []
    for name, value in fields:
        if name == b"content-length":
            cl.append(value)
        elif name == b"transfer-encoding":
            te.append(value)
        elif name == b"connection":
            connection.append(value)
    tokens = connection_tokens(connection) if connection else ()
    if http10:
        return te, cl, b"keep-alive" in tokens and b"close" not in tokens
    return te, cl, b"close" not in tokens


class MessageParser:
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
        self._awaiting: object | None = None  # a message whose body has not all arrived
        self._dead = False
        self._error: tuple[int, str] | None = None
        self._body_left = 0
        self._chunked = False
        self._chunks: list[bytes] = []
        self._body_size = 0
        self._in_trailer = False
        self.max_body = limits.max_body_bytes
        """The body limit of the message being read: ``limits``' at its
        head; a server may change it for a request it hands over early."""
        self._seen: tuple[Limits, dict[bytes, tuple[Any, ...]]] | None = None

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

    @property
    def body_so_far(self) -> int:
        """The size of the body being read, as far as is known: its
        Content-Length, or the chunks' sizes announced so far."""
        return self._body_size if self._chunked else self._body_left

    def take_buffered(self) -> bytes:
        """Hand over the bytes received but not consumed, and forget them:
        after an upgrade they belong to the new protocol."""
        data = bytes(self._buf[self._pos:])
        del self._buf[:]
        self._pos = self._scan = 0
        return data

    def _recall(self) -> tuple[Any, ...] | None:
        """What parsing found in the head at the start of the buffer when
        it was seen before, byte for byte, with that head consumed; None
        (and nothing consumed) when the head is incomplete or new."""
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\r\n\r\n", pos, pos + SEEN_HEAD_MAX + 4)
        if end < 0:
            return None
        entry = self._seen_heads().get(bytes(buf[pos:end]))
        if entry is not None:
            self._pos = self._scan = end + 4
        return entry

    def _seen_heads(self) -> dict[bytes, tuple[Any, ...]]:
        """This parser's part of ``_HEADS_SEEN``: the heads seen in its kind
        of message under its current limits (the client changes them)."""
        seen = self._seen
        if seen is None or seen[0] is not self.limits:
            limits = self.limits
            seen = self._seen = (limits, _HEADS_SEEN.setdefault((self._kind, limits), {}))
        return seen[1]

    def _remember(self, head: bytes | None, entry: tuple[Any, ...]) -> None:
        """Keep what parsing ``head`` found, for :meth:`_recall`."""
        if head is None:
            return
        seen = self._seen_heads()
        if len(seen) >= _SEEN_MAX:
            seen.clear()
        seen[head] = entry

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
                if HEAD_BAD.search(buf, scan):
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
            if HEAD_BAD.search(buf, scan):
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

    def _frame_body(self, fields_te: list[bytes], fields_cl: list[bytes]) -> bool:
        """Set up reading the body that the framing headers announce, by
        the rules requests and responses share (RFC 9112 §6): chunked as the
        final and only transfer coding, or one Content-Length within the
        limit, never both. False when neither header delimits a body."""
        self._chunked = False
        self._body_left = 0
        self._chunks = []
        self._body_size = 0
        self._in_trailer = False
        self.max_body = self.limits.max_body_bytes
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
            if self._body_left > self.max_body:
                raise self._fail(413, "body larger than the server accepts")
        else:
            return False
        return True

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
                if HEAD_BAD.search(buf, scan):
                    raise self._fail(400, "invalid byte in a chunk size line")
                if len(buf) - pos > _MAX_CHUNK_LINE:
                    raise self._fail(400, "chunk size line too long")
                self._scan = max(pos, len(buf) - 1)
                return False
            if lf == pos or buf[lf - 1] != 13:
                raise self._fail(400, "chunk size line must end with CRLF")
            if lf - pos > _MAX_CHUNK_LINE:
                raise self._fail(400, "chunk size line too long")
            match = CHUNK_LINE.fullmatch(bytes(buf[pos:lf - 1]))
            if match is None:
                raise self._fail(400, "invalid chunk size line")
            digits = match.group(1)
            if len(digits) > _MAX_SIZE_DIGITS:
                raise self._fail(400, "chunk size too large")
            size = int(digits, 16)
            self._body_size += size
            if self._body_size > self.max_body:
                raise self._fail(413, "body larger than the server accepts")
            self._pos = self._scan = lf + 1
            if size == 0:
                self._in_trailer = True
            else:
                self._body_left = size

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

    def _read_trailer(self) -> bool:
        buf = self._buf
        pos = self._pos
        if buf[pos:pos + 2] == b"\r\n":
            self._pos = self._scan = pos + 2
            return True
        scan = max(pos, self._scan)
        end = buf.find(b"\r\n\r\n", scan)
        if end < 0:
            if HEAD_BAD.search(buf, scan):
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

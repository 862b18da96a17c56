"""Turning responses into bytes for the wire."""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Any

from .status import status_line

_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_NO_BODY_STATUS = frozenset({204, 304})
_SERVER_FIELDS = frozenset({"content-length", "transfer-encoding", "connection", "date"})
_content_type_lines: dict[str, bytes] = {}
_date: list[Any] = [0.0, b""]


def date_line() -> bytes:
    """``date: <IMF-fixdate>\\r\\n``, recomputed at most once a second."""
    now = time.time()
    if now >= _date[0]:
        whole = int(now)
        _date[0] = whole + 1
        _date[1] = f"date: {formatdate(whole, usegmt=True)}\r\n".encode()
    line: bytes = _date[1]
    return line


def _content_type_line(content_type: str) -> bytes:
    line = _content_type_lines.get(content_type)
    if line is None:
        check_field("content-type", content_type)
        line = f"content-type: {content_type}\r\n".encode("latin-1")
        if len(_content_type_lines) < 256:
            _content_type_lines[content_type] = line
    return line


def check_field(name: str, value: str) -> None:
    """ValueError for a response header that cannot be sent as it is: a
    name that is not a token, a value with a line break or a control
    character, or text that is not Latin-1."""
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"invalid response header name {name!r}")
    if not _FIELD_VALUE.fullmatch(value):
        raise ValueError(f"invalid characters in response header {name!r}: {value!r}")


def response_head(status: int, content_type: str | None, headers: object,
                  length: int | None, keep_alive: bool, http10: bool) -> bytes:
    """The status line and header block. ``length`` None means the body is
    streamed: chunked for HTTP/1.1, delimited by closing for HTTP/1.0.

    ``content_type`` is the response's default; a Content-Type among
    ``headers`` (any case) replaces it, so one is ever sent. Header names
    and values, ``content_type`` included, are checked: ``ValueError`` for
    one that is invalid, so a value with CR or LF can never inject a header.
    Headers the server owns (Content-Length, Transfer-Encoding, Connection,
    Date) are not taken from ``headers``."""
    user = b""
    if headers:
        lines = []
        for name, value in headers.items():  # type: ignore[attr-defined]
            check_field(name, value)
            lower = name.lower()
            if lower in _SERVER_FIELDS:
                continue
            if lower == "content-type":
                content_type = None
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        user = b"".join(lines)
    parts = [status_line(status)]
    if content_type is not None:
        parts.append(_content_type_line(content_type))
    if status >= 200 and status not in _NO_BODY_STATUS:
        if length is not None:
            parts.append(b"content-length: %d\r\n" % length)
        elif not http10:
            parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(date_line())
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    elif http10:
        parts.append(b"connection: keep-alive\r\n")
    parts.append(user)
    parts.append(b"\r\n")
    return b"".join(parts)


_prefixes: dict[tuple[int, str | None], bytes] = {}


def simple_response(status: int, content_type: str | None, body: bytes,
                    keep_alive: bool, extra: bytes = b"") -> bytes | None:
    """A whole HTTP/1.1 response with no extra headers, as one bytes object
    (the server's fast path; same bytes as :func:`response_head` + body).
    ``extra``: header lines the server adds (valid, each ending in CRLF).

    None when ``content_type`` is not a valid header value: the caller then
    takes the general path, whose :func:`response_head` raises the error
    that the server reports as an invalid response (one path for both)."""
    try:
        prefix = _prefixes.get((status, content_type))
        if prefix is None:
            prefix = status_line(status)
            if content_type is not None:
                prefix += _content_type_line(content_type)
            if len(_prefixes) < 256:
                _prefixes[(status, content_type)] = prefix
    except (ValueError, TypeError):
        return None
    now = time.time()
    if now >= _date[0]:
        date_line()
    if keep_alive:
        return b"%scontent-length: %d\r\n%s%s\r\n%s" % (prefix, len(body), _date[1], extra,
                                                          body)
    return b"%scontent-length: %d\r\n%sconnection: close\r\n%s\r\n%s" % (
        prefix, len(body), _date[1], extra, body)


def body_allowed(status: int, method: str) -> bool:
    """Whether a response of ``status`` to ``method`` carries a body."""
    return method != "HEAD" and status >= 200 and status not in _NO_BODY_STATUS


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def error_response(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` response for a protocol error."""
    body = f"{message}\n".encode("latin-1", "replace")
    head = response_head(status, "text/plain; charset=utf-8", None, len(body), False, False)
    return head + body

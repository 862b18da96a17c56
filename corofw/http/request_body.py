"""A request's body from a call's arguments, sans-I/O.

``json=`` is sent as compact UTF-8 JSON, ``data=`` as a urlencoded form
(or as it is, when bytes or text), ``files=`` (with ``data=`` as its other
fields) as ``multipart/form-data`` with a random boundary, and
``content=`` as it is: bytes or text whole, with a Content-Length, and a
file object or any other iterable of bytes (a generator, say) streamed
piece by piece with ``Transfer-Encoding: chunked``, read only while the
request is sent. A streamed body can be sent once: it is not repeated on a
retry or a 307/308 redirect once any of it was read.

``files`` follows httpx: a mapping (or ``(name, file)`` pairs) whose
values are the content (bytes, text or a file object), or ``(filename,
content)``, or ``(filename, content, content_type)``. The filename defaults
to the file object's own name, else ``upload``; the content type is
guessed from the filename. Names and filenames are quoted as browsers
quote them (``"``, CR and LF percent-encoded); one holding another control
character is refused.
"""

from __future__ import annotations

import json as _json
import mimetypes
import os
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from .client_errors import ClientError
from .multipart import encode_multipart
from .urls import encode_params

_encode_json = _json.JSONEncoder(separators=(",", ":")).encode
_READ_SIZE = 65536
LAST_CHUNK = b"0\r\n\r\n"


class Body(NamedTuple):
    """What a request carries: ``data`` whole (with a Content-Length), or
    ``stream``, pieces of bytes to send chunked (``data`` is then empty);
    ``content_type`` unless the caller's headers name one."""

    data: bytes
    stream: Iterator[bytes] | None
    content_type: str | None


NO_BODY = Body(b"", None, None)


def encode_body(content: Any = None, data: Any = None, json: Any = None,
                files: Any = None) -> Body:
    """The body for one call's arguments (see the module's docstring)."""
    if files is not None:
        return encode_files(data, files)
    if json is not None:
        return Body(_encode_json(json).encode(), None, "application/json")
    if data is not None:
        if isinstance(data, (bytes, str)):
            return Body(data.encode() if isinstance(data, str) else data, None, None)
        return Body(encode_params(data).encode(), None, "application/x-www-form-urlencoded")
    if content is not None:
        if isinstance(content, str):
            return Body(content.encode(), None, None)
        if isinstance(content, (bytes, bytearray, memoryview)):
            return Body(bytes(content), None, None)
        if hasattr(content, "read"):
            return Body(b"", _read_pieces(content), None)
        if isinstance(content, Iterable):
            return Body(b"", _checked_pieces(content), None)
        raise TypeError(f"content must be bytes, text, a file or an iterable of bytes, "
                        f"got {type(content).__name__}")
    return NO_BODY


def chunk(data: bytes) -> bytes:
    """``data`` framed as one chunk of a chunked body (never empty: an
    empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _read_pieces(file: Any) -> Iterator[bytes]:
    while True:
        piece = file.read(_READ_SIZE)
        if not piece:
            return
        if isinstance(piece, str):
            piece = piece.encode()
        yield piece


def _checked_pieces(pieces: Iterable[Any]) -> Iterator[bytes]:
    for piece in pieces:
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise TypeError(f"a streamed body must give bytes, got {type(piece).__name__}")
        if piece:
            yield bytes(piece)


def encode_files(data: Any, files: Any) -> Body:
    """A ``multipart/form-data`` body: the fields of ``data`` (a mapping
    or pairs; a list value repeats its name), then the files."""
    parts: list[Any] = []
    if data:
        items = data.items() if hasattr(data, "items") else data
        for name, value in items:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                parts.append((name, _field_text(item)))
    items = files.items() if hasattr(files, "items") else files
    for name, value in items:
        parts.append((name, *_file_part(value)))
    for _ in range(8):
        boundary = os.urandom(16).hex()
        try:
            body = encode_multipart(parts, boundary)
        except ValueError as exc:
            if "occurs in part" in str(exc):
                continue  # the random boundary happens to be in the content: draw again
            raise ClientError(f"cannot send this multipart form: {exc}") from None
        return Body(body, None, f"multipart/form-data; boundary={boundary}")
    raise ClientError("cannot find a multipart boundary absent from the content")


def _field_text(value: Any) -> str | bytes:
    if isinstance(value, (str, bytes)):
        return value
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def _file_part(value: Any) -> tuple[bytes, str, str]:
    """``(content, filename, content_type)`` for one entry of ``files``."""
    filename: str | None = None
    content_type: str | None = None
    if isinstance(value, tuple):
        if not 2 <= len(value) <= 3:
            raise TypeError("a file is content, (filename, content) or "
                            "(filename, content, content_type)")
        filename, content = value[0], value[1]
        if len(value) == 3:
            content_type = value[2]
    else:
        content = value
    if hasattr(content, "read"):
        if filename is None:
            filename = os.path.basename(str(getattr(content, "name", "") or "")) or None
        content = content.read()
    if isinstance(content, str):
        content = content.encode()
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise TypeError(f"file content must be bytes, text or a file, "
                        f"got {type(content).__name__}")
    filename = filename or "upload"
    if content_type is None:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if any(c in content_type for c in "\r\n\0"):
        raise ClientError(f"invalid content type {content_type!r} for file {filename!r}")
    return bytes(content), filename, content_type

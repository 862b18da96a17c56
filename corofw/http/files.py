"""FileResponse: a response whose body is a file, sent with ``os.sendfile``."""

from __future__ import annotations

import mimetypes
import os
from typing import Any, BinaryIO

from .headers import Headers
from .messages import _ResponseHeaders

# the standard library's own table only: the system's mime.types differs
# from machine to machine, and a response should not
_TYPES = mimetypes.MimeTypes()
for _type, _extension in (("text/javascript", ".js"), ("text/javascript", ".mjs"),
                          ("application/json", ".json"), ("application/wasm", ".wasm"),
                          ("image/webp", ".webp"), ("image/avif", ".avif"),
                          ("font/woff", ".woff"), ("font/woff2", ".woff2"),
                          ("application/manifest+json", ".webmanifest"),
                          ("text/markdown", ".md")):
    _TYPES.add_type(_type, _extension)
_UTF8_TYPES = frozenset({"text/javascript", "application/json", "application/manifest+json",
                         "image/svg+xml"})


def guess_content_type(name: str) -> str:
    """The Content-Type for a file called ``name``, from its extension:
    text types (and JavaScript, JSON, SVG) say ``charset=utf-8``, an
    unknown or compressed-file extension gives ``application/octet-stream``."""
    kind, encoding = _TYPES.guess_type(name, strict=False)
    if kind is None or encoding is not None:  # foo.tar.gz is not a tar to the browser
        return "application/octet-stream"
    if kind.startswith("text/") or kind in _UTF8_TYPES:
        return f"{kind}; charset=utf-8"
    return kind


class FileResponse(_ResponseHeaders):
    """Send ``count`` bytes of a file from ``offset`` (the whole file by
    default) as the body; the server copies them with ``os.sendfile``,
    waiting for the client between pieces, and closes the file when done
    (or when the response is not sent).

    ``file`` is a path (opened here, ``OSError`` if it cannot be) or a
    binary file object with ``fileno()``, which the response then owns.
    ``content_type`` defaults to a guess from the path's extension
    (:func:`guess_content_type`), ``application/octet-stream`` for a file
    object. Content-Length is ``count``; a file that turns out shorter
    than promised is cut short with the connection closed.

    This sends the bytes asked for and nothing more: for ETag,
    Last-Modified, 304s and Range requests, use
    :func:`corofw.web.static.serve_file` or ``Router.static``.
    """

    __slots__ = ("status", "content_type", "file", "offset", "count")

    def __init__(self, file: str | os.PathLike[str] | BinaryIO, status: int = 200,
                 headers: Headers | Any = None, content_type: str | None = None,
                 offset: int = 0, count: int | None = None) -> None:
        if isinstance(file, (str, os.PathLike)):
            path = os.fspath(file)
            if content_type is None:
                content_type = guess_content_type(path)
            file = open(path, "rb")  # noqa: SIM115 (owned by the response, closed by close())
        elif not callable(getattr(file, "fileno", None)):
            raise TypeError(f"FileResponse needs a path or a binary file with fileno(), "
                            f"not {type(file).__name__}")
        try:
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError(f"offset must be an int >= 0, not {offset!r}")
            if count is None:
                count = max(os.fstat(file.fileno()).st_size - offset, 0)
            elif isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"count must be an int >= 0, not {count!r}")
        except BaseException:
            file.close()
            raise
        self.file = file
        self.offset = offset
        self.count = count
        self.status = int(status)
        self.headers = headers if isinstance(headers, Headers) or headers is None \
            else Headers(headers)
        self.content_type = content_type or "application/octet-stream"

    def __repr__(self) -> str:
        return f"<FileResponse {self.status} {self.count} bytes>"

    def close(self) -> None:
        """Close the file. Idempotent; the server calls it."""
        self.file.close()

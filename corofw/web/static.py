"""Serving files from a directory: ``routes.static("/static", "public")``.

A request path is turned into a file under the directory only when every
segment is an ordinary name: ``..``, ``.``, empty segments, backslashes
and NUL are refused (whether they came literally or percent-encoded, as
the router matches the decoded path), and so is a file whose real path,
symlinks resolved, is outside the directory. Each refusal is a plain 404,
as for a file that does not exist, so nothing is learnt from probing.

Responses carry ``ETag`` and ``Last-Modified``; ``If-None-Match`` and
``If-Modified-Since`` give ``304 Not Modified``, a single ``Range`` gives
``206 Partial Content`` (``416`` when it cannot be satisfied). The body
is a :class:`~corofw.http.files.FileResponse`, sent with ``os.sendfile``.
"""

from __future__ import annotations

import os
import re
import stat
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from ..http.files import FileResponse, guess_content_type
from ..http.headers import Headers
from ..http.messages import HTTPError, Request, Response

_RANGE = re.compile(r"bytes[ \t]*=[ \t]*(.*)", re.IGNORECASE | re.DOTALL)
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


class StaticFiles:
    """A route handler ``(request, path)`` serving the files under
    ``directory``. ``cache_control``, when given, is sent with every file
    (``"public, max-age=3600"``). Raises ``ValueError`` at once if
    ``directory`` is not a directory."""

    def __init__(self, directory: str | os.PathLike[str], *,
                 cache_control: str | None = None) -> None:
        root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(root):
            raise ValueError(f"static directory {os.fspath(directory)!r} is not a directory")
        self.root = root
        self.cache_control = cache_control
        self.__name__ = self.__qualname__ = f"static files in {root}"

    def __repr__(self) -> str:
        return f"<StaticFiles {self.root!r}>"

    def resolve(self, path: str) -> str | None:
        """The real path of the file ``path`` (relative, ``/``-separated,
        decoded) names under the directory, or None when it would leave
        the directory or is not an ordinary relative path. The directory's
        own path is resolved once, when the handler is made; the segments
        of ``path`` are looked at on every call."""
        if "\x00" in path or "\\" in path:
            return None
        segments = path.split("/")
        if any(segment in ("", ".", "..") for segment in segments):
            return None
        joined = os.path.join(self.root, *segments)
        if _plain_below(self.root, segments):
            return joined  # already real: no segment is a symlink
        real = os.path.realpath(joined)
        if not real.startswith(self.root + os.sep):
            return None
        return real

    def __call__(self, request: Request, path: str) -> Response | FileResponse:
        real = self.resolve(path)
        if real is None:
            raise HTTPError(404)
        extra = {"cache-control": self.cache_control} if self.cache_control else None
        return serve_file(request, real, headers=extra)


def _plain_below(root: str, segments: list[str]) -> bool:
    """Whether every one of ``segments`` under ``root`` exists and is not a
    symlink, so that joining them to ``root`` (a real path) gives a real
    path: one ``lstat`` a segment, where ``os.path.realpath`` would look
    at every component of the whole path."""
    current = root
    for segment in segments:
        current = current + os.sep + segment
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return False
        except OSError:
            return False
    return True


def serve_file(request: Request, path: str, headers: Any = None,
               content_type: str | None = None) -> Response | FileResponse:
    """Answer ``request`` with the file at ``path`` (trusted: check it
    first, as :class:`StaticFiles` does): 200 with the file, 304 when the
    client's copy is current, 206 for a satisfiable single ``Range``, 416
    for an unsatisfiable or malformed one; ``HTTPError(404)`` when ``path``
    is not a regular file that can be opened. ``headers`` are added to the
    response, ``content_type`` replaces the guess from the extension."""
    try:
        file = open(path, "rb")  # noqa: SIM115 (handed to the FileResponse, which closes it)
    except OSError:
        raise HTTPError(404) from None
    try:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise HTTPError(404)
        size = info.st_size
        etag = f'"{info.st_mtime_ns:x}-{size:x}"'
        answer = Headers(headers) if headers else Headers()
        answer["etag"] = etag
        answer["last-modified"] = formatdate(info.st_mtime, usegmt=True)
        answer["accept-ranges"] = "bytes"
        if _not_modified(request, etag, int(info.st_mtime)):
            file.close()
            return Response(b"", 304, answer)
        kind = content_type or guess_content_type(path)
        try:
            span = _range(request, etag, int(info.st_mtime), size)
        except _Unsatisfiable:
            file.close()
            answer["content-range"] = f"bytes */{size}"
            return Response(b"", 416, answer)
        if span is None:
            return FileResponse(file, 200, answer, kind, 0, size)
        start, end = span
        answer["content-range"] = f"bytes {start}-{end}/{size}"
        return FileResponse(file, 206, answer, kind, start, end - start + 1)
    except BaseException:
        file.close()
        raise


def _etags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def _http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _not_modified(request: Request, etag: str, mtime: int) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match (weak comparison) decides
    when present; else If-Modified-Since, for GET and HEAD."""
    if request.method not in ("GET", "HEAD"):
        return False
    headers = request.headers
    none_match = headers.get_all("if-none-match")
    if none_match:
        tags = _etags(",".join(none_match))
        return "*" in tags or etag in tags
    since = headers.get("if-modified-since")
    if since is None:
        return False
    when = _http_date(since)
    return when is not None and mtime <= when


class _Unsatisfiable(Exception):
    """A byte range that is malformed or that the file cannot satisfy (416)."""


def _range(request: Request, etag: str, mtime: int, size: int) -> tuple[int, int] | None:
    """The single byte range to send as ``(first, last)``; None to send the
    whole file (no Range, another unit, several ranges, or an If-Range that
    no longer matches). :class:`_Unsatisfiable` for a 416."""
    header = request.headers.get("range")
    if header is None or request.method not in ("GET", "HEAD"):
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None:
        if if_range.startswith('"') or if_range.startswith("W/"):
            if if_range != etag:  # strong comparison: a weak tag never matches
                return None
        elif _http_date(if_range) != mtime:
            return None
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None  # a unit other than bytes: ignored
    specs = found.group(1).split(",")
    if len(specs) > 1:
        return None  # several ranges: the whole file is a valid answer
    spec = _SPEC.fullmatch(specs[0].strip())
    if spec is None or not (spec.group(1) or spec.group(2)):
        raise _Unsatisfiable
    first, last = spec.groups()
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _Unsatisfiable
        return max(size - length, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if end < start or start >= size:
        raise _Unsatisfiable
    return start, min(end, size - 1)

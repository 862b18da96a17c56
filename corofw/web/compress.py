"""Response compression negotiated from ``Accept-Encoding``::

    routes.middleware(compression_middleware(minimum_size=500))

gzip always, and brotli (preferred at equal weight) when the ``brotli``
package is installed. A response is compressed only when it can be and
the client accepts a coding with a q-value above 0 (``identity`` listed
with a higher q wins; no ``Accept-Encoding`` means no compression).
Left as they are: responses that already have a ``Content-Encoding``
(no double compression), ``Cache-Control: no-transform``, statuses
without a body (1xx, 204, 304) and 206 ranges, content types that do not
compress (images, audio, video, archives...), bodies under
``minimum_size``, and :class:`~corofw.http.files.FileResponse` (sent by
sendfile as it is; serve pre-compressed files for those).

A response that may be compressed carries ``Vary: Accept-Encoding``
whatever this client accepted, its strong ``ETag`` becomes weak when it
is compressed (the bytes differ), and a HEAD gets the headers a GET would.
A :class:`StreamingResponse` is compressed chunk by chunk as it streams:
each chunk is flushed (``Z_SYNC_FLUSH``) so the client can decode it at
once, which is what server-sent events need.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any

from ..http.messages import Request, Response, StreamingResponse
from ..kernel.traps import Coro
from .cors import add_vary

try:
    import brotli  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError:  # optional: gzip only
    brotli = None

_COMPRESSIBLE = re.compile(
    r"text/|application/(?:json|javascript|ecmascript|xml|xhtml\+xml|rss\+xml|atom\+xml"
    r"|ld\+json|manifest\+json|wasm|x-javascript|graphql-response\+json)\b"
    r"|application/[\w.\-]+\+(?:json|xml)\b|image/(?:svg\+xml|x-icon|bmp)\b|font/(?:ttf|otf)\b",
    re.IGNORECASE)
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


def parse_accept_encoding(header: str) -> dict[str, float]:
    """The q-value of each coding in an ``Accept-Encoding`` value (names
    lower-cased; ``x-gzip`` counts as ``gzip``). Malformed entries are
    left out; a coding listed twice keeps its first q-value."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        if params:
            key, eq, value = params.strip().partition("=")
            if key.strip().lower() != "q" or not eq or not _QVALUE.fullmatch(value.strip()):
                continue
            weight = float(value.strip())
        if coding == "x-gzip":
            coding = "gzip"
        weights.setdefault(coding, weight)
    return weights


def choose_encoding(header: str | None, available: tuple[str, ...]) -> str | None:
    """The coding of ``available`` (in order of preference) to answer a
    request's ``Accept-Encoding`` with, or None for identity."""
    if not header:
        return None
    weights = parse_accept_encoding(header)
    star = weights.get("*", 0.0)
    best, best_weight = None, 0.0
    for coding in available:
        weight = weights.get(coding, star)
        if weight > best_weight:
            best, best_weight = coding, weight
    if best is None:
        return None
    identity = weights.get("identity")
    if identity is not None and identity > best_weight:
        return None
    return best


class _Stream:
    """A streaming body compressed chunk by chunk; it drives the original
    body, passing its kernel traps through, and closes it when closed."""

    __slots__ = ("body", "compress", "flush", "finish", "ended")

    def __init__(self, body: Any, compress: Callable[[bytes], bytes],
                 flush: Callable[[], bytes], finish: Callable[[], bytes]) -> None:
        self.body = body
        self.compress = compress
        self.flush = flush
        self.finish = finish
        self.ended = False

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        return self._step(self.body.send, value)

    def throw(self, exc: Any, *rest: Any) -> Any:
        return self._step(self.body.throw, exc)

    def close(self) -> None:
        self.ended = True
        self.body.close()

    def _step(self, resume: Callable[[Any], Any], value: Any) -> Any:
        if self.ended:
            raise StopIteration
        while True:
            try:
                item = resume(value)
            except StopIteration:
                self.ended = True
                tail = self.finish()
                if tail:
                    return tail
                raise
            if not isinstance(item, (bytes, bytearray, memoryview, str)):
                return item  # a trap: the server hands the answer to send()/throw()
            data = item.encode() if isinstance(item, str) else bytes(item)
            if data:
                out = self.compress(data) + self.flush()
                if out:
                    return out
            resume, value = self.body.send, None


def _brotli() -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[], bytes]]:
    compressor = brotli.Compressor(quality=4)
    return compressor.process, compressor.flush, compressor.finish


def _compress_whole(coding: str, data: bytes, gzip_level: int, brotli_quality: int) -> bytes:
    if coding == "br":
        compressed: bytes = brotli.compress(data, quality=brotli_quality)  # untyped module
        return compressed
    compressor = zlib.compressobj(gzip_level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def compression_middleware(minimum_size: int = 500, *, gzip_level: int = 6,
                           brotli_quality: int = 4, use_brotli: bool = True
                           ) -> Callable[[Request, Any], Coro[Any]]:
    """A middleware (for :meth:`Router.middleware`) compressing responses.

    ``minimum_size``: bodies shorter than this many bytes are sent as they
    are (a streamed body's size is unknown: it is always compressed).
    ``gzip_level`` (1-9) and ``brotli_quality`` (0-11) trade CPU for size;
    ``use_brotli=False`` offers gzip only."""
    if isinstance(minimum_size, bool) or not isinstance(minimum_size, int) or minimum_size < 0:
        raise ValueError(f"minimum_size must be a whole number >= 0, not {minimum_size!r}")
    if not 1 <= gzip_level <= 9:
        raise ValueError(f"gzip_level must be from 1 to 9, not {gzip_level!r}")
    if not 0 <= brotli_quality <= 11:
        raise ValueError(f"brotli_quality must be from 0 to 11, not {brotli_quality!r}")
    available = ("br", "gzip") if use_brotli and brotli is not None else ("gzip",)

    def streamer(coding: str) -> tuple[Callable[[bytes], bytes], Callable[[], bytes],
                                       Callable[[], bytes]]:
        if coding == "br":
            return _brotli()
        compressor = zlib.compressobj(gzip_level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return (compressor.compress, lambda: compressor.flush(zlib.Z_SYNC_FLUSH),
                compressor.flush)

    def compress(request: Request, call_next: Any) -> Coro[Any]:
        response = yield from call_next(request)
        kind = type(response)
        if kind is Response:
            if len(response.body) < minimum_size:
                return response
        elif kind is not StreamingResponse:
            return response  # a FileResponse, or a subclass we know nothing of
        if not _eligible(response):
            return response
        add_vary(response, "Accept-Encoding")
        coding = choose_encoding(request.headers.get("accept-encoding"), available)
        if coding is None:
            return response
        headers = response.headers
        headers["content-encoding"] = coding
        etag = headers.get("etag")
        if etag is not None and etag.startswith('"'):
            headers["etag"] = "W/" + etag
        if kind is Response:
            response.body = _compress_whole(coding, bytes(response.body), gzip_level,
                                            brotli_quality)
        elif request.method != "HEAD":  # a HEAD's body is never driven: headers only
            response.body = _Stream(response.body, *streamer(coding))
        return response

    return compress


def _eligible(response: Any) -> bool:
    """Whether the response is one compression may change."""
    status = response.status
    if status < 200 or status in (204, 206, 304):
        return False
    content_type = response.content_type
    headers = response.headers
    if headers:
        if "content-encoding" in headers or "content-range" in headers:
            return False
        content_type = headers.get("content-type", content_type)
        if "no-transform" in ",".join(headers.get_all("cache-control")).lower():
            return False
    return content_type is not None and _COMPRESSIBLE.match(content_type) is not None

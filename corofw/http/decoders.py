"""Decoding a response body's ``Content-Encoding`` (gzip, deflate),
incrementally and within bounds, sans-I/O.

A :class:`Decoder` is fed the body's bytes as they arrive and gives back
at most ``limit`` decoded bytes per :meth:`Decoder.read`, keeping the input
it has not decoded yet: however much a small compressed body would expand
to (a "decompression bomb"), memory grows only by what the caller reads.
Codings listed together (``gzip, deflate``) are undone in reverse order;
``x-gzip`` is ``gzip``; ``deflate`` is taken with or without its zlib
wrapper (servers send both); a gzip body of several members is read
whole. Corrupt or truncated data, or bytes after the end of a deflate
stream, is a :class:`~corofw.http.client_errors.DecodingError`.
"""

from __future__ import annotations

import zlib

from .client_errors import DecodingError

_GZIP = 16 + zlib.MAX_WBITS
_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
ACCEPT_ENCODING = "gzip, deflate"


def codings_of(content_encoding: str | None) -> list[str] | None:
    """The codings to undo, outermost last, for a Content-Encoding value;
    None when there is none, or one this module cannot undo (the body is
    then left as it came)."""
    if not content_encoding:
        return None
    codings = []
    for item in content_encoding.split(","):
        name = item.strip().lower()
        if name in ("", "identity"):
            continue
        coding = _CODINGS.get(name)
        if coding is None:
            return None
        codings.append(coding)
    return codings or None


class _Stage:
    __slots__ = ("coding", "obj", "tail")

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.obj: zlib._Decompress | None = None
        self.tail = b""  # input the last step left undecoded (bounded by its output)


class Decoder:
    """Undoes ``codings`` (as from :func:`codings_of`); ``url`` names the
    response in errors."""

    def __init__(self, codings: list[str], url: str = "") -> None:
        self.url = url
        self._stages = [_Stage(coding) for coding in reversed(codings)]
        self._raw = b""

    def feed(self, data: bytes) -> None:
        """More of the encoded body."""
        self._raw += data

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` decoded bytes (``b""``: more input is needed)."""
        try:
            return self._produce(len(self._stages) - 1, limit)
        except zlib.error as exc:
            raise DecodingError(f"the response body could not be decoded: {exc}",
                                self.url) from None

    def finish(self) -> None:
        """The body has ended: DecodingError if it stopped short of the
        end of its compressed data (call once :meth:`read` gives nothing)."""
        for stage in self._stages:
            if stage.tail or (stage.obj is not None and not stage.obj.eof):
                raise DecodingError(f"the {stage.coding} response body is truncated",
                                    self.url)

    def _produce(self, index: int, limit: int) -> bytes:
        stage = self._stages[index]
        while True:
            data, stage.tail = stage.tail, b""
            # A stage that has not started needs two bytes to tell a zlib
            # stream from raw deflate.
            while not data or (stage.obj is None and len(data) < 2):
                if index:
                    more = self._produce(index - 1, limit)
                else:
                    more, self._raw = self._raw, b""
                if not more:
                    stage.tail = data
                    return b""
                data += more
            out = self._decompress(stage, data, limit)
            if out:
                return out

    def _decompress(self, stage: _Stage, data: bytes, limit: int) -> bytes:
        obj = stage.obj
        if obj is None:
            if stage.coding == "gzip":
                wbits = _GZIP
            elif len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] << 8 | data[1]) % 31 == 0:
                wbits = zlib.MAX_WBITS  # a zlib stream
            else:
                wbits = -zlib.MAX_WBITS  # raw deflate
            obj = stage.obj = zlib.decompressobj(wbits)
        elif obj.eof:
            if stage.coding != "gzip":
                raise DecodingError("data after the end of the deflate body", self.url)
            obj = stage.obj = zlib.decompressobj(_GZIP)  # the next gzip member
        out = obj.decompress(data, limit)
        stage.tail = obj.unconsumed_tail or (obj.unused_data if obj.eof else b"")
        return out

"""Forms: ``application/x-www-form-urlencoded`` and ``multipart/form-data``
bodies read into a :class:`FormData` of strings and :class:`UploadFile`\\ s.

:func:`read_form` pulls the body through a ``read_chunk`` coroutine
(``b""`` at the end) and feeds each piece to an incremental parser as it
comes, so the same code reads a body that is already in memory (as
``request.form()`` does today) or one streamed from the socket. File
parts go into a ``SpooledTemporaryFile`` that moves to disk past
``FormLimits.spool_threshold``.
"""

from __future__ import annotations

from collections.abc import Callable
from tempfile import SpooledTemporaryFile
from typing import Any
from urllib.parse import unquote_to_bytes

from ..kernel.traps import Coro
from .headers import Headers
from .multidict import MultiDict
from .multipart import (
    DEFAULT_FORM_LIMITS,
    FormError,
    FormLimitError,
    FormLimits,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    parse_options_header,
)

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


class UploadFile:
    """A file part of a multipart form.

    ``filename`` is what the client sent (``""`` for a file input left
    empty): never use it as a path as is. ``content_type`` is the part's
    Content-Type or None, ``headers`` all its headers, ``size`` its length
    in bytes, and ``file`` a ``SpooledTemporaryFile`` positioned at the
    start: in memory up to the form's ``spool_threshold``, on disk beyond.
    The file is closed when the request has been answered (for a streamed
    response, when the stream ends).
    """

    __slots__ = ("filename", "content_type", "headers", "file", "size")

    def __init__(self, filename: str, headers: Headers,
                 spool_threshold: int = DEFAULT_FORM_LIMITS.spool_threshold) -> None:
        self.filename = filename
        self.headers = headers
        self.content_type: str | None = headers.get("content-type")
        self.file: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(  # noqa: SIM115 (closed by close())
            max_size=spool_threshold, mode="w+b")
        self.size = 0

    def __repr__(self) -> str:
        return f"<UploadFile {self.filename!r} {self.content_type} {self.size} bytes>"

    def write(self, data: bytes) -> None:
        """Append ``data`` (used while the form is read)."""
        self.file.write(data)
        self.size += len(data)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current position (all with -1).
        A spooled file is read from the local disk, synchronously."""
        return self.file.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the position, as ``file.seek``."""
        return self.file.seek(offset, whence)

    @property
    def closed(self) -> bool:
        """Whether the file has been closed."""
        return bool(self.file.closed)

    def close(self) -> None:
        """Close (and, if spooled to disk, delete) the file. Idempotent."""
        self.file.close()


class FormData(MultiDict[str | UploadFile]):
    """A read form: a read-only :class:`MultiDict` of field name to a
    ``str`` (plain fields) or an :class:`UploadFile` (file parts), first
    value per name; ``getlist`` gives every value of a repeated name."""

    __slots__ = ()

    def files(self) -> list[UploadFile]:
        """Every uploaded file, in order."""
        return [value for _, value in self._pairs if isinstance(value, UploadFile)]

    def close(self) -> None:
        """Close every uploaded file. Idempotent."""
        for upload in self.files():
            upload.close()


def check_limits(form: FormData, limits: FormLimits) -> None:
    """Raise :class:`FormLimitError` (413) if ``form``, read already (with
    other limits), holds more than ``limits`` allow."""
    fields = files = 0
    for _, value in form.items():
        if isinstance(value, UploadFile):
            files += 1
            if limits.max_file_size is not None and value.size > limits.max_file_size:
                raise FormLimitError(f"a file is larger than {limits.max_file_size} bytes")
        else:
            fields += 1
            if len(value.encode()) > limits.max_field_size:
                raise FormLimitError(f"a form field is larger than {limits.max_field_size} "
                                     f"bytes")
    if fields > limits.max_fields:
        raise FormLimitError(f"more than {limits.max_fields} form fields")
    if files > limits.max_files:
        raise FormLimitError(f"more than {limits.max_files} files")


class UrlencodedParser:
    """An incremental ``application/x-www-form-urlencoded`` parser (the
    HTML standard's rules: ``&`` separates pairs, ``+`` is a space, the
    first ``=`` ends the name, a pair without one has an empty value, empty
    pairs are skipped; percent-escapes are decoded as UTF-8 and a malformed
    ``%`` is kept). Strict where it matters: a pair that does not decode as
    UTF-8 is a :class:`FormError` (400), too many pairs or one too long a
    :class:`FormLimitError` (413)."""

    def __init__(self, limits: FormLimits = DEFAULT_FORM_LIMITS) -> None:
        self.limits = limits
        self._pending = b""
        self._count = 0

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        """The pairs completed by ``data``."""
        pieces = (self._pending + data).split(b"&")
        self._pending = pieces.pop()
        limit = self.limits.max_field_size
        if len(self._pending) > limit:
            raise FormLimitError(f"a form field is larger than {limit} bytes")
        return [self._decode(piece) for piece in pieces if piece]

    def finish(self) -> list[tuple[str, str]]:
        """The last pair, once the body has ended."""
        piece, self._pending = self._pending, b""
        return [self._decode(piece)] if piece else []

    def _decode(self, piece: bytes) -> tuple[str, str]:
        limits = self.limits
        if len(piece) > limits.max_field_size:
            raise FormLimitError(f"a form field is larger than {limits.max_field_size} bytes")
        self._count += 1
        if self._count > limits.max_fields:
            raise FormLimitError(f"form has more than {limits.max_fields} fields")
        name, _, value = piece.partition(b"=")
        try:
            return (unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8"),
                    unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8"))
        except UnicodeDecodeError:
            raise FormError(f"form field {name[:100]!r} is not valid UTF-8 once "
                            f"percent-decoded") from None


class _MultipartBuilder:
    """Turns parser events into form pairs, holding open uploads until
    the form is complete (or closing them all if it fails)."""

    def __init__(self, limits: FormLimits) -> None:
        self.limits = limits
        self.pairs: list[tuple[str, str | UploadFile]] = []
        self._part: PartStart | None = None
        self._field = bytearray()
        self._upload: UploadFile | None = None

    def handle(self, event: PartStart | PartData | PartEnd) -> None:
        if type(event) is PartData:
            if self._upload is not None:
                self._upload.write(event.data)
            else:
                self._field += event.data
        elif type(event) is PartStart:
            self._part = event
            if event.filename is not None:
                self._upload = UploadFile(event.filename, Headers(event.headers),
                                          self.limits.spool_threshold)
        else:
            part = self._part
            assert part is not None
            if self._upload is not None:
                self._upload.seek(0)
                self.pairs.append((part.name, self._upload))
                self._upload = None
            else:
                self.pairs.append((part.name, _decode_field(part, bytes(self._field))))
                self._field.clear()
            self._part = None

    def close(self) -> None:
        if self._upload is not None:
            self._upload.close()
        for _, value in self.pairs:
            if isinstance(value, UploadFile):
                value.close()


def _decode_field(part: PartStart, data: bytes) -> str:
    charset = "utf-8"
    for name, value in part.headers:
        if name == "content-type":
            try:
                charset = parse_options_header(value)[1].get("charset", "utf-8")
            except ValueError:
                raise FormError(f"form field {part.name!r} has a malformed Content-Type "
                                f"{value[:100]!r}") from None
    try:
        return data.decode(charset)
    except LookupError:
        raise FormError(f"form field {part.name!r} has an unknown charset {charset!r}",
                        415) from None
    except UnicodeDecodeError:
        raise FormError(f"form field {part.name!r} is not valid {charset}") from None


def read_form(content_type: str | None, read_chunk: Callable[[], Coro[bytes]],
              limits: FormLimits | None = None) -> Coro[FormData]:
    """Read a form body of ``content_type``, pulling its pieces with
    ``yield from read_chunk()`` until it returns ``b""``.

    Raises :class:`FormError` with the status to answer: 415 when
    ``content_type`` is not a form type (or a urlencoded form declares a
    charset other than UTF-8), 400 for a malformed body (a bad or missing
    boundary, a truncated part, a malformed part header...), 413 for a
    form over ``limits``. Uploads opened before an error are closed."""
    limits = limits or DEFAULT_FORM_LIMITS
    if not content_type:
        raise FormError(f"request has no Content-Type; a form is {URLENCODED} or "
                        f"{MULTIPART}", 415)
    try:
        kind, params = parse_options_header(content_type)
    except ValueError:
        raise FormError(f"malformed Content-Type {content_type[:200]!r}") from None
    if kind == URLENCODED:
        charset = params.get("charset", "utf-8").lower()
        if charset not in _UTF8:
            raise FormError(f"cannot read a form in charset {charset!r}; send UTF-8", 415)
        parser = UrlencodedParser(limits)
        pairs: list[tuple[str, Any]] = []
        while True:
            data = yield from read_chunk()
            if not data:
                break
            pairs += parser.feed(data)
        pairs += parser.finish()
        return FormData(pairs)
    if kind == MULTIPART:
        boundary = params.get("boundary")
        if boundary is None:
            raise FormError(f"{MULTIPART} Content-Type without a boundary parameter")
        multipart = MultipartParser(boundary, limits)
        builder = _MultipartBuilder(limits)
        try:
            while True:
                data = yield from read_chunk()
                if not data:
                    break
                for event in multipart.feed(data):
                    builder.handle(event)
            multipart.finish()
        except BaseException:
            builder.close()
            raise
        return FormData(builder.pairs)
    raise FormError(f"cannot read a {kind} body as a form; a form is {URLENCODED} or "
                    f"{MULTIPART}", 415)

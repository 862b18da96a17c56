"""``multipart/form-data`` (RFC 7578 on RFC 2046), parsed sans-I/O.

Feed the body in pieces of any size; each :meth:`MultipartParser.feed`
returns the events those bytes complete::

    parser = MultipartParser(boundary, FormLimits())
    for piece in body_pieces:
        for event in parser.feed(piece):
            ...   # PartStart, PartData, PartEnd
    parser.finish()   # raises if the body stopped before the final boundary

A part's data is handed on as soon as it is known not to be the start of
the next boundary, so memory stays bounded by the size of the pieces fed,
however large the part. Everything that is not well formed raises
:class:`MultipartError` (status 400) saying what; anything over one of the
:class:`FormLimits` raises :class:`FormLimitError` (status 413) naming the
limit. The parser never touches a socket or a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote

_BCHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# a quoted value ends at the quote that ends the parameter: browsers send a
# backslash in a name as is (only ", CR and LF are percent-encoded), so a
# name ending in one must not escape the closing quote
_PARAM = re.compile(r';[ \t]*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*'
                    r'("[^\r\n]*?"(?=[ \t]*(?:;|\Z))|[!#$%&\'*+\-.^_`|~0-9A-Za-z]+)[ \t]*')
_EXT_VALUE = re.compile(r"([A-Za-z0-9!#$%&+\-^_`{}~]+)'[A-Za-z0-9\-]*'(.*)", re.S)
_MAX_PADDING = 256  # transport padding allowed after a boundary


class FormError(ValueError):
    """A form body that cannot be read; ``status`` is the HTTP answer
    (400 malformed, 413 over a limit, 415 a type that is not a form)."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class MultipartError(FormError):
    """A ``multipart/form-data`` body that is not well formed (400)."""


class FormLimitError(FormError):
    """A form over one of its :class:`FormLimits` (413)."""

    status = 413


@dataclass(frozen=True)
class FormLimits:
    """What one form may hold. A field is a part without a filename (or a
    pair of a urlencoded form), a file a part with one; sizes are bytes.
    ``max_file_size`` None means no limit of its own (the server's body
    limit still applies). File parts larger than ``spool_threshold`` move
    from memory to a temporary file as they arrive."""

    max_fields: int = 1000
    max_files: int = 100
    max_field_size: int = 1 << 20
    max_file_size: int | None = None
    max_part_header_size: int = 16384
    spool_threshold: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("max_fields", "max_files", "max_field_size", "max_file_size",
                     "max_part_header_size", "spool_threshold"):
            value = getattr(self, name)
            if value is None and name == "max_file_size":
                continue
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")


DEFAULT_FORM_LIMITS = FormLimits()


class PartStart(NamedTuple):
    """A part's head: ``headers`` as ``(lower-case name, value)`` pairs,
    its form field ``name``, and ``filename`` (None for a plain field;
    a file input left empty gives ``""``)."""

    headers: list[tuple[str, str]]
    name: str
    filename: str | None


class PartData(NamedTuple):
    """The next piece of the current part's content (never empty)."""

    data: bytes


class PartEnd(NamedTuple):
    """The current part is complete."""


_PREAMBLE, _AFTER_BOUNDARY, _HEADERS, _BODY, _DONE = range(5)


def check_boundary(boundary: str) -> bytes:
    """``boundary`` as bytes if RFC 2046 allows it (1 to 70 characters
    from its set, not ending in a space); :class:`MultipartError` if not."""
    if not isinstance(boundary, str) or not _BCHARS.fullmatch(boundary):
        raise MultipartError(f"bad multipart boundary {boundary!r}: it must be 1 to 70 "
                             f"letters, digits or '()+_,-./:=? characters, not ending in a space")
    return boundary.encode("ascii")


class MultipartParser:
    """An incremental ``multipart/form-data`` parser for one body."""

    def __init__(self, boundary: str, limits: FormLimits = DEFAULT_FORM_LIMITS) -> None:
        raw = check_boundary(boundary)
        self.limits = limits
        self._first = b"--" + raw
        self._separator = b"\r\n--" + raw
        self._buf = bytearray()
        self._state = _PREAMBLE
        self._fields = 0
        self._files = 0
        self._part: PartStart | None = None
        self._part_size = 0
        self._part_limit: int | None = None

    @property
    def done(self) -> bool:
        """Whether the final boundary has been seen."""
        return self._state == _DONE

    def feed(self, data: bytes) -> list[PartStart | PartData | PartEnd]:
        """Take the next bytes of the body; return the events they complete."""
        if self._state == _DONE:
            return []  # the epilogue, which carries nothing
        self._buf += data
        events: list[PartStart | PartData | PartEnd] = []
        while True:
            state = self._state
            if state == _BODY:
                progressed = self._body(events)
            elif state == _HEADERS:
                progressed = self._headers(events)
            elif state == _AFTER_BOUNDARY:
                progressed = self._after_boundary()
            elif state == _PREAMBLE:
                progressed = self._preamble()
            else:
                self._buf.clear()
                return events
            if not progressed:
                return events

    def finish(self) -> None:
        """The body has ended: :class:`MultipartError` unless the final
        boundary was seen."""
        if self._state == _DONE:
            return
        if self._state == _PREAMBLE:
            raise MultipartError("multipart body has no boundary line "
                                 f"({self._first.decode('ascii')!r} not found)")
        where = f" in part {self._part.name!r}" if self._part is not None else ""
        raise MultipartError(f"multipart body is truncated{where}: it ends before the "
                             f"final boundary")

    # -- states ------------------------------------------------------------------

    def _preamble(self) -> bool:
        buf = self._buf
        first = self._first
        if buf[:len(first)] == first:
            del buf[:len(first)]
            self._state = _AFTER_BOUNDARY
            return True
        found = buf.find(self._separator)
        if found >= 0:
            del buf[:found + len(self._separator)]
            self._state = _AFTER_BOUNDARY
            return True
        if len(buf) > self.limits.max_part_header_size + len(self._separator):
            raise MultipartError(f"no multipart boundary line in the first "
                                 f"{self.limits.max_part_header_size} bytes of the body")
        return False

    def _after_boundary(self) -> bool:
        buf = self._buf
        position = 0
        while position < len(buf) and buf[position] in b" \t":
            position += 1
        if position > _MAX_PADDING:
            raise MultipartError("malformed multipart boundary line: too much padding")
        ending = bytes(buf[position:position + 2])
        if len(ending) < 2:
            if ending in (b"", b"\r", b"-"):
                return False
        elif ending == b"\r\n":
            del buf[:position + 2]
            self._state = _HEADERS
            return True
        elif ending == b"--":
            buf.clear()
            self._state = _DONE
            return True
        raise MultipartError("malformed multipart boundary line: the boundary must be "
                             "followed by CRLF or '--' (does the body contain the boundary?)")

    def _headers(self, events: list[PartStart | PartData | PartEnd]) -> bool:
        buf = self._buf
        limit = self.limits.max_part_header_size
        if buf[:2] == b"\r\n":
            end, block = 2, b""
        else:
            found = buf.find(b"\r\n\r\n")
            if found < 0:
                if len(buf) > limit:
                    raise FormLimitError(f"a multipart part's header is larger than "
                                         f"{limit} bytes")
                return False
            end, block = found + 4, bytes(buf[:found])
        if end > limit:
            raise FormLimitError(f"a multipart part's header is larger than {limit} bytes")
        del buf[:end]
        headers = _parse_part_headers(block)
        name, filename = _disposition(headers)
        limits = self.limits
        if filename is None:
            self._fields += 1
            if self._fields > limits.max_fields:
                raise FormLimitError(f"form has more than {limits.max_fields} fields")
            self._part_limit = limits.max_field_size
        else:
            self._files += 1
            if self._files > limits.max_files:
                raise FormLimitError(f"form has more than {limits.max_files} files")
            self._part_limit = limits.max_file_size
        self._part = PartStart(headers, name, filename)
        self._part_size = 0
        self._state = _BODY
        events.append(self._part)
        return True

    def _body(self, events: list[PartStart | PartData | PartEnd]) -> bool:
        buf = self._buf
        separator = self._separator
        found = buf.find(separator)
        if found < 0:
            # keep what may be the start of the separator (its only CR is its
            # first byte); hand on the rest
            keep = buf.rfind(b"\r", max(len(buf) - len(separator) + 1, 0))
            if keep >= 0 and not separator.startswith(buf[keep:]):
                keep = -1
            take = len(buf) if keep < 0 else keep
            if take:
                self._emit(events, bytes(buf[:take]))
                del buf[:take]
            return False
        if found:
            self._emit(events, bytes(buf[:found]))
        del buf[:found + len(separator)]
        events.append(PartEnd())
        self._part = None
        self._state = _AFTER_BOUNDARY
        return True

    def _emit(self, events: list[PartStart | PartData | PartEnd], data: bytes) -> None:
        self._part_size += len(data)
        limit = self._part_limit
        if limit is not None and self._part_size > limit:
            part = self._part
            assert part is not None
            if part.filename is None:
                raise FormLimitError(f"form field {part.name!r} is larger than {limit} bytes")
            raise FormLimitError(f"file {part.filename!r} (field {part.name!r}) is larger "
                                 f"than {limit} bytes")
        events.append(PartData(data))


def _parse_part_headers(block: bytes) -> list[tuple[str, str]]:
    headers = []
    for line in block.split(b"\r\n") if block else ():
        if line[:1] in (b" ", b"\t"):
            raise MultipartError("malformed multipart part header: folded lines are not "
                                 "allowed")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise MultipartError(f"malformed multipart part header line {line[:100]!r}")
        value = value.strip(b" \t")
        if any(byte < 0x20 and byte != 0x09 or byte == 0x7F for byte in value):
            raise MultipartError(f"control character in multipart part header "
                                 f"{name.decode('ascii')!r}")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        headers.append((name.decode("ascii").lower(), text))
    return headers


def parse_options_header(value: str) -> tuple[str, dict[str, str]]:
    """``'form-data; name="a"; filename="b.txt"'`` -> ``("form-data",
    {"name": "a", "filename": "b.txt"})``: the lower-cased first value and
    its parameters (names lower-cased; in quoted strings ``\\\\`` and
    ``\\"`` are unescaped, any other backslash is kept, as browsers do not
    escape it; a ``name*`` parameter in RFC 8187 form is decoded and
    replaces ``name``).
    ``ValueError`` for text that is not such a header."""
    main, _, rest = value.partition(";")
    main = main.strip(" \t").lower()
    if not main:
        raise ValueError(f"malformed header value {value!r}")
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    position = 0
    rest = ";" + rest if rest else ""
    while position < len(rest):
        found = _PARAM.match(rest, position)
        if found is None:
            if rest[position:].strip(" \t;") == "":
                break  # trailing semicolons
            raise ValueError(f"malformed parameters in header value {value!r}")
        key, raw = found.group(1).lower(), found.group(2)
        if raw.startswith('"'):
            raw = re.sub(r'\\(["\\])', r"\1", raw[1:-1])
        if key.endswith("*"):
            extended[key[:-1]] = _decode_extended(raw, value)
        elif key in params:
            raise ValueError(f"parameter {key!r} repeated in header value {value!r}")
        else:
            params[key] = raw
        position = found.end()
    params.update(extended)
    return main, params


def _decode_extended(raw: str, header: str) -> str:
    found = _EXT_VALUE.fullmatch(raw)
    if found is None:
        raise ValueError(f"malformed extended parameter in header value {header!r}")
    try:
        return unquote(found.group(2), encoding=found.group(1), errors="strict")
    except (LookupError, UnicodeDecodeError):
        raise ValueError(f"undecodable extended parameter in header value {header!r}") from None


def _disposition(headers: list[tuple[str, str]]) -> tuple[str, str | None]:
    values = [value for name, value in headers if name == "content-disposition"]
    if len(values) != 1:
        what = "no" if not values else "more than one"
        raise MultipartError(f"multipart part has {what} Content-Disposition header")
    try:
        kind, params = parse_options_header(values[0])
    except ValueError as exc:
        raise MultipartError(f"multipart part has a malformed Content-Disposition: {exc}") \
            from None
    if kind != "form-data" or "name" not in params:
        raise MultipartError(f"multipart part's Content-Disposition is not 'form-data' with "
                             f"a name: {values[0][:200]!r}")
    return params["name"], params.get("filename")


def _quote(value: str) -> str:
    # the HTML standard's form-data encoding (", CR and LF percent-encoded),
    # with backslashes doubled, as httpx does, so that they read back as sent
    quoted = value.replace("\\", "\\\\").replace('"', "%22")
    quoted = quoted.replace("\r", "%0D").replace("\n", "%0A")
    if any(char < " " and char != "\t" or char == "\x7f" for char in quoted):
        raise ValueError(f"control character in multipart name or filename {value!r}")
    return quoted


def encode_multipart(parts: list[tuple[str, str | bytes] | tuple[str, bytes, str, str]],
                     boundary: str) -> bytes:
    """A ``multipart/form-data`` body for ``boundary``: each part is
    ``(name, value)`` for a field or ``(name, content, filename,
    content_type)`` for a file. Names and filenames are quoted as browsers
    do (``"``, CR and LF percent-encoded), backslashes doubled. ``ValueError`` if the boundary
    is invalid or occurs in a value, or a name holds another control
    character (which the parser would refuse)."""
    raw = check_boundary(boundary)
    chunks = []
    for part in parts:
        name, content = part[0], part[1]
        head = f'Content-Disposition: form-data; name="{_quote(name)}"'
        if len(part) == 4:
            head += f'; filename="{_quote(part[2])}"\r\nContent-Type: {part[3]}'
        data = content.encode() if isinstance(content, str) else bytes(content)
        if b"--" + raw in data:
            raise ValueError(f"the boundary {boundary!r} occurs in part {name!r}")
        chunks.append(b"--%s\r\n%s\r\n\r\n%s\r\n" % (raw, head.encode(), data))
    chunks.append(b"--%s--\r\n" % raw)
    return b"".join(chunks)

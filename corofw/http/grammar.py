"""The HTTP/1.1 grammar the parsers check messages against (RFC 9110, 9112).

Byte patterns for the pieces of a message (start lines, field lines, chunk
lines, hosts, targets) and the helpers that read framing fields with them.
Everything is matched against explicit byte patterns, never converted with
``int()`` on raw text: leniency there is how requests get smuggled past
other servers. :class:`ProtocolError` is what a violation raises.
"""

from __future__ import annotations

import re


class ProtocolError(Exception):
    """The peer broke HTTP/1.1; answer with ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


TCHAR_BYTES = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
QUOTED_STRING = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
# request-target: visible ASCII except "#" (a fragment is never sent)
REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([\x21\x22\x24-\x7e]+) HTTP/([0-9])\.([0-9])")
METHOD_SP = re.compile(TOKEN + rb" ")
STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
FIELD_LINES = re.compile(rb"(?:" + TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*")
# bytes no head, chunk line or trailer may hold: controls other than HTAB, and
# a CR or LF that is not part of a CRLF pair
HEAD_BAD = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|(?<!\r)\n")
DIGITS = re.compile(rb"[0-9]+")
CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN + rb"|" + QUOTED_STRING + rb"))?)*")
CODING = re.compile(
    rb"[ \t]*(" + TOKEN + rb")((?:[ \t]*;[ \t]*" + TOKEN
    + rb"[ \t]*=[ \t]*(?:" + TOKEN + rb"|" + QUOTED_STRING + rb"))*)[ \t]*")
_HOST_NAME = rb"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})+)"
HOST = re.compile(_HOST_NAME + rb"(?::[0-9]*)?")
AUTHORITY_FORM = re.compile(_HOST_NAME + rb":[0-9]+")
ABSOLUTE_FORM = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?]*)(.*)")
BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_MAX_CONTENT_LENGTH = (1 << 63) - 1


def parse_fields(block: bytes, max_fields: int) -> list[tuple[bytes, bytes]]:
    """Split a block of ``name: value\\r\\n`` lines into pairs of (lower-case
    name, value without surrounding whitespace); ProtocolError if any line
    is not a valid field line or there are more than ``max_fields``."""
    if not FIELD_LINES.fullmatch(block):
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
    """Why a block failed to match ``FIELD_LINES`` (the error path only)."""
    for line in block.split(b"\r\n"):
        if not line or FIELD_LINES.fullmatch(line + b"\r\n"):
            continue
        if line[:1] in (b" ", b"\t"):
            return "obsolete line folding is not accepted"
        name, colon, _ = line.partition(b":")
        if not colon:
            return "header line without a colon"
        if name[-1:] in (b" ", b"\t"):
            return "whitespace between header name and colon"
        if not re.fullmatch(TOKEN, name):
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
            if not DIGITS.fullmatch(item):
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
    codings: list[tuple[bytes, bool]] = []
    for value in values:
        count = len(codings)
        for item in value.split(b","):
            if not item.strip(b" \t"):
                continue
            match = CODING.fullmatch(item)
            if match is None:
                raise ProtocolError(400, "invalid Transfer-Encoding")
            codings.append((match.group(1).lower(), bool(match.group(2))))
        if len(codings) == count:
            raise ProtocolError(400, "empty Transfer-Encoding")
    return codings


def connection_tokens(values: list[bytes]) -> set[bytes]:
    """The lower-case tokens of Connection (or Expect) field values."""
    return {item.strip(b" \t").lower() for value in values for item in value.split(b",")}

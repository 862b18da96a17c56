"""W3C Trace Context (level 1) headers, read and written without I/O.

``traceparent`` names the trace a request belongs to and the span that
sent it::

    00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
    version trace-id (16 bytes)        parent-id (8 bytes) flags

:func:`parse_traceparent` is strict, as the specification asks: lowercase
hex only, neither id all zeros, version ``ff`` refused, version ``00``
exactly 55 characters. A higher version is read as the specification
says a reader of version 00 must: its first four fields in version 00's
shape, followed by the end of the value or a ``-`` (whatever follows is
ignored). Whoever continues such a trace sends version 00.

``tracestate`` carries vendors' own data along the trace. It is passed on
unchanged when it is valid (:func:`parse_tracestate`); an invalid one is
dropped whole; a valid one longer than :data:`MAX_TRACESTATE_LENGTH` is
cut down as the specification recommends (entries over 128 characters
first, then from the end).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["MAX_TRACESTATE_LENGTH", "MAX_TRACESTATE_MEMBERS", "SAMPLED", "TRACEPARENT",
           "TRACESTATE", "TRACE_ID_STATE_KEY", "TraceParent", "format_traceparent",
           "new_span_id", "new_trace_and_span_ids", "new_trace_id", "parse_traceparent",
           "parse_tracestate"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: The key of ``request.state`` under which a traced request keeps its trace id
#: (32 lowercase hex digits), for the access log and other code after the handler.
TRACE_ID_STATE_KEY = "trace_id"
#: The sampled flag of ``trace-flags``: the caller may have recorded the trace.
SAMPLED = 0x01
#: The longest ``tracestate`` passed on (the specification asks for at least 512).
MAX_TRACESTATE_LENGTH = 512
#: The most list members a valid ``tracestate`` holds.
MAX_TRACESTATE_MEMBERS = 32

_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")
_ANY_VERSION = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-|\Z)")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_KEY_CHARS = r"[a-z0-9_\-*/]"
_MEMBER = re.compile(
    rf"(?:[a-z]{_KEY_CHARS}{{0,255}}|[a-z0-9]{_KEY_CHARS}{{0,240}}@[a-z]{_KEY_CHARS}{{0,13}})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]\Z")
_LONG_MEMBER = 128
_getrandbits = random.getrandbits  # the module's generator is reseeded in a forked child


class TraceParent(NamedTuple):
    """A valid ``traceparent``: the ``trace_id`` (32 lowercase hex digits),
    the sender's span, ``parent_id`` (16), and the ``flags`` as an int."""

    trace_id: str
    parent_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        """Whether the sender may have recorded its part of the trace."""
        return bool(self.flags & SAMPLED)


def parse_traceparent(value: str) -> TraceParent | None:
    """The trace context in one ``traceparent`` value, or None when it is
    not valid (the receiver then starts a new trace)."""
    if value[:3] == "00-":
        match = _VERSION_00.match(value)
        if match is None:
            return None
        trace_id, parent_id, flags = match.groups()
    else:
        match = _ANY_VERSION.match(value)
        if match is None or match[1] == "ff":
            return None
        _, trace_id, parent_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16))


def format_traceparent(trace_id: str, span_id: str, flags: int) -> str:
    """The version 00 ``traceparent`` naming ``span_id`` of ``trace_id`` as
    the parent; only the sampled bit of ``flags`` is sent (version 00
    defines no other)."""
    return f"00-{trace_id}-{span_id}-{flags & SAMPLED:02x}"


def parse_tracestate(values: Sequence[str]) -> str | None:
    """The ``tracestate`` to pass on from the header's ``values`` (several
    header lines are one list, joined with commas): unchanged when valid
    and at most :data:`MAX_TRACESTATE_LENGTH` long, None when invalid (a
    malformed member, a key given twice, more than 32 members) or empty."""
    combined = values[0] if len(values) == 1 else ",".join(values)
    members = [member.strip(" \t") for member in combined.split(",")]
    members = [member for member in members if member]
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    keys = set()
    for member in members:
        if _MEMBER.match(member) is None:
            return None
        keys.add(member[:member.index("=")])
    if len(keys) != len(members):
        return None
    if len(combined) <= MAX_TRACESTATE_LENGTH:
        return combined
    return _shorten(members)


def _shorten(members: list[str]) -> str | None:
    """Members kept, in order, to fit :data:`MAX_TRACESTATE_LENGTH`: the
    long ones dropped first, then from the end."""
    size = len(",".join(members))
    kept = list(members)
    for member in members:
        if size <= MAX_TRACESTATE_LENGTH:
            break
        if len(member) > _LONG_MEMBER:
            kept.remove(member)
            size -= len(member) + 1
    while kept and len(",".join(kept)) > MAX_TRACESTATE_LENGTH:
        kept.pop()
    return ",".join(kept) or None


def new_trace_id() -> str:
    """A random trace id: 32 lowercase hex digits, never all zeros."""
    bits = _getrandbits(128)
    while not bits:
        bits = _getrandbits(128)
    return f"{bits:032x}"


def new_trace_and_span_ids() -> tuple[str, str]:
    """A random trace id and span id at once (cheaper than one by one)."""
    text = f"{_getrandbits(192):048x}"
    trace_id, span_id = text[:32], text[32:]
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return new_trace_id(), new_span_id()
    return trace_id, span_id


def new_span_id() -> str:
    """A random span id: 16 lowercase hex digits, never all zeros."""
    bits = _getrandbits(64)
    while not bits:
        bits = _getrandbits(64)
    return f"{bits:016x}"

"""JSON in and out of request and response bodies, under one rule: only
what is JSON (RFC 8259) passes, so whatever ``request.json()`` gives can be
sent back with ``Response.json``.

Python's ``json`` module also reads ``NaN``, ``Infinity`` and ``-Infinity``
and turns numbers too large for a float (``1e999``) into infinity; the
server refuses to send any of them, so reading them is refused too. A
string holding a lone surrogate (``"\\ud800"``, legal in JSON's grammar) is
kept as the client sent it: an answer that contains one carries it as a
``\\ud800`` escape rather than as invalid UTF-8.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_encode_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                                   allow_nan=False).encode
_encode_escaped = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
# a number a float can hold only as infinity has a 3-digit exponent or 309 digits
_MAYBE_HUGE = re.compile(r"[eE][+-]?[0-9]{3}|[0-9]{309}")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"number {text[:40]} is too large for a float")
    return number


_decode = json.JSONDecoder(parse_constant=_not_json).decode
_decode_checking_floats = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite).decode


def decode_json(body: bytes) -> Any:
    """``body`` (UTF-8, -16 or -32, as ``json.loads`` detects) parsed as
    JSON. Raises ``ValueError`` saying why for anything that is not JSON,
    ``NaN``, ``Infinity`` and numbers beyond a float's range included, and
    ``RecursionError`` for nesting too deep."""
    text = body.decode(json.detect_encoding(body), "surrogatepass")
    if _MAYBE_HUGE.search(text) is None:
        return _decode(text)
    return _decode_checking_floats(text)


def encode_json(data: Any) -> bytes:
    """``data`` as compact UTF-8 JSON; ``ValueError`` for NaN or infinity,
    ``TypeError`` for what JSON cannot hold. Text with a lone surrogate
    is sent as its ``\\uXXXX`` escape."""
    text = _encode_compact(data)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _encode_escaped(data).encode()

"""Cookies: reading the ``Cookie`` request header and writing ``Set-Cookie``.

Reading follows what browsers send (RFC 6265 section 5.4): ``name=value``
pairs separated by ``;`` and optional whitespace. A pair is dropped, never
answered with an error, when its name is not an HTTP token, it has no
``=``, or its value holds a control character or bytes that are not UTF-8;
a value in double quotes loses them. The first pair of a repeated name
wins, as browsers send the most specific cookie (longest path) first.

Writing is strict: a value that could end the cookie or inject a header is
refused with a ``ValueError`` naming it, never quoted or escaped behind the
caller's back (so what the browser sends back is exactly what was set).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, formatdate

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# cookie-octet of RFC 6265 section 4.1.1: visible ASCII but DQUOTE , ; and backslash
_COOKIE_OCTETS = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ATTRIBUTE_VALUE = re.compile(r"[\x20-\x3a\x3c-\x7e]*")  # any CHAR but CTLs and ";"
_DOMAIN = re.compile(r"\.?[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*")
_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}
_OCTET_NAMES = {'"': "a double quote", ",": "a comma", ";": "a semicolon",
                "\\": "a backslash", " ": "a space", "\r": "CR", "\n": "LF"}
EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"


def parse_cookie_header(header: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of a ``Cookie`` header value (as the
    server decoded it, latin-1), in order, repeated names included; pairs
    that are not well formed are left out (see the module docstring)."""
    pairs = []
    for piece in header.split(";"):
        name, eq, value = piece.partition("=")
        if not eq:
            continue
        name = name.strip(" \t")
        value = value.strip(" \t")
        if not _TOKEN.fullmatch(name) or _CONTROL.search(value):
            continue
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        if not value.isascii():
            try:
                value = value.encode("latin-1").decode("utf-8")
            except UnicodeError:
                continue
        pairs.append((name, value))
    return pairs


def _describe(char: str) -> str:
    name = _OCTET_NAMES.get(char)
    if name is not None:
        return name
    if not char.isascii():
        return f"the non-ASCII character {char!r}"
    if char < " " or char == "\x7f":
        return f"the control character {char!r}"
    return repr(char)


def _check_value(kind: str, value: str, pattern: re.Pattern[str], hint: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a str, not {type(value).__name__}")
    if pattern.fullmatch(value):
        return
    bad = next(char for char in value if not pattern.fullmatch(char))
    raise ValueError(f"{kind} {value!r} contains {_describe(bad)}, which a cookie cannot "
                     f"carry{hint}")


def _format_expires(expires: datetime | int | float | str) -> str:
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        return format_datetime(expires.astimezone(timezone.utc), usegmt=True)
    if isinstance(expires, bool):
        raise TypeError("expires must be a datetime, a Unix time or an HTTP date, not a bool")
    if isinstance(expires, (int, float)):
        return formatdate(expires, usegmt=True)
    if isinstance(expires, str):
        _check_value("cookie expires", expires, _ATTRIBUTE_VALUE, "")
        return expires
    raise TypeError(f"expires must be a datetime, a Unix time or an HTTP date, "
                    f"not {type(expires).__name__}")


def format_set_cookie(name: str, value: str = "", *, max_age: int | timedelta | None = None,
                      expires: datetime | int | float | str | None = None,
                      path: str | None = "/", domain: str | None = None,
                      secure: bool = False, httponly: bool = False,
                      samesite: str | None = "lax") -> str:
    """The value of a ``Set-Cookie`` header; arguments as for
    :meth:`~corofw.http.messages.Response.set_cookie`, which documents the
    rules. Raises ``ValueError`` naming what is wrong, ``TypeError`` for an
    argument of the wrong type."""
    if not isinstance(name, str):
        raise TypeError(f"cookie name must be a str, not {type(name).__name__}")
    if not _TOKEN.fullmatch(name):
        bad = next((char for char in name if not _TOKEN.fullmatch(char)), None)
        what = "is empty" if bad is None else f"contains {_describe(bad)}"
        raise ValueError(f"cookie name {name!r} {what}; a name must be an HTTP token "
                         f"(letters, digits and !#$%&'*+-.^_`|~)")
    _check_value(f"value of cookie {name!r}", value, _COOKIE_OCTETS,
                 " (encode it first, e.g. with urllib.parse.quote or base64)")
    parts = [f"{name}={value}"]
    if max_age is not None:
        if isinstance(max_age, timedelta):
            max_age = int(max_age.total_seconds())
        elif isinstance(max_age, bool) or not isinstance(max_age, int):
            raise TypeError(f"max_age must be an int (seconds) or a timedelta, "
                            f"not {type(max_age).__name__}")
        parts.append(f"Max-Age={max_age}")
    if expires is not None:
        parts.append(f"Expires={_format_expires(expires)}")
    if domain is not None:
        if not isinstance(domain, str) or not _DOMAIN.fullmatch(domain):
            raise ValueError(f"cookie domain {domain!r} is not a host name (letters, digits, "
                             f"'-' and '.'; encode an international name with IDNA first)")
        parts.append(f"Domain={domain}")
    if path is not None:
        _check_value("cookie path", path, _ATTRIBUTE_VALUE, "")
        parts.append(f"Path={path}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        canonical = _SAMESITE.get(samesite.lower()) if isinstance(samesite, str) else None
        if canonical is None:
            raise ValueError(f"samesite must be 'strict', 'lax', 'none' or None, "
                             f"not {samesite!r}")
        if canonical == "None" and not secure:
            raise ValueError("samesite='none' needs secure=True: browsers reject a "
                             "SameSite=None cookie that is not Secure")
        parts.append(f"SameSite={canonical}")
    if name.startswith("__Secure-") and not secure:
        raise ValueError(f"a cookie named {name!r} needs secure=True (the __Secure- prefix)")
    if name.startswith("__Host-") and (not secure or path != "/" or domain is not None):
        raise ValueError(f"a cookie named {name!r} needs secure=True, path='/' and no "
                         f"domain (the __Host- prefix)")
    return "; ".join(parts)

"""HTTP method names: validation and the order they are listed in ``Allow``."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The methods of RFC 9110 plus PATCH; any other method that no route uses
#: is answered with 501 Not Implemented.
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})

_ORDER = {name: index for index, name in enumerate(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"))}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def normalize_methods(methods: Iterable[str] | str) -> frozenset[str]:
    """Upper-cased method names; ``ValueError`` for an empty list or a name
    that is not an HTTP token."""
    if isinstance(methods, str):
        methods = [methods]
    names = []
    for method in methods:
        if not isinstance(method, str) or not _TOKEN.fullmatch(method):
            raise ValueError(f"invalid HTTP method {method!r}")
        names.append(method.upper())
    if not names:
        raise ValueError("a route needs at least one method")
    return frozenset(names)


def allow_header(methods: Iterable[str]) -> str:
    """``methods`` plus OPTIONS (and HEAD when GET is there), in the usual
    order: ``"GET, HEAD, POST, OPTIONS"``."""
    names = set(methods)
    names.add("OPTIONS")
    if "GET" in names:
        names.add("HEAD")
    return ", ".join(sorted(names, key=lambda name: (_ORDER.get(name, len(_ORDER)), name)))

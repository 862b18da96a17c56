"""Credentials the client sends in the ``Authorization`` header.

``auth=(user, password)`` (or :class:`BasicAuth`) sends Basic credentials
(RFC 7617, UTF-8); ``auth=BearerToken(token)`` sends ``Bearer <token>``
(RFC 6750). Given to a :class:`~corofw.http.client.Client`, they go with
every call; given to one call, they replace the client's. A call's own
``Authorization`` header wins over both. Credentials are never sent on to
another origin: a redirect to another scheme, host or port drops them.
What could not be sent safely is refused here, with a ``ValueError``.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Protocol

_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Credentials(Protocol):
    """What the client accepts as credentials besides a ``(user, password)``
    pair: any object whose ``header()`` gives the ``Authorization`` value,
    as :class:`BasicAuth` and :class:`BearerToken` do."""

    def header(self) -> str:
        """The ``Authorization`` header's value."""
        ...


class BasicAuth:
    """Basic credentials. A ``username`` cannot contain ``:`` (RFC 7617:
    the server could not tell where it ends); neither may hold control
    characters."""

    __slots__ = ("username", "_header")

    def __init__(self, username: str, password: str) -> None:
        if ":" in username:
            raise ValueError("a Basic username cannot contain ':'")
        if _CONTROL.search(username) or _CONTROL.search(password):
            raise ValueError("Basic credentials cannot contain control characters")
        self.username = username
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._header = "Basic " + token

    def __repr__(self) -> str:
        return f"BasicAuth({self.username!r}, [secure])"

    def header(self) -> str:
        """The ``Authorization`` header's value."""
        return self._header


class BearerToken:
    """A bearer token, such as an OAuth 2 access token; its characters
    must be those RFC 6750 allows (``token68``)."""

    __slots__ = ("_header",)

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not _TOKEN68.fullmatch(token):
            raise ValueError("a bearer token is letters, digits and -._~+/ "
                             "(then any '=' padding)")
        self._header = "Bearer " + token

    def __repr__(self) -> str:
        return "BearerToken([secure])"

    def header(self) -> str:
        """The ``Authorization`` header's value."""
        return self._header


def as_auth(auth: Any) -> Credentials | None:
    """``auth`` as the client keeps it: None, a ``(user, password)`` pair
    made :class:`BasicAuth`, or an object with ``header()``."""
    if auth is None:
        return None
    if isinstance(auth, tuple):
        if len(auth) != 2:
            raise TypeError("auth=(username, password)")
        return BasicAuth(*auth)
    if not callable(getattr(auth, "header", None)):
        raise TypeError(f"auth must be a (username, password) pair, BasicAuth or "
                        f"BearerToken, got {type(auth).__name__}")
    credentials: Credentials = auth  # it has header(), checked above
    return credentials

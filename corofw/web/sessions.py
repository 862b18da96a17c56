"""Sessions kept in a signed cookie::

    routes.middleware(session_middleware(["a long random secret"]))

    @routes.post("/login")
    def login(request):
        get_session(request)["user"] = "ada"
        return "welcome"

The session is a dict of JSON values, stored in the client's cookie as a
signed token (see :mod:`.signing`): the client can read it but not change
it, so keep secrets out of it. A cookie that is missing, tampered with,
signed with a key no longer listed, older than ``max_age`` or not a JSON
object gives an empty session, never an error page (and the bad cookie is
deleted). The cookie is written only when the session changed: set when
it holds something, deleted when it was emptied. Changes inside nested
values are not seen; set ``session.modified = True`` after those.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..http.messages import Request
from ..kernel.traps import Coro
from .signing import BadSignature, Signer

log = logging.getLogger("corofw.sessions")

SESSION_STATE_KEY = "corofw.session"
_COOKIE_LIMIT = 4093  # bytes browsers keep for one cookie, name and attributes included
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


class Session(dict[str, Any]):
    """The session's data: a dict that notes whether it was changed
    (``modified``), so the cookie is rewritten only then."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modified = False

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.modified = True

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.modified = True

    def clear(self) -> None:
        """Empty the session (its cookie is deleted)."""
        if self:
            self.modified = True
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        """As ``dict.pop``."""
        if key in self:
            self.modified = True
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        """As ``dict.popitem``."""
        item = super().popitem()
        self.modified = True
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        """As ``dict.setdefault``."""
        if key not in self:
            self.modified = True
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """As ``dict.update``."""
        super().update(*args, **kwargs)
        self.modified = True

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self.update(other)
        return self


def get_session(request: Request) -> Session:
    """The request's :class:`Session`; ``LookupError`` when no session
    middleware runs around the handler."""
    state = request._state
    session: Session | None = state.get(SESSION_STATE_KEY) if state is not None else None
    if session is None:
        raise LookupError("no session: add routes.middleware(session_middleware(keys)) to "
                          "the router that serves this route")
    return session


def session_middleware(secret_keys: Iterable[str | bytes] | str | bytes, *,
                       cookie_name: str = "session", max_age: int = 14 * 24 * 3600,
                       path: str = "/", domain: str | None = None, secure: bool = False,
                       httponly: bool = True, samesite: str | None = "lax",
                       salt: str = "corofw.session",
                       clock: Callable[[], float] | None = None
                       ) -> Callable[[Request, Any], Coro[Any]]:
    """A middleware (for :meth:`Router.middleware`) giving each request a
    session (:func:`get_session`) kept in the cookie ``cookie_name``.

    ``secret_keys``: the first signs, every one verifies (key rotation);
    at least 16 bytes each. ``max_age`` (seconds) bounds both the cookie's
    life in the browser and the age of a signature accepted; the other
    arguments are the cookie's attributes (``secure=True`` behind HTTPS).
    ``clock`` is for tests."""
    signer = Signer(secret_keys, salt, clock=clock) if clock else Signer(secret_keys, salt)
    if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age <= 0:
        raise ValueError(f"max_age must be a whole number of seconds > 0, not {max_age!r}")

    def load(request: Request) -> tuple[Session, bool]:
        """The session, and whether the request carried a cookie that must go."""
        token = request.cookies.get(cookie_name)
        if token is None:
            return Session(), False
        try:
            data = json.loads(signer.unsign_bytes(token, max_age))
        except BadSignature as exc:
            log.debug("ignoring session cookie: %s", exc)
            return Session(), True
        except ValueError:  # signed, but not JSON: an old format, say
            return Session(), True
        if not isinstance(data, dict):
            return Session(), True
        return Session(data), False

    def sessions(request: Request, call_next: Any) -> Coro[Any]:
        session, stale = load(request)
        request.state[SESSION_STATE_KEY] = session
        response = yield from call_next(request)
        if session.modified or stale:
            if session:
                token = signer.sign(_encode(dict(session)))
                if len(token) + len(cookie_name) > _COOKIE_LIMIT:
                    raise ValueError(f"the session is too large for a cookie "
                                     f"({len(token)} bytes signed); keep less in it")
                response.set_cookie(cookie_name, token, max_age=max_age, path=path,
                                    domain=domain, secure=secure, httponly=httponly,
                                    samesite=samesite)
            elif request.cookies.get(cookie_name) is not None:
                response.delete_cookie(cookie_name, path=path, domain=domain, secure=secure,
                                       httponly=httponly, samesite=samesite)
        return response

    return sessions

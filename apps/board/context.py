"""What every part of the board shares: the :class:`Board` (settings, data,
templates, live feed, backend client) and who is logged in.

The logged-in user lives in the signed session cookie as ``{"uid": id,
"name": username}``. A page that needs a user raises :class:`LoginRequired`
when there is none (never logged in, logged out, or the session expired);
the app answers that with a redirect to the log-in page, or with a JSON
401 for scripts (:func:`wants_json`).
"""

from __future__ import annotations

from typing import Any

from corofw import Client, Request, Response
from corofw.data import pg
from corofw.web import get_session
from corofw.web.templates import Templates

from .db import Store
from .settings import Settings

#: Paths whose answers, errors included, are JSON.
JSON_PREFIXES = ("/api/", "/events", "/status.json")


class LoginRequired(Exception):
    """Raised by :func:`require_user` when nobody is logged in."""


class Board:
    """One instance of the app: its settings and the resources built from
    them. ``feed`` (the live feed) and ``status`` (the status panel) are
    set when the app is made (:func:`apps.board.app.make_app`)."""

    def __init__(self, settings: Settings, templates: Templates) -> None:
        self.settings = settings
        self.pool = pg.Pool(settings.database_url, min_size=1, max_size=10)
        self.store = Store(self.pool)
        self.templates = templates
        self.backend = Client(settings.backend_url, timeout=5.0)
        self.feed: Any = None
        self.status: Any = None

    def page(self, request: Request, template: str, status: int = 200, **context: Any
             ) -> Response:
        """An HTML page: ``template`` rendered with ``context``, the logged-in
        ``user`` and the ``request`` (for ``csrf_token``). Pages show what
        only their user may see, so shared caches must not keep them."""
        return self.templates.render(template, status=status,
                                     headers={"cache-control": "private, no-cache"},
                                     request=request, user=current_user(request),
                                     settings=self.settings, **context)

    def close(self) -> Any:
        """Close the database pool and the backend client (a coroutine)."""
        self.backend.close()
        yield from self.pool.close()


def current_user(request: Request) -> dict[str, Any] | None:
    """``{"uid": ..., "name": ...}`` of the logged-in user, or None."""
    try:
        session = get_session(request)
    except LookupError:
        return None
    if isinstance(session.get("uid"), int) and isinstance(session.get("name"), str):
        return {"uid": session["uid"], "name": session["name"]}
    return None


def require_user(request: Request) -> dict[str, Any]:
    """The logged-in user; :class:`LoginRequired` when there is none."""
    user = current_user(request)
    if user is None:
        raise LoginRequired()
    return user


def wants_json(request: Request) -> bool:
    """Whether errors for this request should be JSON rather than a page:
    the JSON endpoints, and clients that accept JSON but not HTML."""
    if request.path.startswith(JSON_PREFIXES):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site, else ``/``
    (``//evil.example`` and ``/\\evil.example`` are other sites to a browser)."""
    if (not target or not target.startswith("/") or target.startswith(("//", "/\\"))
            or any(ord(char) < 32 for char in target)):
        return "/"
    return target

"""The board: a small live message board, built only on corofw.

Serve it with ``corofw run apps.board.app:routes`` (settings from the
environment, see :mod:`apps.board.settings`), or ``make board``, which
also starts a throwaway PostgreSQL and the stand-in backend. The parts:

=================  ========================================================
``auth.py``        sign-up, log-in, log-out (scrypt off the loop, sessions)
``posts.py``       the list of posts, newest first, paged; posting
``images.py``      image uploads checked by magic bytes, stored, served
``live.py``        new posts pushed over SSE, fed by LISTEN/NOTIFY
``status.py``      the status panel: a fan-out with a deadline
``pages.py``       error pages and JSON errors, security headers
``db.py``          the schema and every query
=================  ========================================================

``GET /metrics`` answers Prometheus scrapes (see docs/metrics.md) from this
host only: a request from another address, or one a proxy passed on (it
carries ``X-Forwarded-For`` or ``Forwarded``), gets the board's 404.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import datetime, timezone

from corofw import HTTPError, Metrics, Request, Router
from corofw.web import compression_middleware, csrf_middleware, session_middleware
from corofw.web.deadline import deadline_middleware
from corofw.web.templates import Templates

from . import auth, live, pages, posts, status
from .context import Board
from .images import IMAGE_CACHE_CONTROL
from .settings import Settings

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC_CACHE_CONTROL = "public, max-age=300"


def when(moment: datetime) -> str:
    """A post's time as pages show it, in UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def from_this_host(request: Request) -> bool:
    """Whether ``request`` came straight from this machine (loopback or a
    Unix socket) rather than through a proxy."""
    if "x-forwarded-for" in request.headers or "forwarded" in request.headers:
        return False
    client = request.client
    if not client:  # a Unix socket's peer
        return True
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def make_app(settings: Settings) -> tuple[Router, Board]:
    """The board's routes for ``settings``, and the :class:`Board` holding
    its resources. The routes' start-up hook opens the database pool and
    starts the live feed; their shutdown hook stops and closes them."""
    os.makedirs(settings.media_dir, exist_ok=True)
    templates = Templates(os.path.join(HERE, "templates"))
    templates.env.filters["when"] = when
    board = Board(settings, templates)
    board.feed = live.LiveFeed(settings.database_url, board.store,
                               lambda post: templates.render_text("_post.html", post=post))
    board.status = status.StatusPanel(board)

    routes = Router()
    metrics = Metrics()
    metrics.install(routes, path=None)
    metrics.observe(board.backend)

    @routes.get("/metrics")
    def scrape(request: Request):
        if not from_this_host(request):
            raise HTTPError(404)
        return (yield from metrics.endpoint(request))

    pages.install(routes, board)
    routes.middleware(compression_middleware())
    routes.middleware(deadline_middleware(default=settings.request_deadline))
    routes.middleware(session_middleware(list(settings.secret_keys),
                                         max_age=settings.session_max_age,
                                         clock=settings.clock))
    routes.middleware(csrf_middleware(list(settings.secret_keys)))
    routes.static("/static", os.path.join(HERE, "static"), name="static",
                  cache_control=STATIC_CACHE_CONTROL)
    routes.static("/media", settings.media_dir, name="media", cache_control=IMAGE_CACHE_CONTROL)
    for part in (auth, posts, live, status):
        routes.mount("", part.make_routes(board))

    @routes.on_startup
    def open_resources():
        yield from board.pool.open()   # a database that is down stops the start, in one line
        yield from board.feed.start()

    @routes.on_shutdown
    def close_resources():
        yield from board.feed.stop()
        yield from board.close()

    return routes, board


def __getattr__(name: str) -> object:
    """``routes`` (and its ``board``) for ``corofw run apps.board.app:routes``,
    made from the environment on first use, so importing this module for
    :func:`make_app` alone reads no settings."""
    if name in ("routes", "board"):
        made = make_app(Settings.from_env())
        globals().update(routes=made[0], board=made[1])
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

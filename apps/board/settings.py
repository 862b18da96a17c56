"""The board's settings, read from the environment by :meth:`Settings.from_env`.

==================  =========================================================
``DATABASE_URL``    PostgreSQL (``postgresql://user@host:port/db``)
``BACKEND_URL``     the stand-in backend API (``apps/backend.py``)
``BOARD_SECRET``    the signing key(s) of cookies, comma-separated, newest
                    first (a random one when unset: sessions then end when
                    the server restarts)
``BOARD_MEDIA``     the directory uploaded images are stored in
==================  =========================================================
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("board")

MiB = 1 << 20


@dataclass(frozen=True)
class Service:
    """One backend API the status panel calls: ``GET /api/{number}``,
    which the stand-in backend answers after ``delay`` seconds."""

    name: str
    number: int
    delay: float


#: What the status panel asks: three that answer within the deadline, one that does not.
DEFAULT_SERVICES = (
    Service("accounts", 1, 0.02),
    Service("search", 2, 0.08),
    Service("billing", 3, 0.15),
    Service("recommendations", 4, 2.0),
)


@dataclass(frozen=True)
class Settings:
    """Everything the app is configured with; tests build their own."""

    database_url: str
    backend_url: str
    secret_keys: tuple[str, ...]
    media_dir: str
    session_max_age: int = 7 * 24 * 3600
    max_image_bytes: int = 2 * MiB
    max_post_chars: int = 2000
    page_size: int = 20
    status_deadline: float = 0.5
    #: every request's deadline (seconds); a caller's header may shorten it
    request_deadline: float = 10.0
    services: tuple[Service, ...] = DEFAULT_SERVICES
    #: seconds between keep-alive comments on an idle live-update stream
    heartbeat: float = 15.0
    #: the signing clock (tests move it forward to expire sessions)
    clock: Callable[[], float] | None = field(default=None, compare=False)

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the environment variables in the module docstring."""
        keys = tuple(key.strip() for key in os.environ.get("BOARD_SECRET", "").split(",")
                     if key.strip())
        if not keys:
            log.warning("BOARD_SECRET is not set: signing cookies with a random key")
            keys = (secrets.token_urlsafe(32),)
        media = os.environ.get("BOARD_MEDIA") or os.path.join(tempfile.gettempdir(),
                                                               "corofw-board-media")
        return cls(
            database_url=os.environ.get("DATABASE_URL",
                                        "postgresql://postgres@127.0.0.1:5432/postgres"),
            backend_url=os.environ.get("BACKEND_URL", "http://127.0.0.1:9001"),
            secret_keys=keys,
            media_dir=media,
        )

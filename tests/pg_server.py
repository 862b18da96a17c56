"""A throwaway PostgreSQL cluster for the test session.

The ``pg_server`` fixture finds Debian's PostgreSQL binaries (``initdb``,
``pg_ctl``; ``make postgres`` installs them), creates a cluster in a
temporary directory with trust authentication, and starts it once per
session on a free port of 127.0.0.1 (and a unix socket in the same
directory). It is stopped with ``pg_ctl stop -m fast`` at the end and the
directory removed. PostgreSQL refuses to run as root, so under root every
command runs as the ``postgres`` system user (created if missing). Tests
that need a server skip, saying why, only when the binaries are missing.
The cluster itself is :class:`apps.board.devdb.PgServer`, which ``make
board`` uses too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.board.devdb import (  # noqa: F401 (re-exported for tests)
    RUN_AS,
    PgServer,
    ensure_system_user,
    find_bindir,
    free_port,
    throwaway_postgres,
    why_unavailable,
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (see :class:`PgServer`)."""
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with throwaway_postgres() as server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """The DSN of the session's server, started again if a test left it
    stopped."""
    if not pg_server.running:
        pg_server.start()
    return pg_server.dsn

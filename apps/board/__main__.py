"""``python -m apps.board COMMAND``:

``create-schema``  create the tables in the database at ``DATABASE_URL``
``dev``            run everything (what ``make board`` does): a throwaway
                   PostgreSQL, the stand-in backend and the board, until
                   Ctrl-C, which stops all three
"""

from __future__ import annotations

import os

import click

from corofw import run

from .db import create_schema
from .devdb import PostgresUnavailable, free_port
from .devrun import run_everything


@click.group()
def main() -> None:
    """The board app's commands."""


@main.command("create-schema")
@click.option("--database-url", envvar="DATABASE_URL", required=True,
              help="postgresql://user@host:port/db (default: $DATABASE_URL)")
def create_schema_command(database_url: str) -> None:
    """Create the board's tables (nothing changes if they exist)."""
    run(create_schema(database_url))
    click.echo("schema ready")


@main.command("dev")
@click.option("--port", type=int, default=lambda: int(os.environ.get("BOARD_PORT", "8000")),
              show_default="8000 or $BOARD_PORT", help="the board's port on 127.0.0.1")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="processes serving the board (live updates cross them)")
def dev_command(port: int, workers: int) -> None:
    """Run PostgreSQL, the backend and the board until Ctrl-C."""
    try:
        status = run_everything(port or free_port(), workers)
    except PostgresUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    raise SystemExit(status)


if __name__ == "__main__":
    main()

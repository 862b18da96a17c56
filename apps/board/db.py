"""The board's data in PostgreSQL: users and posts.

Every query is a coroutine on a :class:`corofw.data.pg.Pool`; parameters
travel apart from the SQL. Adding a post also sends ``NOTIFY board_posts``
with its id, in the same statement, so every process serving the board
(``--workers``) hears of it and pushes it to its live pages
(:mod:`apps.board.live`). ``python -m apps.board create-schema`` creates
the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from corofw import Coro
from corofw.data import pg

#: The channel on which new post ids are announced.
POSTS_CHANNEL = "board_posts"

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id bigserial PRIMARY KEY,
    username text NOT NULL,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username ON users (lower(username));
CREATE TABLE IF NOT EXISTS posts (
    id bigserial PRIMARY KEY,
    author_id bigint NOT NULL REFERENCES users (id),
    body text NOT NULL,
    image text,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

_POST_COLUMNS = """p.id, p.body, p.image, p.created_at, u.username AS author
    FROM posts p JOIN users u ON u.id = p.author_id"""

INSERT_POST = f"""
WITH new AS (INSERT INTO posts (author_id, body, image) VALUES ($1, $2, $3) RETURNING id)
SELECT id, pg_notify('{POSTS_CHANNEL}', id::text) FROM new"""


@dataclass(frozen=True)
class User:
    """A signed-up user."""

    id: int
    username: str
    password_hash: str


@dataclass(frozen=True)
class Post:
    """A post as pages show it: ``image`` is the stored file's name or None."""

    id: int
    body: str
    image: str | None
    created_at: datetime
    author: str


def _post(row: pg.Record) -> Post:
    return Post(row["id"], row["body"], row["image"], row["created_at"], row["author"])


class Store:
    """The queries the board runs, on ``pool``."""

    def __init__(self, pool: pg.Pool) -> None:
        self.pool = pool

    def create_user(self, username: str, password_hash: str) -> Coro[int | None]:
        """The new user's id, or None when the name (in any case) is taken."""
        try:
            return (yield from self.pool.fetchval(
                "INSERT INTO users (username, password_hash) VALUES ($1, $2) RETURNING id",
                username, password_hash))
        except pg.UniqueViolation:
            return None

    def find_user(self, username: str) -> Coro[User | None]:
        """The user of that name (in any case), or None."""
        row = yield from self.pool.fetchrow(
            "SELECT id, username, password_hash FROM users WHERE lower(username) = lower($1)",
            username)
        return User(row["id"], row["username"], row["password_hash"]) if row else None

    def add_post(self, author_id: int, body: str, image: str | None) -> Coro[int]:
        """Store a post and announce its id on :data:`POSTS_CHANNEL`; its id."""
        return (yield from self.pool.fetchval(INSERT_POST, author_id, body, image))

    def newest_posts(self, limit: int, before: int | None = None) -> Coro[list[Post]]:
        """Up to ``limit`` posts, newest first, older than post ``before``."""
        if before is None:
            rows = yield from self.pool.fetch(
                f"SELECT {_POST_COLUMNS} ORDER BY p.id DESC LIMIT $1", limit)
        else:
            rows = yield from self.pool.fetch(
                f"SELECT {_POST_COLUMNS} WHERE p.id < $1 ORDER BY p.id DESC LIMIT $2",
                before, limit)
        return [_post(row) for row in rows]

    def posts_after(self, after: int, limit: int) -> Coro[list[Post]]:
        """Up to ``limit`` posts newer than post ``after``, oldest first."""
        rows = yield from self.pool.fetch(
            f"SELECT {_POST_COLUMNS} WHERE p.id > $1 ORDER BY p.id LIMIT $2", after, limit)
        return [_post(row) for row in rows]

    def newest_id(self) -> Coro[int]:
        """The id of the newest post (0 when there is none)."""
        return (yield from self.pool.fetchval("SELECT coalesce(max(id), 0) FROM posts"))

    def posts_by_ids(self, ids: list[int]) -> Coro[list[Post]]:
        """The posts with these ids that exist, oldest first."""
        rows = yield from self.pool.fetch(
            f"SELECT {_POST_COLUMNS} WHERE p.id = ANY($1) ORDER BY p.id", ids)
        return [_post(row) for row in rows]


def create_schema(dsn: str) -> Coro[None]:
    """Create the tables and indexes (nothing changes if they exist)."""
    conn = yield from pg.connect(dsn)
    with conn:
        yield from conn.execute(SCHEMA)

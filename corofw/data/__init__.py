"""Database and cache clients on the kernel: waits for PostgreSQL and Redis
happen in epoll, like waits for HTTP.

PostgreSQL lives in :mod:`corofw.data.pg` (``from corofw.data import pg``),
which needs psycopg (``pip install 'corofw[pg]'``); its names below are
imported on first use, so the Redis client works without psycopg.
"""

import importlib
from typing import Any

from .redis import Pipeline, Redis
from .redis_errors import (
    RedisConnectionError,
    RedisError,
    RedisPoolTimeout,
    RedisProtocolError,
    RedisTimeout,
    ResponseError,
)
from .redis_pubsub import Message, PubSub

_PG_NAMES = ("PgError", "QueryError", "QueryTimeout", "SerializationFailure",
             "UndefinedTable", "UniqueViolation")

__all__ = [
    "Message", "Pipeline", "PubSub", "Redis", "RedisConnectionError", "RedisError",
    "RedisPoolTimeout", "RedisProtocolError", "RedisTimeout", "ResponseError",
    "pg", *_PG_NAMES,
]


def __getattr__(name: str) -> Any:
    if name == "pg" or name in _PG_NAMES:
        pg = importlib.import_module(".pg", __name__)
        return pg if name == "pg" else getattr(pg, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

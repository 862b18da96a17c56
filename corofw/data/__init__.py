"""Database and cache clients on the kernel: waits for PostgreSQL and Redis
happen in epoll, like waits for HTTP."""

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

__all__ = [
    "Message", "Pipeline", "PubSub", "Redis", "RedisConnectionError", "RedisError",
    "RedisPoolTimeout", "RedisProtocolError", "RedisTimeout", "ResponseError",
]

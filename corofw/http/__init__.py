"""HTTP/1.1: sans-I/O parsing, messages, the server."""

from .config import ServerConfig
from .headers import Headers
from .messages import HTTPError, QueryParams, Request, Response, StreamingResponse
from .parser import DEFAULT_LIMITS, Limits, ProtocolError, RequestParser
from .server import Server, serve

__all__ = ["DEFAULT_LIMITS", "HTTPError", "Headers", "Limits", "ProtocolError", "QueryParams",
           "Request", "RequestParser", "Response", "Server", "ServerConfig", "StreamingResponse",
           "serve"]

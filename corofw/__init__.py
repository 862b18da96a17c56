"""corofw: a web micro-framework whose concurrency is plain generators on an
epoll event loop.

Everything ordinary use needs is importable from here: the kernel
(``run``, ``spawn``, ``sleep``, ``gather``, ``timeout_after``, traps, sync
primitives), the web layer (``Router``, ``Request``, ``Response``), the
server (``serve``, ``run_app``), the outbound ``Client`` with its tail
tolerance (``Upstream``, ``Hedge``, ``Retry``, ``Budget``, ``Breaker``) and
the Redis client; PostgreSQL is ``corofw.data.pg`` (an extra).
"""

from .data import Redis, RedisError
from .http import client
from .http.auth import BasicAuth, BearerToken
from .http.breaker import Breaker, UpstreamUnavailable
from .http.budget import Budget
from .http.client import Client, ClientResponse, Timeout
from .http.client_errors import (
    ClientError,
    ClientTimeout,
    ConnectError,
    ConnectionRefused,
    ConnectTimeout,
    DecodingError,
    DNSError,
    HTTPStatusError,
    InvalidURL,
    PoolTimeout,
    ProxyError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    StreamConsumed,
    TLSError,
    TooManyRedirects,
    TotalTimeout,
    WebSocketClosed,
    WebSocketError,
    WebSocketHandshakeError,
    WriteError,
    WriteTimeout,
)
from .http.config import ServerConfig
from .http.cookiejar import CookieJar
from .http.headers import Headers
from .http.lifespan import StartupError
from .http.messages import (
    HTTPError,
    MalformedBody,
    QueryParams,
    Request,
    Response,
    StreamingResponse,
)
from .http.parser import Limits
from .http.policies import Hedge, Retry
from .http.server import Server, serve
from .http.sse import ServerSentEvent, event_stream, last_event_id
from .http.upstream import Upstream
from .http.websocket import ClientWebSocket
from .http.ws_server import ServerWebSocket
from .kernel import *  # noqa: F403
from .kernel import __all__ as _kernel_all
from .kernel.deadline import Deadline
from .runner import run_app
from .web import (
    BadSignature,
    Converter,
    FileResponse,
    FormData,
    FormLimits,
    Route,
    Router,
    Session,
    SignatureExpired,
    Signer,
    StaticFiles,
    UploadFile,
    compression_middleware,
    cors_middleware,
    csrf_middleware,
    csrf_token,
    debug_routes,
    get_session,
    register_converter,
    serve_file,
    session_middleware,
)
from .web.deadline import deadline_middleware
from .web.metrics import Metrics
from .web.tracing import Span, Tracing, current_span

__version__ = "0.1.0"
__all__ = [
    *_kernel_all,
    "Client", "ClientError", "ClientResponse", "ClientTimeout", "ConnectError",
    "ConnectTimeout", "ConnectionRefused", "DNSError", "Deadline", "HTTPError",
    "HTTPStatusError", "Headers", "InvalidURL", "Limits", "PoolTimeout", "QueryParams", "ReadError",
    "ReadTimeout", "RemoteProtocolError", "Request", "Response", "Router", "Server",
    "ServerConfig", "StreamingResponse", "TLSError", "Timeout", "TotalTimeout", "WriteError",
    "WriteTimeout", "client", "run_app", "serve", "Converter", "Route", "debug_routes",
    "register_converter", "BadSignature", "FileResponse", "FormData", "FormLimits",
    "MalformedBody", "Redis", "Session", "SignatureExpired", "Signer", "StaticFiles",
    "UploadFile", "compression_middleware", "cors_middleware", "csrf_middleware", "csrf_token",
    "get_session", "serve_file", "session_middleware", "ServerSentEvent", "StartupError",
    "event_stream", "last_event_id",
    "BasicAuth", "BearerToken", "CookieJar", "DecodingError", "ProxyError", "StreamConsumed",
    "TooManyRedirects", "ClientWebSocket", "WebSocketClosed", "WebSocketError",
    "WebSocketHandshakeError",
    "Breaker", "Budget", "Hedge", "RedisError", "Retry", "Upstream", "UpstreamUnavailable",
    "deadline_middleware", "Metrics", "ServerWebSocket", "Span", "Tracing", "current_span",
]

"""The web layer: the Router, path converters, middleware (CORS,
compression, sessions, CSRF), static files, forms and error handlers."""

from ..http.files import FileResponse
from ..http.forms import FormData, UploadFile
from ..http.messages import HTTPError
from ..http.multipart import FormLimits
from .compress import compression_middleware
from .converters import Converter, register_converter
from .cors import cors_middleware
from .csrf import csrf_middleware, csrf_token
from .debug import debug_routes
from .router import Route, Router
from .sessions import Session, get_session, session_middleware
from .signing import BadSignature, SignatureExpired, Signer
from .static import StaticFiles, serve_file

__all__ = ["BadSignature", "Converter", "FileResponse", "FormData", "FormLimits", "HTTPError",
           "Route", "Router", "Session", "SignatureExpired", "Signer", "StaticFiles", "UploadFile",
           "compression_middleware", "cors_middleware", "csrf_middleware", "csrf_token",
           "debug_routes", "get_session", "register_converter", "serve_file",
           "session_middleware"]

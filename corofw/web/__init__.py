"""Routing: the Router, path converters, middleware and error handlers."""

from ..http.files import FileResponse
from ..http.forms import FormData, UploadFile
from ..http.messages import HTTPError
from ..http.multipart import FormLimits
from .compress import compression_middleware
from .converters import Converter, register_converter
from .cors import cors_middleware
from .debug import debug_routes
from .router import Route, Router
from .static import StaticFiles, serve_file

__all__ = ["Converter", "FileResponse", "FormData", "FormLimits", "HTTPError", "Route", "Router",
           "StaticFiles", "UploadFile", "compression_middleware", "cors_middleware", "debug_routes",
           "register_converter", "serve_file"]

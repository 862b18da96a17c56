"""Routing: the Router, path converters, middleware and error handlers."""

from ..http.forms import FormData, UploadFile
from ..http.messages import HTTPError
from ..http.multipart import FormLimits
from .converters import Converter, register_converter
from .debug import debug_routes
from .router import Route, Router

__all__ = ["Converter", "FormData", "FormLimits", "HTTPError", "Route", "Router", "UploadFile",
           "debug_routes", "register_converter"]

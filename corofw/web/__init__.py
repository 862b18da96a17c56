"""Routing: the Router, path converters, middleware and error handlers."""

from ..http.messages import HTTPError
from .converters import Converter, register_converter
from .debug import debug_routes
from .router import Route, Router

__all__ = ["Converter", "HTTPError", "Route", "Router", "debug_routes", "register_converter"]

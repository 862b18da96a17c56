"""Routing: the Router, path converters, middleware and error handlers."""

from ..http.messages import HTTPError
from .converters import Converter, register_converter
from .router import Route, Router

__all__ = ["Converter", "HTTPError", "Route", "Router", "register_converter"]

"""``corofw run MODULE:ATTR``: serve an app from the command line."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
from typing import Any

import click

from .http.parser import Limits
from .http.server import ServerConfig
from .runner import run_app


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (the current directory is importable) and
    return the attribute; raise ``click.ClickException`` with one clear line
    when that is impossible."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _SpecError(f"invalid app {spec!r}: expected MODULE:ATTR (e.g. apps.hello:routes)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise click.ClickException(f"cannot import {module_name!r}: no such module")
        raise click.ClickException(f"importing {module_name!r} failed: {exc}")
    except Exception as exc:
        message = " ".join(str(exc).split())
        raise click.ClickException(
            f"importing {module_name!r} failed: {type(exc).__name__}: {message}")
    app: Any = module
    for part in attr.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise click.ClickException(f"module {module_name!r} has no attribute {attr!r}")
    if not callable(getattr(app, "handle", None)):
        what = f"the class {app.__name__}" if isinstance(app, type) \
            else f"a {type(app).__name__}"
        raise click.ClickException(f"{spec} is {what}, not a corofw Router (nothing to serve)")
    return app


class _SpecError(click.ClickException):
    """A malformed MODULE:ATTR: a usage error (exit status 2), told in one line."""

    exit_code = 2


@click.group()
@click.version_option(package_name="corofw")
def main() -> None:
    """corofw: a web framework on generator coroutines and epoll."""


def _opt(name: str, env: str, **kwargs: Any) -> Any:
    return click.option(name, envvar=f"COROFW_{env}", show_default=True, show_envvar=True,
                        **kwargs)


@main.command()
@click.argument("app_spec", metavar="MODULE:ATTR")
@_opt("--host", "HOST", default="127.0.0.1", help="Address to listen on.")
@_opt("--port", "PORT", default=8000, type=click.IntRange(0, 65535), help="Port (0: any free).")
@_opt("--workers", "WORKERS", default=1, type=click.IntRange(1, 512),
      help="Worker processes sharing the port (SO_REUSEPORT), supervised.")
@_opt("--log-level", "LOG_LEVEL", default="info",
      type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@_opt("--access-log/--no-access-log", "ACCESS_LOG", default=True, help="One line per request.")
@_opt("--backlog", "BACKLOG", default=1024, type=click.IntRange(1))
@_opt("--keep-alive-timeout", "KEEP_ALIVE_TIMEOUT", default=5.0, type=click.FloatRange(0.01),
      help="Seconds an idle keep-alive connection is kept.")
@_opt("--header-timeout", "HEADER_TIMEOUT", default=10.0, type=click.FloatRange(0.01),
      help="Seconds to receive a request's head.")
@_opt("--body-timeout", "BODY_TIMEOUT", default=30.0, type=click.FloatRange(0.01),
      help="Seconds to receive a request's body.")
@_opt("--send-timeout", "SEND_TIMEOUT", default=30.0, type=click.FloatRange(0.01),
      help="Seconds a response may wait for a client that does not read.")
@_opt("--graceful-timeout", "GRACEFUL_TIMEOUT", default=10.0, type=click.FloatRange(0),
      help="Seconds in-flight requests get to finish on shutdown.")
@_opt("--max-connections", "MAX_CONNECTIONS", default=10000, type=click.IntRange(1),
      help="Open connections per process; beyond it accepting pauses.")
@_opt("--max-body-size", "MAX_BODY_SIZE", default=1 << 20, type=click.IntRange(0),
      help="Largest request body in bytes (413 beyond).")
@_opt("--max-header-size", "MAX_HEADER_SIZE", default=32768, type=click.IntRange(256),
      help="Largest header section in bytes (431 beyond).")
@_opt("--max-headers", "MAX_HEADERS", default=100, type=click.IntRange(1),
      help="Most header fields in a request (431 beyond).")
@_opt("--max-request-line", "MAX_REQUEST_LINE", default=8190, type=click.IntRange(64),
      help="Longest request line in bytes (414 beyond).")
@_opt("--watchdog", "WATCHDOG", default=0.1, type=click.FloatRange(0),
      help="Warn when one task step blocks the loop longer than this (seconds; 0: off).")
def run(app_spec: str, host: str, port: int, workers: int, log_level: str, access_log: bool,
        backlog: int, keep_alive_timeout: float, header_timeout: float, body_timeout: float,
        send_timeout: float, graceful_timeout: float, max_connections: int,
        max_body_size: int, max_header_size: int, max_headers: int,
        max_request_line: int, watchdog: float) -> None:
    """Serve the router MODULE:ATTR (e.g. apps.hello:routes)."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = load_app(app_spec)
    limits = Limits(max_request_line=max_request_line, max_header_bytes=max_header_size,
                    max_headers=max_headers, max_body_bytes=max_body_size)
    config = ServerConfig(limits=limits, keep_alive_timeout=keep_alive_timeout,
                          header_timeout=header_timeout, body_timeout=body_timeout,
                          send_timeout=send_timeout, graceful_timeout=graceful_timeout,
                          max_connections=max_connections, access_log=access_log,
                          watchdog=watchdog or None)
    try:
        status = run_app(app, host, port, workers, config, backlog)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use"
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason.lower()}")
    except KeyboardInterrupt:
        status = 0
    sys.exit(status)


if __name__ == "__main__":
    main()

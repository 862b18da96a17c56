"""``corofw run MODULE:ATTR``: serve an app from the command line."""

from __future__ import annotations

import errno
import importlib
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .http.config import MAX_WATCHDOG, ServerConfig
from .http.parser import Limits
from .net import ListenerError, systemd_listen_fds
from .runner import (
    DEFAULT_BACKLOG,
    DEFAULT_GC_THRESHOLD,
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_BACKLOG,
    MAX_GC_THRESHOLD,
    StartupError,
    gc_threshold_setting,
    run_app,
    run_reloading,
)

_IMPORT_MACHINERY = (os.path.dirname(importlib.__file__) + os.sep, "<frozen importlib")
# the defaults every option shows and falls back to are the library's own
_CONFIG = ServerConfig()
_LIMITS = _CONFIG.limits
_F = TypeVar("_F", bound=Callable[..., Any])


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (the current directory is importable) and
    return the attribute; raise ``click.ClickException`` when that is
    impossible: one clear line when the module or attribute does not exist,
    the traceback of the app's own code when importing it fails."""
    module_name, attr = _split_spec(spec)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and _is_the_module(exc, module_name):
            raise click.ClickException(f"cannot import {module_name!r}: no such module")
        raise click.ClickException(f"importing {module_name!r} failed:\n"
                                   + _app_traceback(exc).rstrip("\n"))
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


def _split_spec(spec: str) -> tuple[str, str]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _SpecError(f"invalid app {spec!r}: expected MODULE:ATTR (e.g. apps.hello:routes)")
    return module_name, attr


def _is_the_module(exc: ModuleNotFoundError, module_name: str) -> bool:
    """Whether ``exc`` says that ``module_name`` (or a package on its path)
    does not exist, rather than that the app's code imports something
    missing: the missing name is ours, and no frame of the app ran."""
    if not exc.name or not (module_name + ".").startswith(exc.name + "."):
        return False
    return not _app_frames(exc.__traceback__)


def _app_frames(tb: Any) -> list[Any]:
    """The frames of ``tb`` outside this module and the import machinery."""
    return [frame for frame in traceback.extract_tb(tb)
            if frame.filename != __file__ and not frame.filename.startswith(_IMPORT_MACHINERY)]


def _app_traceback(exc: BaseException) -> str:
    """``exc`` as Python prints it, from the app's first frame on."""
    lines = ["Traceback (most recent call last):\n"] if _app_frames(exc.__traceback__) else []
    lines += traceback.StackSummary.from_list(_app_frames(exc.__traceback__)).format()
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


class _SpecError(click.ClickException):
    """A malformed MODULE:ATTR: a usage error (exit status 2), told in one line."""

    exit_code = 2


if TYPE_CHECKING:
    # Recent click makes ParamType generic in its value type; the older
    # versions that pyproject admits cannot subscript it at run time.
    _FloatParam = click.ParamType[float]
else:
    _FloatParam = click.ParamType


class Seconds(_FloatParam):
    """A finite number of seconds, at least ``minimum`` (or above it), and
    below ``below`` when given."""

    name = "seconds"

    def __init__(self, minimum: float = 0.0, inclusive: bool = True,
                 below: float | None = None) -> None:
        self.minimum = minimum
        self.inclusive = inclusive
        self.below = below

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        within = number >= self.minimum if self.inclusive else number > self.minimum
        if self.below is not None:
            within = within and number < self.below
        if not math.isfinite(number) or not within:
            bound = f">= {self.minimum:g}" if self.inclusive else f"> {self.minimum:g}"
            if self.below is not None:
                bound += f" and < {self.below:g}"
            self.fail(f"{value!r} is not a finite number of seconds {bound}", param, ctx)
        return number


@click.group()
@click.version_option(package_name="corofw")
def main() -> None:
    """corofw: a web framework on generator coroutines and epoll."""


def _opt(name: str, env: str, **kwargs: Any) -> Callable[[_F], _F]:
    return click.option(name, envvar=f"COROFW_{env}", show_default=True, show_envvar=True,
                        **kwargs)


@main.command()
@click.argument("app_spec", metavar="MODULE:ATTR")
@_opt("--host", "HOST", default=DEFAULT_HOST, help="Address to listen on.")
@_opt("--port", "PORT", default=DEFAULT_PORT, type=click.IntRange(0, 65535),
      help="Port (0: any free).")
@_opt("--uds", "UDS", default=None, type=click.Path(dir_okay=False),
      help="Listen on this Unix domain socket instead of --host/--port.")
@_opt("--fd", "FD", default=None, type=click.IntRange(0),
      help="Serve on the listening socket (TCP or Unix) inherited as this file descriptor.")
@_opt("--workers", "WORKERS", default=1, type=click.IntRange(1, 512),
      help="Worker processes sharing the port (SO_REUSEPORT), supervised.")
@_opt("--reload/--no-reload", "RELOAD", default=False,
      help="Development: restart the worker when a source file of the app changes.")
@_opt("--log-level", "LOG_LEVEL", default="info",
      type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@_opt("--access-log/--no-access-log", "ACCESS_LOG", default=_CONFIG.access_log,
      help="One line per request.")
@_opt("--access-log-format", "ACCESS_LOG_FORMAT", default=_CONFIG.access_log_format,
      type=click.Choice(["text", "json"]), help="The access log's lines: text or JSON lines.")
@_opt("--request-id-header", "REQUEST_ID_HEADER", default=_CONFIG.request_id_header or "",
      callback=lambda ctx, param, value: _header_name(value),
      help="Header a request's id is taken from and echoed in ('': none).")
@_opt("--request-costs/--no-request-costs", "REQUEST_COSTS", default=_CONFIG.request_costs,
      help="Meter each request's time on the loop and its waits (access log, metrics).")
@_opt("--backlog", "BACKLOG", default=DEFAULT_BACKLOG, type=click.IntRange(1, MAX_BACKLOG))
@_opt("--keep-alive-timeout", "KEEP_ALIVE_TIMEOUT", default=_CONFIG.keep_alive_timeout,
      type=Seconds(0, inclusive=False), help="Seconds an idle keep-alive connection is kept.")
@_opt("--header-timeout", "HEADER_TIMEOUT", default=_CONFIG.header_timeout,
      type=Seconds(0, inclusive=False),
      help="Seconds to receive a request's head.")
@_opt("--body-timeout", "BODY_TIMEOUT", default=_CONFIG.body_timeout,
      type=Seconds(0, inclusive=False),
      help="Seconds a request's body may make no progress (restarted by each piece).")
@_opt("--send-timeout", "SEND_TIMEOUT", default=_CONFIG.send_timeout,
      type=Seconds(0, inclusive=False),
      help="Seconds a response may wait for a client that does not read.")
@_opt("--graceful-timeout", "GRACEFUL_TIMEOUT", default=_CONFIG.graceful_timeout,
      type=Seconds(0),
      help="Seconds in-flight requests get to finish on shutdown.")
@_opt("--max-connections", "MAX_CONNECTIONS", default=_CONFIG.max_connections,
      type=click.IntRange(1),
      help="Open connections per process; beyond it idle ones are closed, else 503.")
@_opt("--max-body-size", "MAX_BODY_SIZE", default=_LIMITS.max_body_bytes,
      type=click.IntRange(0),
      help="Largest request body in bytes (413 beyond).")
@_opt("--max-header-size", "MAX_HEADER_SIZE", default=_LIMITS.max_header_bytes,
      type=click.IntRange(256),
      help="Largest header section in bytes (431 beyond).")
@_opt("--max-headers", "MAX_HEADERS", default=_LIMITS.max_headers, type=click.IntRange(1),
      help="Most header fields in a request (431 beyond).")
@_opt("--max-request-line", "MAX_REQUEST_LINE", default=_LIMITS.max_request_line,
      type=click.IntRange(64),
      help="Longest request line in bytes (414 beyond).")
@_opt("--watchdog", "WATCHDOG", default=_CONFIG.watchdog or 0.0,
      type=Seconds(0, below=MAX_WATCHDOG),
      help="Warn when one task step blocks the loop longer than this (seconds; 0: off).")
@_opt("--gc-threshold", "GC_THRESHOLD", default=DEFAULT_GC_THRESHOLD,
      type=click.IntRange(0, MAX_GC_THRESHOLD),
      help="Allocations between collections of the youngest GC generation (0: Python's).")
def run(app_spec: str, host: str, port: int, uds: str | None, fd: int | None, workers: int,
        reload: bool, log_level: str, backlog: int, gc_threshold: int,
        **settings: Any) -> None:
    """Serve the router MODULE:ATTR (e.g. apps.hello:routes).

    It listens on --host/--port, or on a Unix socket (--uds), or serves a
    listening socket it inherits (--fd, or systemd socket activation:
    LISTEN_FDS and LISTEN_PID)."""
    if reload and workers > 1:
        raise click.UsageError("--reload serves with one worker: leave out --workers")
    try:
        fds = _inherited_fds(uds, fd)
    except ListenerError as exc:
        raise click.ClickException(str(exc))
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = server_config(**settings)
        gc_threshold = gc_threshold_setting(gc_threshold)
    except ValueError as exc:  # a bound the option types missed
        raise click.UsageError(str(exc))
    _check_host(host, port)
    try:
        if reload:
            _split_spec(app_spec)
            status = run_reloading(lambda: _load_in_worker(app_spec), host, port, config,
                                   backlog, gc_threshold, uds=uds, fds=fds)
        else:
            app = load_app(app_spec)
            status = run_app(app, host, port, workers, config, backlog, gc_threshold,
                             uds=uds, fds=fds)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use"
        where = f"unix:{uds}" if uds is not None else f"{host}:{port}"
        raise click.ClickException(f"cannot listen on {where}: {reason.lower()}")
    except ListenerError as exc:
        systemd = uds is None and fd is None
        raise click.ClickException(str(exc) + (" (passed by systemd)" if systemd else ""))
    except StartupError as exc:
        raise click.ClickException(str(exc))
    except KeyboardInterrupt:
        status = 0
    sys.exit(status)


def _inherited_fds(uds: str | None, fd: int | None) -> list[int]:
    """The inherited fds to serve: ``--fd``'s, else the sockets systemd
    passed (their variables are removed from the environment either way,
    so that no child process takes them for its own). Where to listen is
    said once: --uds, --fd, systemd's sockets and an explicit --host or
    --port exclude each other (a usage error names the two)."""
    systemd = systemd_listen_fds()
    given = [name for name, value in (("--uds", uds), ("--fd", fd)) if value is not None]
    if systemd:
        given.append("systemd's sockets (LISTEN_FDS)")
    if given:
        ctx = click.get_current_context()
        for name in ("host", "port"):
            if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT):
                given.append(f"--{name}")
    if len(given) > 1:
        raise click.UsageError(f"{given[0]} and {given[1]} exclude each other: "
                               f"say where to listen once")
    if fd is not None:
        return [fd]
    return [number for number, _name in systemd]


def _header_name(value: str) -> str:
    """``value`` if ServerConfig takes it as a header name (or it is
    empty), else a BadParameter saying why."""
    try:
        ServerConfig(request_id_header=value or None)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _check_host(host: str, port: int) -> None:
    """Refuse, in one line, a host name the socket module cannot encode
    (IDNA: a label over 63 characters, an empty label, a surrogate), which
    ``getaddrinfo`` would raise as ``UnicodeError`` rather than ``OSError``."""
    try:
        host.encode("idna")  # as socket.getaddrinfo encodes a str host
    except UnicodeError as exc:
        reason = exc.__cause__ or exc
        raise click.ClickException(f"cannot listen on {host}:{port}: not a valid host name "
                                   f"({reason})") from None


def server_config(*, access_log: bool, keep_alive_timeout: float, header_timeout: float,
                  body_timeout: float, send_timeout: float, graceful_timeout: float,
                  max_connections: int, max_body_size: int, max_header_size: int,
                  max_headers: int, max_request_line: int, watchdog: float,
                  access_log_format: str = "text",
                  request_id_header: str = "x-request-id",
                  request_costs: bool = False) -> ServerConfig:
    """The :class:`ServerConfig` that ``run``'s options describe (a watchdog
    of 0 is off, so is an empty request id header). Raises ``ValueError``,
    naming the setting, for a value the server cannot run with."""
    limits = Limits(max_request_line=max_request_line, max_header_bytes=max_header_size,
                    max_headers=max_headers, max_body_bytes=max_body_size)
    return ServerConfig(limits=limits, keep_alive_timeout=keep_alive_timeout,
                        header_timeout=header_timeout, body_timeout=body_timeout,
                        send_timeout=send_timeout, graceful_timeout=graceful_timeout,
                        max_connections=max_connections, access_log=access_log,
                        watchdog=watchdog or None, access_log_format=access_log_format,
                        request_id_header=request_id_header or None,
                        request_costs=request_costs)


def _load_in_worker(spec: str) -> Any:
    """:func:`load_app` in a reloading worker: an error is printed as the
    command would print it, and the worker ends."""
    try:
        return load_app(spec)
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from exc


if __name__ == "__main__":
    main()

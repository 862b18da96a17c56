"""The access log: one line per response, written at little cost.

A response's line is formatted here with one f-string (no ``LogRecord`` per
response) and kept in a buffer. The buffer is written out at most
``FLUSH_DELAY`` after its first line, as soon as it holds ``FLUSH_LINES``
lines, when the server stops, and at the process's exit: a burst of
responses costs one write, and no line is lost on a graceful stop.

Where lines go is decided by the ``corofw.access`` logger, read afresh for
every batch: its level (a disabled logger costs one check per response and
makes no line), ``disabled``, its filters, its handlers and its ancestors'
as far as ``propagate`` allows (``logging.lastResort`` when there are none),
each handler's level and filters. A handler of type exactly
``logging.StreamHandler`` or ``logging.FileHandler`` with no filters and a
plain ``logging.Formatter`` gets the batch in one write, each line framed as
its formatter frames a record whose message is the line (its time fields,
``%(asctime)s`` included, are those of the write). Every other handler,
and every handler when the logger itself has filters, gets one
``LogRecord`` per line, as ``logger.info(line)`` would give it, made when the
batch is written.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from ..kernel import current_kernel
from ..kernel.costs import Cost
from . import request_id
from .request_id import RequestIds
from .tracecontext import TRACE_ID_STATE_KEY

ACCESS_LOGGER = logging.getLogger("corofw.access")
INFO = logging.INFO
#: longest a line waits in the buffer, in seconds of the kernel's clock
FLUSH_DELAY = 0.005
#: a buffer this long is written at once
FLUSH_LINES = 256

_MARK = "\x00corofw access line\x00"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DIGITS = [f"{n:03d}" for n in range(1000)]  # a status is 100-999, so its own text too
_NUMBERS = [str(n) for n in range(1000)]
_PLAIN_STREAMS = (logging.StreamHandler, logging.FileHandler)
_PLAIN_FORMATTER = logging.Formatter()
_TRACE_KEY = '"trace_id":'
_pending: set[AccessLog] = set()  # logs with lines not yet written, for the exit


class AccessLog:
    """The access log of one server: formats a line per response
    (:meth:`write`) and writes them out in batches (:meth:`flush`).

    ``format`` is "text" (nginx-like) or "json" (one object per line);
    ``ids`` gives requests their ids and responses their echo. With
    ``costs``, a line also says what its request cost (``request.cost``):
    ``cpu=0.412ms waits="upstream api:80=1000.125ms, client=0.021ms"`` in
    text, ``"cpu_ms"`` and ``"waits_ms"`` (an object) in JSON."""

    __slots__ = ("json", "ids", "costs", "lines", "_timer", "_clock", "_next", "_second",
                 "_stamp", "_zone", "__weakref__")

    def __init__(self, format: str = "text", ids: RequestIds | None = None,
                 costs: bool = False) -> None:
        self.json = format == "json"
        self.ids = ids if ids is not None else RequestIds(always=True)
        self.costs = costs
        self.lines: list[str] = []
        self._timer: Any = None
        self._clock: Any = time.monotonic
        self._next = 0.0
        self._second = 0.0
        self._stamp = ""
        self._zone = ""

    def write(self, client: str, request: Any, status: int, length: Any, started: float,
              failure: str = "") -> None:
        """The line of one response to ``client`` (as
        :func:`~corofw.http.connection.format_client` writes it): ``length``
        body bytes sent (an int, or
        "-" where bytes mean nothing: JSON null), answered ``started``
        (kernel clock) onwards; ``failure`` says why it was cut short.
        Nothing is made when the logger is not enabled for INFO."""
        lines = self.lines
        if not lines and not self._begin():
            return
        now = self._clock()  # one clock read: the duration, and the time via _new_second
        if now >= self._next:
            self._new_second(now)
        us = int((now - started) * 1e6)  # formatted as ms below, without float formatting
        ident = request._id  # the server gives every request one, or what makes it
        number: int | str = ""
        if type(ident) is int:  # a made id, kept as its number: written out here
            ident, number = request_id._prefix, ident  # the prefix this process makes ids with
        elif type(ident) is not str:
            ident = request.id
        target = request.target
        state = request._state  # a traced request keeps its trace id there
        trace = state.get(TRACE_ID_STATE_KEY) if state is not None else None
        cost = request._cost if self.costs else None
        if self.json:
            costs = "" if cost is None else _json_costs(cost)
            lines.append(
                f'{{"time":"{self._stamp}.{_DIGITS[int((now - self._second) * 1000)]}'
                f'{self._zone}",'
                f'"client":{_json_string(client)},"method":"{request.method}",'
                f'"target":{_json_string(target)},"version":"{request.version}",'
                f'"status":{status},"bytes":{length if type(length) is int else "null"},'
                f'"duration_ms":{us // 1000}.{_DIGITS[us % 1000]},'
                f'"request_id":{_json_string(f"{ident}{number}")},'
                f'{"" if trace is None else f"{_TRACE_KEY}{_json_string(trace)},"}'
                f'{costs}"error":{_json_string(failure) if failure else "null"}}}')
        else:
            if '"' in target or "\\" in target:
                target = target.replace("\\", "\\x5C").replace('"', "\\x22")
            ms = us // 1000  # statuses and most durations from a table: no int formatting
            line = (f'{client} [{self._stamp}] "{request.method} {target} {request.version}" '
                    f"{_DIGITS[status]} {length} {_NUMBERS[ms] if ms < 1000 else ms}."
                    f"{_DIGITS[us % 1000]}ms {ident}{number}")
            if trace is not None:
                line = f"{line} trace={trace}"
            if cost is not None:
                line = f"{line} {_text_costs(cost)}"
            lines.append(f"{line} ({failure})" if failure else line)
        if len(lines) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        """Write out the lines made so far (any thread may call it)."""
        lines = self.lines
        if lines:
            self.lines = []
            _pending.discard(self)
            deliver(lines)

    def close(self) -> None:
        """Flush, and drop the pending flush timer (call it in the kernel
        that runs the server, as the server does when it stops)."""
        self.flush()
        timer, self._timer = self._timer, None
        kernel = current_kernel()
        if timer is not None and kernel is not None:
            kernel.cancel_timer(timer)

    def _begin(self) -> bool:
        """A batch begins: if the logger takes INFO, arrange its flush."""
        if not ACCESS_LOGGER.isEnabledFor(INFO):
            return False
        _pending.add(self)
        kernel = current_kernel()
        if kernel is None:
            self._clock = time.monotonic
        else:
            self._clock = kernel.clock
            timer = self._timer
            if timer is None or timer[2] is None:  # none armed, or it fired or was cancelled
                self._timer = kernel.add_timer(FLUSH_DELAY, self._due, None)
        return True

    def _due(self, _: Any) -> None:
        self._timer = None
        self.flush()

    def _new_second(self, now: float) -> None:
        """Time stamps for the wall-clock second that ``now`` (the kernel's
        clock) is in, and when that second ends on the kernel's clock."""
        wall = time.time()
        whole = int(wall)
        t = time.localtime(whole)
        offset = t.tm_gmtoff or 0
        sign = "-" if offset < 0 else "+"
        hours, minutes = divmod(abs(offset) // 60, 60)
        if self.json:
            self._stamp = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
                           f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")
            self._zone = f"{sign}{hours:02d}:{minutes:02d}"
        else:
            self._stamp = (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}"
                           f":{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
                           f" {sign}{hours:02d}{minutes:02d}")
        self._second = now - (wall - whole)
        self._next = self._second + 1.0


def _text_costs(cost: Cost) -> str:
    waits = ", ".join(f"{_text_name(name)}={seconds * 1000:.3f}ms"
                      for name, seconds in cost.waits().items())
    return f'cpu={cost.cpu * 1000:.3f}ms waits="{waits}"'


def _text_name(name: str) -> str:
    """A wait's name as a text line shows it: printable ASCII but for the
    double quote and the backslash as is, any other character as ``\\xHH``
    (``\\uHHHH``, ``\\UHHHHHHHH``), as the target's quote and backslash are:
    a label (a Unix socket's path, a name given to ``label_fd``) can neither
    end the quoted field, nor the line, nor make it other than ASCII."""
    if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name:
        return name
    return "".join(_text_char(char) for char in name)


def _text_char(char: str) -> str:
    code = ord(char)
    if " " <= char <= "~" and char not in '"\\':
        return char
    if code < 0x100:
        return f"\\x{code:02X}"
    return f"\\u{code:04X}" if code < 0x10000 else f"\\U{code:08X}"


def _json_costs(cost: Cost) -> str:
    waits = ",".join(f"{_json_string(name)}:{seconds * 1000:.3f}"
                     for name, seconds in cost.waits().items())
    return f'"cpu_ms":{cost.cpu * 1000:.3f},"waits_ms":{{{waits}}},'


def deliver(lines: list[str]) -> None:
    """Hand ``lines`` to where the ``corofw.access`` logger sends records
    (see the module's docstring for what is honoured)."""
    logger = ACCESS_LOGGER
    if logger.disabled:
        return
    if logger.filters:
        for line in lines:
            logger.handle(_record(line))
        return
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    if not handlers:
        if logging.lastResort is None:
            return
        handlers = [logging.lastResort]
    records: list[logging.LogRecord] | None = None
    for handler in handlers:
        if handler.level > INFO or _write_batch(handler, lines):
            continue
        if records is None:
            records = [_record(line) for line in lines]
        for record in records:
            handler.handle(record)


def _write_batch(handler: logging.Handler, lines: list[str]) -> bool:
    """Write ``lines`` to a plain stream handler in one write, framed by
    its formatter; False if ``handler`` is not one (it then gets records)."""
    if type(handler) not in _PLAIN_STREAMS or handler.filters:
        return False
    stream = handler.stream  # type: ignore[attr-defined]
    formatter = handler.formatter or _PLAIN_FORMATTER
    if stream is None or type(formatter) is not logging.Formatter:
        return False  # a delayed FileHandler opens its file on its first record
    template = _record(_MARK)
    try:
        prefix, mark, suffix = formatter.format(template).partition(_MARK)
    except Exception:
        return False
    if not mark or _MARK in suffix:
        return False
    end = suffix + handler.terminator  # type: ignore[attr-defined]
    data = prefix + (end + prefix).join(lines) + end
    handler.acquire()
    try:
        stream.write(data)
        handler.flush()
    except RecursionError:
        raise
    except Exception:
        handler.handleError(template)
    finally:
        handler.release()
    return True


def _record(line: str) -> logging.LogRecord:
    # args None (no arguments), which LogRecord accepts though typeshed says a tuple
    return ACCESS_LOGGER.makeRecord(ACCESS_LOGGER.name, INFO, __file__, 0, line,
                                    None, None, "access log")  # type: ignore[arg-type]


def flush_all() -> None:
    """Write out every access log's pending lines (run at the process's exit)."""
    for log in list(_pending):
        log.flush()


def _forget_in_child() -> None:
    """A forked child does not write its parent's pending lines again."""
    for log in _pending:
        log.lines = []
        log._timer = None
    _pending.clear()


atexit.register(flush_all)
os.register_at_fork(after_in_child=_forget_in_child)

"""Requests to stop a server: signals, and bytes on a stop channel.

A server stops gracefully at the first request and cancels the requests in
flight at the second request *of the same kind*. A signal and a byte on the
channel are one stop, not two: a supervisor asks its workers over their
channels, and a worker that also received the signal directly (Ctrl-C
signals the whole process group, as does systemd's control-group kill) must
not take the two as "stop" and "hurry".
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from ..kernel import Event, SignalCatcher
from ..kernel.traps import Coro, read_wait

log = logging.getLogger("corofw.server")


def watch_signals(signals: SignalCatcher, stopped: Event, hurry: Callable[[], None]
                  ) -> Coro[None]:
    """The first signal caught sets ``stopped``; the second calls ``hurry``."""
    signum = yield from signals.wait()
    log.info("received %s, shutting down", signal.Signals(signum).name)
    stopped.set()
    signum = yield from signals.wait()
    log.warning("received %s again: cancelling the requests in flight",
                signal.Signals(signum).name)
    hurry()


def watch_channel(channel: Any, stopped: Event, hurry: Callable[[], None]) -> Coro[None]:
    """Each byte received on ``channel`` (anything with ``fileno()``) asks
    to stop: the first sets ``stopped``, the second calls ``hurry``; its
    end-of-file sets ``stopped`` and is the last thing read."""
    fd = channel.fileno()
    asked = 0
    while asked < 2:
        yield read_wait(fd)
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:  # the other end is gone: stop, but do not hurry
            if not stopped.is_set():
                log.info("stop channel closed, shutting down")
                stopped.set()
            return
        for _ in data:
            asked += 1
            if asked == 1:
                if not stopped.is_set():
                    log.info("asked to stop, shutting down")
                stopped.set()
            elif asked == 2:
                log.warning("asked again to stop: cancelling the requests in flight")
                hurry()

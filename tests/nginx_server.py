"""nginx and corofw as real processes, for the tests that deploy behind nginx.

:func:`running_nginx` checks a configuration, starts nginx on it in the
foreground, waits until it listens, and at the end stops it gracefully
(SIGQUIT to its master, by PID) and checks that none of its processes is
left. :func:`unprivileged_main` and :func:`temp_paths` write the parts of a
configuration that let nginx run as any user from a temporary directory.
The process helpers (:func:`wait_listening`, :func:`children`,
:func:`alive`, :func:`stop`) serve corofw's processes too.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
NO_NGINX = "nginx is not installed (`make nginx` installs Debian's nginx-light)"


def unprivileged_main(prefix: Path, worker_connections: int = 256) -> str:
    """The main context: nginx in the foreground, one worker, its pid file
    and error log under ``prefix``; as root, its worker runs as the current
    user (it would otherwise run as nobody, locked out of ``prefix``)."""
    user = ""
    if os.geteuid() == 0:
        user = (f"user {pwd.getpwuid(os.getuid()).pw_name} "
                f"{grp.getgrgid(os.getgid()).gr_name};\n")
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections {worker_connections};
}}
"""


def temp_paths(prefix: Path) -> str:
    """The ``http`` context's temporary directories, all under ``prefix``."""
    return f"""client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;"""


# -- processes ------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 15.0,
                   host: str = "127.0.0.1") -> None:
    """Wait until ``host:port`` accepts a connection; fail with ``log`` if
    ``proc`` exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with status {proc.returncode}:\n"
                                 f"{log.read_text(errors='replace')}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listening on {host}:{port} after {timeout} s:\n"
                         f"{log.read_text(errors='replace')}")


def children(pid: int) -> list[int]:
    """The PIDs of ``pid``'s child processes (Linux: /proc)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop(proc: subprocess.Popen, pid: int, first: signal.Signals, timeout: float = 10.0) -> None:
    """Send ``first`` to ``pid`` (the process ``proc`` or, for nginx, the
    master named by its pid file), then SIGKILL ``proc`` if it overstays."""
    if proc.poll() is None:
        try:
            os.kill(pid, first)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- nginx ------------------------------------------------------------------------------


def nginx_version(nginx: str) -> tuple[int, ...]:
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else (0, 0, 0)


@contextmanager
def running_nginx(prefix: Path, config: str, port: int) -> Iterator[int]:
    """Run nginx on ``config`` (written to ``prefix``/nginx.conf) until the
    block ends; yields the master's PID once ``127.0.0.1:port`` listens.

    Skips the test when nginx is missing or cannot run as this user; fails
    it when nginx rejects the configuration or one of its processes outlives
    the graceful stop."""
    if NGINX is None:
        pytest.skip(NO_NGINX)
    conf = prefix / "nginx.conf"
    conf.write_text(config)
    command = [NGINX, "-p", str(prefix), "-c", str(conf)]
    if nginx_version(NGINX) >= (1, 19, 5):  # -e: no default error log to open before the config
        command += ["-e", str(prefix / "error.log")]
    check = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, timeout=20)
    if check.returncode != 0:
        if re.search(r"Permission denied|Operation not permitted", check.stderr):
            pytest.skip(f"nginx cannot run as this user: {check.stderr.strip()}")
        raise AssertionError(f"nginx rejected the configuration:\n{check.stderr}")
    log = prefix / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    started = [proc.pid]
    master = proc.pid
    try:
        wait_listening(port, proc, log)
        master = int((prefix / "nginx.pid").read_text())
        assert master == proc.pid, "with `daemon off` the master is the process started"
        started += children(master)
        yield master
    finally:
        stop(proc, master, signal.SIGQUIT)  # graceful: workers finish, then the master exits
        started += children(master)
    for pid in started:
        assert not alive(pid), f"nginx process {pid} is still running"


def error_lines(prefix: Path) -> list[str]:
    """The lines of nginx's error log at level error or worse."""
    return [line for line in (prefix / "error.log").read_text().splitlines()
            if re.search(r"\[(error|crit|alert|emerg)\]", line)]

"""Several "hosts" on one machine, for tests that serve from many hosts.

:func:`make_hosts` gives each host its own network namespace joined to
this one by a veth pair (``ip netns``; this namespace is 10.77.N.1 on the
pair, the host 10.77.N.2), so that a host's address, ports and sockets are
its own and vanish with it. Where namespaces cannot be made (no
CAP_NET_ADMIN, no ``ip``, no veth), the hosts are loopback addresses
instead (127.0.0.2, 127.0.0.3, ...), which every Linux routes to ``lo``.
Either way everything made is removed at the end, and
:class:`HostProcess` runs a program "on" a host in its own process group,
so that a test can kill the host's processes, and only those, by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

IP = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
NAMESPACES, LOOPBACK = "network namespaces", "loopback addresses"


@dataclass(frozen=True)
class Host:
    """One host: its name, the address it serves on, the address at which
    it reaches this namespace (Redis, say), and its namespace, if any."""

    name: str
    address: str
    gateway: str
    netns: str | None = None

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv``, run inside the host's namespace."""
        if self.netns is None:
            return list(argv)
        return [IP, "netns", "exec", self.netns, *argv]


class NoNamespaces(Exception):
    """Network namespaces cannot be made here (the reason is the message)."""


class NoHosts(Exception):
    """Neither namespaces nor loopback addresses can serve as hosts here."""


def _ip(*args: str) -> None:
    result = subprocess.run([IP, *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise NoNamespaces(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


@contextmanager
def _namespace_hosts(count: int) -> Iterator[list[Host]]:
    if IP is None:
        raise NoNamespaces("the `ip` command (iproute2) is not installed")
    tag = os.getpid() % 100_000
    subnet = 1 + (os.getpid() % 80) * 3  # third octets subnet..subnet+count-1, per test process
    with ExitStack() as cleanup:
        hosts = []
        for i in range(count):
            netns = f"corofw-{tag}-h{i + 1}"
            outside, inside = f"cfw{tag}o{i + 1}", f"cfw{tag}i{i + 1}"  # at most 15 characters
            gateway, address = f"10.77.{subnet + i}.1", f"10.77.{subnet + i}.2"
            _ip("netns", "add", netns)
            cleanup.callback(subprocess.run, [IP, "netns", "delete", netns],
                             capture_output=True, timeout=10)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            cleanup.callback(subprocess.run, [IP, "link", "delete", outside],
                             capture_output=True, timeout=10)
            _ip("link", "set", inside, "netns", netns)
            _ip("addr", "add", f"{gateway}/24", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", inside)
            _ip("-n", netns, "link", "set", inside, "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            hosts.append(Host(f"h{i + 1}", address, gateway, netns))
        yield hosts


@contextmanager
def make_hosts(count: int = 3) -> Iterator[tuple[str, list[Host]]]:
    """``count`` hosts, as namespaces if possible, else loopback addresses:
    yields the mode (:data:`NAMESPACES` or :data:`LOOPBACK`, with the reason
    for the fallback) and the hosts. Raises :class:`NoHosts` when neither
    can be had."""
    with ExitStack() as stack:
        try:
            hosts = stack.enter_context(_namespace_hosts(count))
            mode = NAMESPACES
        except NoNamespaces as error:
            hosts = [Host(f"h{i + 1}", f"127.0.0.{i + 2}", "127.0.0.1") for i in range(count)]
            mode = f"{LOOPBACK} ({error})"
            for host in hosts:
                try:
                    with socket.socket() as probe:
                        probe.bind((host.address, 0))
                except OSError as unusable:
                    raise NoHosts(f"{error}; and {host.address} cannot be bound: "
                                  f"{unusable}") from None
        yield mode, hosts


class HostProcess:
    """A program running on a host, in a process group of its own (its
    PID is the group's id), with its output in ``log``."""

    def __init__(self, host: Host, argv: Sequence[str], log: Path, cwd: Path,
                 env: dict[str, str]) -> None:
        self.host = host
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(host.command(argv), cwd=cwd, env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)
        self.pid = self.proc.pid

    def signal_group(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the process group this object started."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

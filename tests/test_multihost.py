"""corofw on three hosts behind nginx, with the hosts' state in Redis: the
multi-host deployment docs/deploy.md describes, end to end.

Each host is a network namespace of its own (or, where namespaces cannot
be made, a loopback address: the test prints which) running
``corofw run tests.multihost_app:routes --workers 2``; nginx spreads the
requests over them with upstream keep-alive and passive health checks
(:func:`nginx_config`, the configuration in the docs), and every host
keeps its counter in the session's redis-server. Under a steady load of
requests through nginx:

1. one host is killed (SIGKILL to its whole process group): no request
   fails, nginx retries them on the others; the host is started again;
2. a second host is stopped with SIGTERM alone: no idempotent request
   fails (nginx retries a request that meets a keep-alive connection the
   draining host has just closed);
3. the third is drained the way that fails nothing, POSTs included: taken
   out of nginx (``down``, reload), then SIGTERM; the counter ends equal
   to the POSTs that succeeded, each applied once.

Skipped, saying why, without nginx or redis-server. Everything started
here is stopped by its PID; the namespaces are deleted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from multihost import Host, HostProcess, NoHosts, make_hosts
from nginx_server import (
    NGINX,
    NO_NGINX,
    alive,
    children,
    error_lines,
    free_port,
    running_nginx,
    temp_paths,
    unprivileged_main,
    wait_listening,
)
from redis_server import RedisServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GRACEFUL_TIMEOUT = 10.0

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason=NO_NGINX),
    pytest.mark.timeout(60),
]


def nginx_config(prefix: Path, listen_port: int, upstreams: list[str],
                 down: frozenset[str] = frozenset()) -> str:
    """nginx balancing over ``upstreams`` (``address:port``; those in
    ``down`` marked down) with upstream keep-alive and passive health
    checks; every path it writes is under ``prefix``."""
    servers = "\n".join(f"        server {upstream} max_fails=1 fail_timeout=10s"
                        f"{' down' if upstream in down else ''};" for upstream in upstreams)
    return f"""{unprivileged_main(prefix)}
http {{
    access_log off;
    {temp_paths(prefix)}

    upstream corofw {{
{servers}
        keepalive 32;
        keepalive_timeout 60s;
        keepalive_requests 1000;
    }}

    server {{
        listen 127.0.0.1:{listen_port};

        location / {{
            proxy_pass http://corofw;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 2s;
            proxy_send_timeout 30s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
        }}
    }}
}}
"""


# -- Redis, reachable from every host ---------------------------------------------------


def redis_call(port: int, *args: str) -> bytes:
    """One command to the redis-server on ``127.0.0.1:port``; its first reply line."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        payload += f"${len(arg.encode())}\r\n{arg}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert not reply.startswith(b"-"), f"redis {args}: {reply!r}"
    return reply


@pytest.fixture
def hosts(capsys):
    """Three hosts (see tests/multihost.py); the mode is printed."""
    with ExitStack() as stack:
        try:
            mode, host_list = stack.enter_context(make_hosts(3))
        except NoHosts as error:
            pytest.skip(f"no way to make three hosts here: {error}")
        with capsys.disabled():
            print(f"\n[multihost] three hosts as {mode}")
        yield mode, host_list


@pytest.fixture
def redis_urls(redis_server: RedisServer, redis_url: str, hosts) -> dict[str, str]:
    """Each host's URL of the session's redis-server (emptied first). A
    host in a namespace reaches it at this namespace's end of its veth pair,
    so redis-server listens there too for the test (and, since those
    addresses are not loopback ones, out of its protected mode)."""
    _, host_list = hosts
    gateways = sorted({host.gateway for host in host_list} - {"127.0.0.1"})
    if gateways:
        redis_call(redis_server.port, "CONFIG", "SET", "bind", " ".join(["127.0.0.1", *gateways]),
                   "protected-mode", "no")
    try:
        yield {host.name: f"redis://{host.gateway}:{redis_server.port}/0" for host in host_list}
    finally:
        if gateways:
            redis_call(redis_server.port, "CONFIG", "SET", "bind", "127.0.0.1",
                       "protected-mode", "yes")


# -- the hosts ------------------------------------------------------------------------------


@dataclass
class Served:
    """corofw serving on one host: the process started, its port, and every
    PID of it seen (the supervisor and its workers)."""

    host: Host
    process: HostProcess
    port: int
    pids: set[int] = field(default_factory=set)

    @property
    def upstream(self) -> str:
        return f"{self.host.address}:{self.port}"

    def note_pids(self) -> None:
        self.pids |= {self.process.pid, *children(self.process.pid)}

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the supervisor and its workers (its process group)."""
        self.note_pids()
        self.process.signal_group(signum)

    def wait(self, timeout: float) -> int:
        """The supervisor's exit status; the group is killed if it overstays."""
        try:
            return self.process.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.proc.wait(timeout=10)
            raise AssertionError(f"{self.host.name} did not stop within {timeout} s:\n"
                                 f"{self.process.log.read_text()}") from None


class Fleet:
    """corofw on hosts: :meth:`start` runs it on one (again, after a fault)
    and waits until it answers; :meth:`stop_all` stops what still runs."""

    def __init__(self, directory: Path, redis_urls: dict[str, str]) -> None:
        self.directory = directory
        self.redis_urls = redis_urls
        self.started: list[Served] = []

    def start(self, host: Host, port: int | None = None) -> Served:
        if port is None:
            port = free_port("127.0.0.1" if host.netns else host.address)
        env = {k: v for k, v in os.environ.items()
               if k != "PYTHONPATH" and not k.startswith("COROFW_")}
        env.update(MULTIHOST_NAME=host.name, MULTIHOST_REDIS_URL=self.redis_urls[host.name])
        argv = [sys.executable, "-m", "corofw", "run", "tests.multihost_app:routes",
                "--workers", "2", "--host", host.address, "--port", str(port),
                "--keep-alive-timeout", "75", "--graceful-timeout", str(GRACEFUL_TIMEOUT),
                "--no-access-log"]
        log = self.directory / f"{host.name}-{len(self.started)}.log"
        served = Served(host, HostProcess(host, argv, log, PROJECT_ROOT, env), port)
        self.started.append(served)
        self._wait_ready(served)
        return served

    @staticmethod
    def _wait_ready(served: Served, timeout: float = 20.0) -> None:
        """Wait until both workers run and the host answers from Redis."""
        process = served.process
        wait_listening(served.port, process.proc, process.log, timeout,
                       host=served.host.address)
        deadline = time.monotonic() + timeout
        while len(children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        served.note_pids()
        response = httpx.get(f"http://{served.upstream}/counter", timeout=10)
        assert response.status_code == 200, (response.text, process.log.read_text())
        assert response.json()["host"] == served.host.name

    def stop_all(self) -> None:
        """SIGTERM to every host still running, then check that no process
        of any host started is left."""
        running = [served for served in self.started if served.process.proc.poll() is None]
        for served in running:
            served.signal(signal.SIGTERM)
        overstayed = []
        for served in running:
            try:
                served.wait(GRACEFUL_TIMEOUT + 10)
            except AssertionError as error:
                overstayed.append(str(error))
        assert not overstayed, "\n".join(overstayed)
        for served in self.started:
            for pid in served.pids:
                assert not alive(pid), f"corofw process {pid} on {served.host.name} still runs"


@pytest.fixture
def three_hosts(tmp_path, hosts, redis_urls):
    """corofw on each of the three hosts, ready: (the fleet, the three)."""
    _, host_list = hosts
    fleet = Fleet(tmp_path, redis_urls)
    try:
        yield fleet, [fleet.start(host) for host in host_list]
    finally:
        fleet.stop_all()


class Balancer:
    """nginx in front of the hosts; :meth:`take_out` marks one down."""

    def __init__(self, prefix: Path, port: int, upstreams: list[str]) -> None:
        self.prefix = prefix
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.upstreams = upstreams
        self.master = 0

    def config(self, down: frozenset[str] = frozenset()) -> str:
        return nginx_config(self.prefix, self.port, self.upstreams, down)

    def take_out(self, upstream: str, timeout: float = 10.0) -> None:
        """Mark ``upstream`` down and reload nginx (SIGHUP to its master);
        return once the workers that used the old configuration are gone."""
        old_workers = set(children(self.master))
        (self.prefix / "nginx.conf").write_text(self.config(frozenset({upstream})))
        os.kill(self.master, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = set(children(self.master))
            if workers and not workers & old_workers and not any(map(alive, old_workers)):
                return
            time.sleep(0.02)
        raise AssertionError(f"nginx did not reload within {timeout} s")


@pytest.fixture
def balancer(tmp_path, three_hosts):
    """nginx in front of the three hosts."""
    _, served = three_hosts
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    nginx = Balancer(prefix, free_port(), [one.upstream for one in served])
    with running_nginx(prefix, nginx.config(), nginx.port) as master:
        nginx.master = master
        yield nginx
    serious = [line for line in error_lines(prefix) if "[error]" not in line]
    assert not serious, "\n".join(serious)  # [error]: the failed upstreams, as expected


# -- steady load ------------------------------------------------------------------------------


@dataclass
class Outcome:
    method: str
    sent: float
    status: int | None
    host: str | None = None
    value: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


def steady_load(url: str, seconds: float, fault: Callable[[], object], fault_after: float,
                threads: int = 3, post_every: int = 0,
                max_requests: int = 5_000) -> tuple[list[Outcome], float]:
    """``threads`` clients send requests through nginx, one at a time each,
    for ``seconds`` (at most ``max_requests`` each); every ``post_every``-th
    request is a POST (none if 0). Each request is on a new connection to
    nginx, so that nginx's own keep-alive with the clients plays no part.
    ``fault()`` runs ``fault_after`` seconds in. Returns every outcome and
    when ``fault()`` returned."""
    outcomes: list[list[Outcome]] = [[] for _ in range(threads)]
    ends = time.monotonic() + seconds

    def client(mine: list[Outcome]) -> None:
        with httpx.Client(base_url=url, timeout=15, headers={"connection": "close"}) as http:
            for i in range(max_requests):
                if time.monotonic() >= ends:
                    return
                method = "POST" if post_every and i % post_every == post_every - 1 else "GET"
                sent = time.monotonic()
                try:
                    response = http.request(method, "/counter")
                except httpx.HTTPError as error:
                    mine.append(Outcome(method, sent, None, error=repr(error)))
                    continue
                if response.status_code == 200:
                    body = response.json()
                    mine.append(Outcome(method, sent, 200, body["host"], body["value"]))
                else:
                    mine.append(Outcome(method, sent, response.status_code,
                                        error=response.text[:200]))

    workers = [threading.Thread(target=client, args=(mine,), name=f"load-{n}")
               for n, mine in enumerate(outcomes)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(fault_after)
        fault()
        fault_done = time.monotonic()
    finally:
        for worker in workers:
            worker.join()
    return [outcome for mine in outcomes for outcome in mine], fault_done


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [outcome for outcome in outcomes if not outcome.ok]


def hosts_serving(outcomes: list[Outcome], after: float = 0.0) -> Counter:
    return Counter(outcome.host for outcome in outcomes if outcome.sent > after)


# -- the test ------------------------------------------------------------------------------------


def test_three_hosts_behind_nginx_survive_a_kill_and_drains(no_leaks, redis_url, hosts,
                                                            three_hosts, balancer, capsys):
    mode, _ = hosts
    fleet, (first, second, third) = three_hosts
    began = time.monotonic()

    # Before any fault: nginx spreads the load over all three hosts.
    warm, _ = steady_load(balancer.url, 1.0, fault=lambda: None, fault_after=0.0)
    assert not failures(warm), failures(warm)[:5]
    assert hosts_serving(warm).keys() == {"h1", "h2", "h3"}, hosts_serving(warm)

    # 1. A host dies (SIGKILL to its supervisor and workers): no request fails.
    def kill_first() -> None:
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL

    killed, dead = steady_load(balancer.url, 2.0, fault=kill_first, fault_after=0.5)
    assert not failures(killed), (mode, failures(killed)[:5])
    assert hosts_serving(killed, after=dead).keys() == {"h2", "h3"}, hosts_serving(killed)
    first = fleet.start(first.host, first.port)  # back, for step 3

    # 2. A host stops on SIGTERM alone: no idempotent request fails.
    stopped, stopping = steady_load(balancer.url, 2.0, fault=lambda: second.signal(
        signal.SIGTERM), fault_after=0.5)
    assert not failures(stopped), (mode, failures(stopped)[:5])
    assert second.wait(GRACEFUL_TIMEOUT + 10) == 0, second.process.log.read_text()
    assert "h2" not in hosts_serving(stopped, after=stopping + 1.0), hosts_serving(stopped)

    # 3. A host is drained, out of nginx and then SIGTERM: no request fails, not even a POST.
    def drain_third() -> None:
        balancer.take_out(third.upstream)
        third.signal(signal.SIGTERM)

    drained, out = steady_load(balancer.url, 2.5, fault=drain_third, fault_after=0.5,
                               post_every=2)
    assert not failures(drained), (mode, failures(drained)[:5])
    assert third.wait(GRACEFUL_TIMEOUT + 10) == 0, third.process.log.read_text()
    assert hosts_serving(drained, after=out).keys() == {"h1"}, hosts_serving(drained, after=out)
    posts = sorted(o.value for o in drained if o.method == "POST")
    assert posts == list(range(1, len(posts) + 1)), "a POST was lost or applied twice"
    final = httpx.get(f"{balancer.url}/counter", timeout=10).json()
    assert final["value"] == len(posts) > 0

    with capsys.disabled():
        total = len(warm) + len(killed) + len(stopped) + len(drained)
        print(f"[multihost] {total} requests through nginx in {time.monotonic() - began:.1f} s, "
              f"0 failed: {len(killed)} around the kill, {len(stopped)} around the SIGTERM, "
              f"{len(drained)} around the drain ({len(posts)} POSTs)")

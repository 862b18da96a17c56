"""corofw behind nginx: the deployment docs/deploy.md describes, end to end.

Starts ``corofw run apps.hello:routes --workers 2`` and an nginx reverse
proxy with upstream keep-alive on loopback (the configuration is the one
:func:`nginx_config` writes, the same as in the docs), sends a few hundred
requests through nginx, and checks the answers and that nginx reused its
upstream connections instead of opening one per request. Skipped when
nginx is not installed (``make nginx`` installs Debian's nginx-light) or
cannot run as this user. Everything started here is stopped by its PID.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from nginx_server import (
    NGINX,
    NO_NGINX,
    alive,
    children,
    error_lines,
    free_port,
    running_nginx,
    stop,
    temp_paths,
    unprivileged_main,
    wait_listening,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_KEEPALIVE = 16

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason=NO_NGINX),
    pytest.mark.timeout(60),
]


def nginx_config(prefix: Path, listen_port: int, upstream_port: int) -> str:
    """nginx as a reverse proxy for corofw with upstream keep-alive; every
    path it writes is under ``prefix`` so that it runs as any user."""
    return f"""{unprivileged_main(prefix)}
http {{
    access_log off;
    {temp_paths(prefix)}

    client_max_body_size 1m;          # = corofw --max-body-size (1 MiB)

    upstream corofw {{
        server 127.0.0.1:{upstream_port};
        keepalive {UPSTREAM_KEEPALIVE};  # idle upstream connections each nginx worker keeps
        keepalive_timeout 60s;        # < corofw --keep-alive-timeout 75
        keepalive_requests 1000;
    }}

    server {{
        listen 127.0.0.1:{listen_port};

        location / {{
            proxy_pass http://corofw;
            proxy_http_version 1.1;           # keep-alive needs HTTP/1.1 upstream
            proxy_set_header Connection "";   # and no "Connection: close" from nginx
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 5s;
            proxy_send_timeout 30s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


# -- processes ------------------------------------------------------------------------


@pytest.fixture
def corofw_workers(tmp_path):
    """``corofw run apps.hello:routes --workers 2``: (port, supervisor PID)."""
    port = free_port()
    log = tmp_path / "corofw.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "corofw", "run", "apps.hello:routes", "--workers", "2",
             "--port", str(port), "--keep-alive-timeout", "75", "--no-access-log"],
            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env)
    started = [proc.pid]
    try:
        wait_listening(port, proc, log)
        deadline = time.monotonic() + 10
        while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        started += children(proc.pid)
        yield port, proc.pid
    finally:
        stop(proc, proc.pid, signal.SIGTERM, timeout=15)
    for pid in started:
        assert not alive(pid), f"corofw process {pid} is still running"


@pytest.fixture
def nginx(tmp_path, corofw_workers):
    """nginx in front of ``corofw_workers``: (nginx port, corofw port)."""
    upstream_port, _ = corofw_workers
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    with running_nginx(prefix, nginx_config(prefix, port, upstream_port), port):
        yield port, upstream_port
    errors = [line for line in error_lines(prefix)
              if "client intended to send too large body" not in line]  # the 413 below
    assert not errors, "\n".join(errors)


# -- upstream connections, from the kernel's table ------------------------------------------

_ESTABLISHED, _TIME_WAIT = "01", "06"


def tcp_sockets() -> list[tuple[int, int, str]]:
    """(local port, remote port, state) of every IPv4 TCP socket."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        rows.append((int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16),
                     fields[3]))
    return rows


def upstream_ports(upstream_port: int) -> set[int]:
    """nginx's local ports of its established connections to corofw."""
    return {local for local, remote, state in tcp_sockets()
            if remote == upstream_port and state == _ESTABLISHED}


def closed_ports(upstream_port: int) -> set[int]:
    """nginx's local ports of the connections to corofw now in TIME_WAIT,
    on either side: each one was opened and closed again."""
    ports = set()
    for local, remote, state in tcp_sockets():
        if state == _TIME_WAIT and remote == upstream_port:  # nginx closed it
            ports.add(local)
        elif state == _TIME_WAIT and local == upstream_port:  # corofw closed it
            ports.add(remote)
    return ports


# -- the test ----------------------------------------------------------------------------------


def test_corofw_behind_nginx_with_upstream_keepalive(nginx):
    port, upstream_port = nginx
    rng = random.Random(1)
    closed_before = closed_ports(upstream_port)
    seen: set[int] = set()
    requests = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

        def exchange(i: int) -> None:
            if i % 2:
                response = client.get("/")
                assert response.status_code == 200, response.text
                assert response.text == "Hello, World!"
            else:
                body = rng.randbytes(rng.choice((0, 1, 500, 20_000, 200_000)))
                response = client.post("/echo", content=body,
                                       headers={"content-type": "application/x-test"})
                assert response.status_code == 200, response.text
                assert response.content == body
                assert response.headers["content-type"] == "application/x-test"
            assert response.headers["server"].startswith("nginx")

        for i in range(200):  # one at a time: nginx needs one upstream connection
            exchange(i)
            requests += 1
            if i % 20 == 0:
                seen |= upstream_ports(upstream_port)
        with ThreadPoolExecutor(8) as pool:  # eight at a time: up to eight
            for _ in pool.map(exchange, range(200, 400)):
                requests += 1
        seen |= upstream_ports(upstream_port)

        too_big = client.post("/echo", content=b"x" * ((1 << 20) + 1))
        assert too_big.status_code == 413  # nginx's client_max_body_size

    opened = len(upstream_ports(upstream_port) | seen | (closed_ports(upstream_port)
                                                         - closed_before))
    assert 1 <= opened <= UPSTREAM_KEEPALIVE, \
        f"{opened} upstream connections for {requests} requests: nginx did not reuse them"

"""``make demo`` (apps/demo.py) end to end: it starts the backend and the
fan-out app as ``corofw run`` processes, measures, prints its report and
stops both servers gracefully."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "apps" / "demo.py"


def run_demo(*args, timeout=60):
    """Run the demo in its own process group, so that whatever happens, no
    server it started outlives the test."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("BACKEND_URL", None)
    process = subprocess.Popen([sys.executable, str(DEMO), *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # servers left behind, if any
        except ProcessLookupError:
            pass
    return process.returncode, out, err


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pins a CPU core (Linux)")
def test_demo_report_and_clean_exit():
    status, out, err = run_demo("--delay", "0.2")
    assert status == 0, out + err
    lines = out.splitlines()
    assert len(lines) == 4, out

    summary = re.fullmatch(r"10 calls x 0\.2 s each: concurrent ([\d.]+) s, "
                           r"sequential ([\d.]+) s, 1 CPU core \(cpu (\d+)\)", lines[0])
    assert summary, lines[0]
    concurrent, sequential, cpu = float(summary[1]), float(summary[2]), int(summary[3])
    assert 0.2 <= concurrent < 0.9
    assert sequential >= 2.0
    assert cpu in os.sched_getaffinity(0)

    calls = re.fullmatch(r"  concurrent: every call took ([\d.]+)-([\d.]+) s, all waiting at "
                         r"the same time; request seen by the client in ([\d.]+) s", lines[1])
    assert calls, lines[1]
    fastest, slowest, wall = map(float, calls.groups())
    assert 0.2 <= fastest <= slowest < 0.9 and wall < 0.9

    assert re.fullmatch(r"  the fan-out process used [\d.]+ ms of CPU during that request: CPU "
                        r"busy [\d.]+% of the wait; the rest was spent asleep in epoll_wait",
                        lines[2]), lines[2]
    assert lines[3] == "  servers stopped: fan-out app exit 0, backend exit 0"


def test_demo_rejects_a_bad_option():
    status, out, err = run_demo("--delay", "soon", timeout=30)
    assert status == 2
    assert "--delay" in err and "invalid float value" in err

"""CLI settings past what the OS or the runtime takes: one 'Error:' line at
start, never a traceback (the rule the CLI keeps for NaN and the like)."""

from __future__ import annotations

import pytest
from live import run_cli

OVER_C_INT = str(2**31)


@pytest.mark.xfail(strict=True, reason="--gc-threshold/--backlog/--watchdog have no upper "
                   "bound in the CLI: gc.set_threshold, listen() and the kernel's watchdog "
                   "(at most 86400 s) raise OverflowError/ValueError with a traceback, the "
                   "GC one only after 'serving on' is logged")
@pytest.mark.parametrize("args", [
    ["--gc-threshold", OVER_C_INT],
    ["--backlog", "99999999999999999999"],
    ["--watchdog", "100000"],
])
def test_out_of_range_settings_are_one_line_errors(args):
    result = run_cli("run", "apps.hello:routes", "--port", "0", *args, timeout=10)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr, result.stderr
    assert "serving on" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


@pytest.mark.xfail(strict=True, reason="a --host the IDNA codec refuses (a label over 63 "
                   "characters) raises UnicodeError, which cli.run does not turn into its "
                   "'cannot listen on' line")
def test_a_host_name_idna_refuses_is_one_line_error():
    result = run_cli("run", "apps.hello:routes", "--port", "0", "--host", "a" * 64, timeout=10)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("Error: cannot listen on")

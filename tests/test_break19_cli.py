"""CLI settings past what the OS or the runtime takes: one 'Error:' line at
start, never a traceback (the rule the CLI keeps for NaN and the like);
programmatic callers get a ValueError naming the setting."""

from __future__ import annotations

import pytest
from live import run_cli

from corofw.http.config import MAX_WATCHDOG, ServerConfig
from corofw.runner import MAX_GC_THRESHOLD, gc_threshold_setting

OVER_C_INT = str(2**31)


@pytest.mark.parametrize("args", [
    ["--gc-threshold", OVER_C_INT],
    ["--backlog", "99999999999999999999"],
    ["--backlog", OVER_C_INT],
    ["--watchdog", "100000"],
    ["--watchdog", "86400"],
])
def test_out_of_range_settings_are_one_line_errors(args):
    result = run_cli("run", "apps.hello:routes", "--port", "0", *args, timeout=10)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr, result.stderr
    assert "serving on" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


@pytest.mark.parametrize("host", ["a" * 64, "a..b", "bad\udcffhost"])
def test_a_host_name_idna_refuses_is_one_line_error(host):
    result = run_cli("run", "apps.hello:routes", "--port", "0", "--host", host, timeout=10)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("Error: cannot listen on")
    assert "not a valid host name" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_programmatic_settings_are_bounded_too(monkeypatch):
    assert gc_threshold_setting(MAX_GC_THRESHOLD) == MAX_GC_THRESHOLD
    with pytest.raises(ValueError, match="GC threshold must be a whole number from 0 to"):
        gc_threshold_setting(MAX_GC_THRESHOLD + 1)
    for text in (OVER_C_INT, "9" * 5000):
        monkeypatch.setenv("COROFW_GC_THRESHOLD", text)
        with pytest.raises(ValueError, match="COROFW_GC_THRESHOLD must be"):
            gc_threshold_setting()
    assert ServerConfig(watchdog=MAX_WATCHDOG - 1).watchdog == MAX_WATCHDOG - 1
    with pytest.raises(ValueError, match="watchdog must be below 86400 seconds"):
        ServerConfig(watchdog=MAX_WATCHDOG)

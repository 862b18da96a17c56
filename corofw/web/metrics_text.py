"""The Prometheus text exposition format (version 0.0.4), written as
``prometheus_client`` writes it: ``# HELP`` and ``# TYPE`` lines, label
names in alphabetical order, label values escaped, values as Go formats
floats (``1.0``, ``1e+07``, ``+Inf``), histograms as cumulative
``_bucket{le=...}`` series then ``_count`` and ``_sum``.

:func:`render` sums snapshots of :class:`~corofw.web.metrics.Metrics` (one
per worker) into one scrape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

_KERNEL_GAUGES = (
    ("tasks", "kernel_tasks", "gauge", "Live tasks of the kernel."),
    ("fds_waited_on", "kernel_fds_waited_on", "gauge", "File descriptors tasks wait on."),
    ("timers", "kernel_timers", "gauge", "Timers pending in the kernel."),
    ("busy_fraction", "kernel_busy_ratio", "gauge",
     "Fraction of the kernel thread's time spent running tasks since it started."),
    ("loop_lag_seconds", "kernel_loop_lag_seconds", "gauge",
     "How long a task made ready by the scrape waited to run."),
    ("watchdog_warnings", "kernel_watchdog_warnings_total", "counter",
     "Warnings the watchdog logged for a blocked loop."),
)


def render(namespace: str, bounds: Sequence[float], upstream_bounds: Sequence[float],
           snapshots: Iterable[dict[str, Any]], multi: bool) -> str:
    """The text exposition of ``snapshots`` (as :meth:`Metrics.snapshot`
    makes them) summed. A snapshot whose ``alive`` is False (its process
    has exited) adds its counters and histograms but not its gauges nor
    its kernel's numbers; with ``multi``, the kernel's numbers are
    labelled by ``pid``. Histograms with other bounds than ``bounds`` /
    ``upstream_bounds`` are left out."""
    requests: dict[tuple[str, ...], float] = {}
    in_flight: dict[tuple[str, ...], float] = {}
    latency: dict[tuple[str, ...], list[Any]] = {}
    calls: dict[tuple[str, ...], float] = {}
    errors: dict[tuple[str, ...], float] = {}
    call_latency: dict[tuple[str, ...], list[Any]] = {}
    cpu: dict[tuple[str, ...], float] = {}
    waits: dict[tuple[str, ...], float] = {}
    kernel: dict[str, list[tuple[tuple[str, ...], float]]] = {}
    for snap in snapshots:
        alive = snap.get("alive", True)
        same_routes = list(snap["bounds"]) == list(bounds)
        for route, method, flying, statuses, buckets, total in snap["routes"]:
            key = (route, method)
            for status, n in statuses.items():
                _add(requests, (route, method, status), n)
            if alive:
                _add(in_flight, key, flying)
            if same_routes:
                _add_histogram(latency, key, buckets, total)
        for route, method, seconds, by_wait in snap.get("costs", ()):
            _add(cpu, (route, method), seconds)
            for name, waited in by_wait.items():
                _add(waits, (route, method, name), waited)
        same_calls = list(snap["upstream_bounds"]) == list(upstream_bounds)
        for host, n, kinds, buckets, total in snap["upstreams"]:
            _add(calls, (host,), n)
            for kind, count in kinds.items():
                _add(errors, (host, kind), count)
            if same_calls:
                _add_histogram(call_latency, (host,), buckets, total)
        if alive or not multi:
            labels = (str(snap["pid"]),) if multi else ()
            for name, value in snap["kernel"].items():
                kernel.setdefault(name, []).append((labels, value))

    out: list[str] = []
    prefix = namespace + "_"
    _family(out, prefix + "http_requests_total", "counter",
            "Requests answered, by route pattern, method and status.",
            ("route", "method", "status"), requests.items())
    _histogram(out, prefix + "http_request_duration_seconds",
               "Time to make each response, by route pattern and method.",
               ("route", "method"), bounds, latency)
    _family(out, prefix + "http_requests_in_flight", "gauge",
            "Requests being handled now, by route pattern and method.",
            ("route", "method"), in_flight.items())
    if cpu:  # only with request costs on
        _family(out, prefix + "http_request_cpu_seconds_total", "counter",
                "Time requests ran on the loop, by route pattern and method.",
                ("route", "method"), cpu.items())
        _family(out, prefix + "http_request_wait_seconds_total", "counter",
                "Time requests waited, by route pattern, method and what they waited on.",
                ("route", "method", "on"), waits.items())
    _family(out, prefix + "upstream_requests_total", "counter",
            "Outbound calls made, by upstream host.", ("host",), calls.items())
    _family(out, prefix + "upstream_errors_total", "counter",
            "Outbound calls that failed, by upstream host and exception class.",
            ("host", "kind"), errors.items())
    _histogram(out, prefix + "upstream_request_duration_seconds",
               "Time each outbound call took, by upstream host.", ("host",),
               upstream_bounds, call_latency)
    label_names = ("pid",) if multi else ()
    for stat, name, kind, text in _KERNEL_GAUGES:
        _family(out, prefix + name, kind, text, label_names, kernel.get(stat, []))
    return "".join(out)


def format_value(value: float) -> str:
    """A sample value or bound as ``prometheus_client`` writes it: ``1.0``,
    ``0.005``, ``1.5e+06``, ``+Inf``, ``-Inf``, ``NaN``."""
    value = float(value)
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def escape_label(value: str) -> str:
    """A label value escaped for the text format: backslash, double quote
    and newline."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], le: str | None = None) -> str:
    """``{a="1",b="2"}``, names in alphabetical order as prometheus_client
    writes them; ``le`` is a histogram bucket's bound."""
    pairs = sorted(zip(names, values, strict=True))
    if le is not None:
        pairs = sorted([*pairs, ("le", le)])
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{escape_label(value)}"' for name, value in pairs) + "}"


def _head(out: list[str], name: str, kind: str, text: str) -> None:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")


def _family(out: list[str], name: str, kind: str, text: str, label_names: Sequence[str],
            samples: Iterable[tuple[Sequence[str], float]]) -> None:
    _head(out, name, kind, text)
    for values, value in samples:
        out.append(f"{name}{_labels(label_names, values)} {format_value(value)}\n")


def _histogram(out: list[str], name: str, text: str, label_names: Sequence[str],
               bounds: Sequence[float], series: dict[tuple[str, ...], list[Any]]) -> None:
    _head(out, name, "histogram", text)
    les = [format_value(bound) for bound in bounds] + ["+Inf"]
    for values, (buckets, total) in series.items():
        running = 0
        for le, count in zip(les, buckets, strict=True):
            running += count
            labels = _labels(label_names, values, le)
            out.append(f"{name}_bucket{labels} {format_value(running)}\n")
        labels = _labels(label_names, values)
        out.append(f"{name}_count{labels} {format_value(running)}\n")
        out.append(f"{name}_sum{labels} {format_value(total)}\n")


def _add(table: dict[tuple[str, ...], float], key: tuple[str, ...], n: float) -> None:
    table[key] = table.get(key, 0) + n


def _add_histogram(table: dict[tuple[str, ...], list[Any]], key: tuple[str, ...],
                   buckets: Sequence[int], total: float) -> None:
    entry = table.get(key)
    if entry is None:
        table[key] = [list(buckets), total]
    else:
        entry[0] = [a + b for a, b in zip(entry[0], buckets, strict=True)]
        entry[1] += total

"""Metrics shared between worker processes through a directory.

With ``--workers N`` a scrape reaches one worker, but should see them all.
Each worker writes a snapshot of its numbers to ``<directory>/<pid>.json``
(atomically: a temporary file renamed over the old one) at most once a
second while it serves requests, and at every scrape it answers; the worker
answering a scrape reads every file and sums them. This is the model of
``prometheus_client``'s multiprocess mode, with whole snapshots instead of
a memory-mapped file per metric.

Counters of a worker that has exited stay in the sum (its file remains),
so totals never go backwards when a worker is replaced; its gauges (in
flight, the kernel's) are left out. Start each run with an empty
directory: files from an earlier run would be summed too.
"""

from __future__ import annotations

import json
import os
from typing import Any

#: The environment variable naming the shared directory.
ENV_DIRECTORY = "COROFW_METRICS_DIR"


class SnapshotFiles:
    """The snapshot files of every worker in ``directory`` (created if
    missing)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)

    def write(self, snapshot: dict[str, Any]) -> None:
        """Replace this process's file with ``snapshot``."""
        pid = snapshot["pid"]
        path = os.path.join(self.directory, f"{pid}.json")
        temporary = os.path.join(self.directory, f".{pid}.json.tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(snapshot, file, separators=(",", ":"))
        os.replace(temporary, path)

    def read_all(self) -> list[dict[str, Any]]:
        """Every worker's last snapshot, each with ``alive``: whether its
        process still runs. A file that cannot be read or parsed (being
        replaced on a file system without atomic rename, or not ours) is
        skipped."""
        snapshots = []
        for name in sorted(os.listdir(self.directory)):
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8") as file:
                    snapshot = json.load(file)
                pid = int(snapshot["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            snapshot["alive"] = _alive(pid)
            snapshots.append(snapshot)
        return snapshots


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

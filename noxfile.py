"""The test suite on every supported CPython found on this machine (``make test-all``).

The supported versions are the ones the classifiers in pyproject.toml name.
An interpreter is looked for on PATH (``python3.12``) and among pyenv's
installed versions, whether or not pyenv has them activated; a version found
nowhere is skipped with a message, never fetched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

PYTHONS = nox.project.python_versions(nox.project.load_toml("pyproject.toml"))

nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = False
nox.options.download_python = "never"
nox.options.reuse_venv = "yes"


def pyenv_bin_dirs(versions: list[str]) -> list[str]:
    """The ``bin`` folder of the newest pyenv-installed patch release of each of
    ``versions`` that has one."""
    installed = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for version in versions:
        pattern = re.compile(re.escape(version) + r"\.(\d+)")
        patches = [(int(match[1]), entry) for entry in (installed.iterdir()
                   if installed.is_dir() else ()) if (match := pattern.fullmatch(entry.name))]
        if patches:
            found.append(str(max(patches)[1] / "bin"))
    return found


# pyenv's shims run only the versions pyenv has activated: put the real
# interpreters first on PATH so that nox finds every installed one.
os.environ["PATH"] = os.pathsep.join([*pyenv_bin_dirs(PYTHONS), os.environ.get("PATH", "")])


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite (extra pytest arguments after ``--``)."""
    session.install("-e", ".[test]")
    session.run("python", "-c", "import sys; print(sys.version)")
    session.run("pytest", "-q", *session.posargs)

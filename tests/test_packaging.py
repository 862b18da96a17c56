"""The package as a user gets it: the wheel built from this tree carries what it
promises and, installed into a fresh virtual environment, serves a request with
that environment's own ``corofw run``."""

from __future__ import annotations

import importlib.util
import os
import re
import selectors
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import venv
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def build_wheel(outdir: Path) -> Path:
    """Build the sdist, then the wheel from it, with this environment's build
    backend (``--no-isolation``: no download); skip only when no build is possible."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("cannot build: the 'build' frontend is not installed "
                    "(pip install -e '.[test]')")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir),
         str(PROJECT_ROOT)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "Missing dependencies" in result.stdout + result.stderr:
        pytest.skip("cannot build: this environment lacks the build requirements "
                    f"(pip install -e '.[test]'):\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, f"build failed:\n{result.stdout}{result.stderr}"
    [wheel] = outdir.glob("corofw-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


def test_the_wheel_ships_the_typing_marker_licence_and_metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info_dir = next(name.split("/")[0] for name in names if ".dist-info/" in name)
        metadata = HeaderParser().parsestr(archive.read(f"{info_dir}/METADATA").decode())
        entry_points = archive.read(f"{info_dir}/entry_points.txt").decode()
    assert "corofw/py.typed" in names
    assert f"{info_dir}/licenses/LICENSE" in names
    assert not any(name.startswith("tests/") for name in names)
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == PYPROJECT["project"]["requires-python"]
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert any(req.startswith("click") for req in metadata.get_all("Requires-Dist"))
    assert re.search(r"^corofw\s*=\s*corofw\.cli:main$", entry_points, re.MULTILINE)


def test_the_python_versions_tested_are_the_ones_admitted():
    """make test-all tests the versions the classifiers name (noxfile.py); the
    oldest of them is the oldest requires-python admits."""
    versions = [tuple(map(int, c.rsplit(" ", 1)[1].split(".")))
                for c in PYPROJECT["project"]["classifiers"]
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions == sorted(versions)
    oldest = ".".join(map(str, versions[0]))
    assert PYPROJECT["project"]["requires-python"] == f">={oldest}"


APP = '''
import corofw

routes = corofw.Router()


@routes.get("/where")
def where(request):
    return corofw.__file__
'''


def wait_for_port(proc: subprocess.Popen, timeout: float) -> int:
    """The port from the server's ``serving on http://127.0.0.1:PORT`` line."""
    deadline = time.monotonic() + timeout
    seen = []
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(deadline - time.monotonic()):
                break
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
            if found:
                return int(found[1])
    raise AssertionError("no 'serving on' line; the server said:\n" + "".join(seen))


def test_the_wheel_installed_in_a_fresh_venv_serves_with_corofw_run(wheel, tmp_path, no_leaks):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # this environment's pip installs into the fresh one; click comes from the index
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=120)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "where_app.py").write_text(textwrap.dedent(APP))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.Popen(
        [str(env_dir / "bin" / "corofw"), "run", "where_app:routes", "--port", "0",
         "--no-access-log"], cwd=app_dir, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = wait_for_port(proc, timeout=15)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/where", timeout=10) as response:
            served_from = Path(response.read().decode())
        assert served_from.is_relative_to(env_dir), \
            f"corofw was imported from {served_from}, not from the fresh venv"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()

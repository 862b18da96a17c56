"""The docs stay true: their examples run, and every corofw name and
repository path they mention in backticks exists."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(<!-- no-run -->\s*)?```python\n(.*?)```", re.S)
TICKED = re.compile(r"`([^`\n]+)`")
PATH = re.compile(r"(?:corofw|apps|tests|benchmarks|docs)/[\w./-]*|[\w-]+\.(?:md|toml)|Makefile")
DOTTED = re.compile(r"corofw(?:\.\w+)+")


def examples():
    for page in PAGES:
        for number, match in enumerate(BLOCK.finditer(page.read_text()), 1):
            if not match.group(1):
                yield pytest.param(match.group(2), id=f"{page.relative_to(ROOT)}#{number}")


@pytest.mark.parametrize("source", list(examples()))
def test_example_runs(source):
    result = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]


def mentions():
    for page in PAGES:
        text = BLOCK.sub("", page.read_text())
        for token in TICKED.findall(text):
            yield page, token.strip()


def test_every_repository_path_mentioned_exists():
    missing = []
    for page, token in mentions():
        for path in PATH.findall(token):
            if ":" in token.split(path, 1)[1][:1]:
                continue  # module:attribute specs are checked as names
            if not (ROOT / path.rstrip(".")).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, "\n".join(sorted(set(missing)))


def resolve(dotted):
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_corofw_name_mentioned_resolves():
    broken = []
    for page, token in mentions():
        for dotted in DOTTED.findall(token):
            try:
                resolve(dotted)
            except (ImportError, AttributeError) as exc:
                broken.append(f"{page.relative_to(ROOT)}: {dotted} ({exc})")
    assert not broken, "\n".join(sorted(set(broken)))


def test_every_public_name_imports_from_corofw():
    import corofw

    for name in corofw.__all__:
        assert getattr(corofw, name) is not None, name


FRAME = re.compile(r"^\s+((?:corofw|apps)/[\w/]+\.py):(\d+) in \w+: (.+)$", re.M)


def test_quoted_task_dump_frames_match_the_source():
    wrong = []
    for page in PAGES:
        for path, line, text in FRAME.findall(page.read_text()):
            source = (ROOT / path).read_text().splitlines()
            actual = source[int(line) - 1].strip() if int(line) <= len(source) else ""
            if actual != text.strip():
                wrong.append(f"{page.relative_to(ROOT)}: {path}:{line} quotes {text.strip()!r}, "
                             f"the line is {actual!r}")
    assert not wrong, "\n".join(wrong)

"""Coverage-guided fuzzing of the request parser with atheris (``make fuzz``).

The property is :func:`cases.check_input`. A crash is saved in
tests/fuzz/crashes/ and replayed by tests/test_fuzz_regressions.py from
then on.
"""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports():
    from cases import check_input

    import corofw.http.parser  # noqa: F401  (instrumented for coverage)

if __name__ == "__main__":
    atheris.Setup(sys.argv, check_input)
    atheris.Fuzz()

"""Every input a fuzzer found a problem with stays a test case (and the
seeds are checked too)."""

from pathlib import Path

import pytest
from fuzz.cases import check_input

CASES = sorted(p for p in (Path(__file__).parent / "fuzz").glob("*/*")
               if p.is_file() and p.name != ".gitkeep")


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_fuzz_case_parses_the_same_whole_and_in_pieces(path):
    data = path.read_bytes()
    for piece in range(16):
        check_input(bytes([piece]) + data)

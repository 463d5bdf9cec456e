"""The test folders are not packages, so pytest imports each test module by its file name: names must differ."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_file_name():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], f"rename one of each: {[n for n, c in names.items() if c > 1]}"

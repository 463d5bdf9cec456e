"""Soak tests: run `k2 stream` (and `k2 consume`) as child processes for hours, sample them, judge, report."""

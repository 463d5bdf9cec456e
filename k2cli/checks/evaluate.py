"""Pure evaluation: compare a measurement with a threshold, count results, percentiles (verdicts: k2cli.verdict)."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable

from k2cli.verdict import Status

OPERATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

def compare(measured: float | int | None, op: str, limit: float) -> bool:
    """Whether `measured op limit` holds; a missing or NaN measurement never holds."""
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}; use one of {' '.join(OPERATORS)}")
    if measured is None or isinstance(measured, bool):
        return False
    if isinstance(measured, float) and math.isnan(measured):
        return False
    return bool(OPERATORS[op](measured, limit))


def judge(measured: float | int | None, op: str, limit: float, warn_limit: float | None = None) -> Status:
    """FAIL when the limit does not hold, WARN when only the stricter warn limit does not hold, else PASS."""
    if not compare(measured, op, limit):
        return Status.FAIL
    if warn_limit is not None and not compare(measured, op, warn_limit):
        return Status.WARN
    return Status.PASS


def fmt_number(value: float | int) -> str:
    """A compact number: integers without a decimal point, others with up to 4 significant decimals."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.3g}"


def describe(op: str, limit: float, unit: str = "") -> str:
    """The threshold as text, e.g. '< 5 s'."""
    text = f"{op} {fmt_number(limit)}"
    return f"{text} {unit}".rstrip()


def counts(statuses: Iterable[Status]) -> dict[str, int]:
    """How many steps ended in each status (every status present, in a stable order)."""
    tally = {s.value: 0 for s in Status}
    for status in statuses:
        tally[status.value] += 1
    return tally


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    data = sorted(values)
    if not data:
        return math.nan
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return float(data[low] + (data[high] - data[low]) * (pos - low))

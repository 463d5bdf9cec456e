"""Verdicts, the thresholds they judge against, and exit codes, shared by `k2 validate` and `k2 soak`."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Status(enum.StrEnum):
    """The outcome of a step, a criterion or a whole run."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"  # a step it depends on did not pass
    MANUAL = "MANUAL"  # a person must check; the result says why and what
    ERROR = "ERROR"  # could not run, could not be measured


# A measured failure outranks "could not run", which outranks warnings. SKIP and MANUAL never decide a
# verdict: a SKIP always has a failed or errored step upstream, and MANUAL steps are for a person to check.
SEVERITY = {Status.PASS: 1, Status.WARN: 2, Status.ERROR: 3, Status.FAIL: 4}
EXIT_CODES = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2, Status.ERROR: 3}


@dataclass(frozen=True)
class Threshold:
    """A named limit: the step passes when `measured op value` holds; op '' marks a run parameter."""

    name: str
    default: float
    op: str
    unit: str
    source: str  # where the number comes from


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status, SKIP and MANUAL left out (PASS when there is none)."""
    result = Status.PASS
    for status in statuses:
        if SEVERITY.get(status, 0) > SEVERITY[result]:
            result = status
    return result


def exit_code(overall: Status) -> int:
    """0 all pass, 1 warnings only, 2 any failure, 3 could not run."""
    return EXIT_CODES[overall]

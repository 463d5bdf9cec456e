"""Time limits for tests on a shared, busy box: a specified limit, stretched while the machine is overloaded."""

from __future__ import annotations

import os

MAX_STRETCH = 3.0


def budget(seconds: float) -> float:
    """`seconds` on a quiet machine; up to 3x that while the 1-minute load average exceeds the number of cores
    (other processes then hold the CPU the measured code waits for)."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * min(MAX_STRETCH, max(1.0, load))


def load_note() -> str:
    """The load the budget was stretched by, for an assertion message."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"

"""Process memory sampling and the memory-leak score.

The leak score is a pure function of RSS samples (time in seconds, RSS in bytes):

    slope  = least-squares slope of RSS over time, in MiB per hour (1 MiB = 2**20 bytes)
    r2     = coefficient of determination of that straight-line fit (0..1)
    score  = r2 * slope / (slope + 10)        when slope > 0 and there are >= 10 samples, else 0

So steady growth (r2 ≈ 1) of 10 MiB/h scores 0.5, 30 MiB/h 0.75, 40 MiB/h 0.8 and 90 MiB/h 0.9; a flat or
shrinking process scores 0, and noisy memory that does not grow along a line is damped by r2.
The soak command and `k2 stream` both use it (the first k2's formula claimed 10 MB/h = 0.5 but gave 0.2).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

MIB = 2**20
HALF_SCORE_MIB_PER_HOUR = 10.0
MIN_SAMPLES = 10


def rss_trend(samples: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(slope in MiB per hour, R²) of the least-squares line through (seconds, RSS bytes) samples."""
    n = len(samples)
    if n < 2:
        return 0.0, 0.0
    xs = [float(t) for t, _ in samples]
    ys = [float(rss) / MIB for _, rss in samples]
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, 0.0
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx  # MiB per second
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    if ss_tot == 0:
        return slope * 3600.0, 0.0
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = max(0.0, min(1.0, 1.0 - ss_res / ss_tot))
    return slope * 3600.0, r2


def score_of(slope_mib_per_hour: float, r2: float) -> float:
    """The leak score of an RSS trend: r2 * slope / (slope + 10) for slope > 0 MiB/h, else 0 (in [0, 1))."""
    if slope_mib_per_hour <= 0 or r2 <= 0:
        return 0.0
    return min(1.0, r2) * slope_mib_per_hour / (slope_mib_per_hour + HALF_SCORE_MIB_PER_HOUR)


def leak_score(samples: Sequence[tuple[float, float]]) -> float:
    """The memory-leak score of (seconds, RSS bytes) samples: score_of(rss_trend(samples)); 0 below 10 samples."""
    if len(samples) < MIN_SAMPLES:
        return 0.0
    return score_of(*rss_trend(samples))


@dataclass(frozen=True)
class MemorySample:
    """One reading: when (monotonic seconds), RSS and VMS bytes, and the leak score over the window."""

    at: float
    rss: int
    vms: int
    score: float


class MemorySampler:
    """Samples this process's RSS/VMS and keeps a sliding window for the leak score."""

    def __init__(self, window: int = 120, pid: int | None = None) -> None:
        import psutil

        self._process = psutil.Process(pid or os.getpid())
        self.samples: deque[tuple[float, float]] = deque(maxlen=window)
        self.last: MemorySample | None = None

    def sample(self, at: float) -> MemorySample:
        """Read memory now (`at` = monotonic seconds) and return the reading with the updated score."""
        info = self._process.memory_info()
        self.samples.append((at, float(info.rss)))
        self.last = MemorySample(at=at, rss=int(info.rss), vms=int(info.vms), score=leak_score(list(self.samples)))
        return self.last

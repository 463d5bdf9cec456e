"""The one backoff of k2: capped exponential delays with jitter, a failure counter, and a retry loop."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from k2cli.errors import ServiceUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delays initial * multiplier**attempt, capped at maximum; `jitter` of each delay is randomised away."""

    initial: float = 0.1
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5  # 0: fixed delays; 0.5: uniform in [d/2, d]; 1: anywhere in [0, d] ("full jitter")

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum <= 0 or self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("invalid backoff parameters")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay before retry number `attempt` (0-based)."""
        return min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """The jittered delay before retry number `attempt`: in [ceiling * (1 - jitter), ceiling]."""
        ceiling = self.ceiling(attempt)
        return ceiling * (1 - self.jitter * rng())


class Retries:
    """Consecutive failures of one operation and when the next attempt is due; a success resets both."""

    def __init__(self, backoff: Backoff, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.backoff = backoff
        self.failures = 0
        self.due = 0.0  # clock time before which the next attempt should wait
        self._clock = clock
        self._rng = rng

    def delay(self) -> float:
        """The jittered delay after the failures counted so far (the first delay when there are none)."""
        return self.backoff.delay(max(0, self.failures - 1), self._rng)

    def failed(self) -> float:
        """Count a failure; returns the delay before the next attempt (which is then due)."""
        self.failures += 1
        wait = self.delay()
        self.due = self._clock() + wait
        return wait

    def ready(self, now: float) -> bool:
        """Whether the next attempt is due at `now`."""
        return self.due <= now

    def reset(self) -> None:
        """A success: the next failure starts from the first delay again, and nothing waits."""
        self.failures = 0
        self.due = 0.0


def retry(fn: Callable[[], T], *, retry_on: tuple[type[BaseException], ...] = (ServiceUnavailable,),
          attempts: int | None = 5, deadline: float | None = None, backoff: Backoff = Backoff(),
          should_stop: Callable[[], bool] = lambda: False, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic,
          on_retry: Callable[[int, BaseException, float], None] | None = None) -> T:
    """Call fn until it succeeds; retry `retry_on` errors with backoff, up to `attempts` calls and `deadline` seconds.

    When the budget is spent, or should_stop() is true after a failure, the last error is re-raised as is.
    """
    start = clock()
    retries = Retries(backoff, clock)
    while True:
        try:
            return fn()
        except retry_on as exc:
            wait = retries.failed()
            out_of_attempts = attempts is not None and retries.failures >= attempts
            out_of_time = deadline is not None and clock() - start + wait > deadline
            if out_of_attempts or out_of_time or should_stop():
                raise
            if on_retry is not None:
                on_retry(retries.failures, exc, wait)
            sleep_unless_stopped(wait, should_stop, sleep, clock)


def sleep_unless_stopped(seconds: float, should_stop: Callable[[], bool], sleep: Callable[[float], None] = time.sleep,
                         clock: Callable[[], float] = time.monotonic, step: float = 0.05) -> None:
    """Sleep in small steps so a stop request is honoured quickly."""
    end = clock() + seconds
    while not should_stop():
        left = end - clock()
        if left <= 0:
            return
        sleep(min(left, step))

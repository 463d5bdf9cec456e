"""Exponential backoff with jitter, and a retry loop for transient failures."""

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
    jitter: float = 0.5  # 0: fixed delays; 1: anywhere in [0, delay] ("full jitter")

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("invalid backoff parameters")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay before retry number `attempt` (0-based)."""
        return min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """The jittered delay before retry number `attempt`: in [ceiling * (1 - jitter), ceiling]."""
        ceiling = self.ceiling(attempt)
        return ceiling * (1 - self.jitter * rng())


class RetryGaveUp(ServiceUnavailable):
    """A transient failure outlasted the retry budget (the last error is chained)."""


def retry(fn: Callable[[], T], *, retry_on: tuple[type[BaseException], ...] = (ServiceUnavailable,),
          attempts: int | None = 5, deadline: float | None = None, backoff: Backoff = Backoff(),
          should_stop: Callable[[], bool] = lambda: False, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic,
          on_retry: Callable[[int, BaseException, float], None] | None = None) -> T:
    """Call fn until it succeeds; retry `retry_on` errors with backoff, up to `attempts` calls and `deadline` seconds.

    When the budget is spent, or should_stop() turns true, the last error is re-raised as is.
    """
    start = clock()
    attempt = 0
    while True:
        try:
            return fn()
        except retry_on as exc:
            attempt += 1
            wait = backoff.delay(attempt - 1)
            out_of_attempts = attempts is not None and attempt >= attempts
            out_of_time = deadline is not None and clock() - start + wait > deadline
            if out_of_attempts or out_of_time or should_stop():
                raise
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            _sleep_unless_stopped(wait, should_stop, sleep)
            if should_stop():
                raise


def _sleep_unless_stopped(seconds: float, should_stop: Callable[[], bool], sleep: Callable[[float], None]) -> None:
    """Sleep in small steps so a stop request is honoured quickly."""
    end = time.monotonic() + seconds
    while not should_stop():
        left = end - time.monotonic()
        if left <= 0:
            return
        sleep(min(left, 0.1))

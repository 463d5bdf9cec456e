"""A circuit breaker (CLOSED -> OPEN -> HALF_OPEN -> CLOSED) for a dependency such as the Iceberg catalog.

CLOSED: calls go through; `failure_threshold` consecutive failures open it.
OPEN: calls are refused until the reset timeout has passed, then one trial call is allowed (HALF_OPEN).
HALF_OPEN: a success closes it; a failure opens it again with a longer reset timeout (backoff, capped).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from k2cli.reliability.retry import Backoff


class BreakerState(enum.StrEnum):
    """The breaker's states; `level` gives the metric value (0 closed, 1 half-open, 2 open)."""

    CLOSED = "CLOSED"
    HALF_OPEN = "HALF_OPEN"
    OPEN = "OPEN"

    @property
    def level(self) -> int:
        """0 closed, 1 half-open, 2 open."""
        return {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}[self.value]


class CircuitBreaker:
    """Counts consecutive failures of a dependency and refuses calls while it is known to be down."""

    def __init__(self, name: str = "iceberg", failure_threshold: int = 3, reset_timeout: float = 2.0,
                 max_reset_timeout: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[BreakerState, BreakerState], None] | None = None) -> None:
        if failure_threshold < 1 or reset_timeout <= 0 or max_reset_timeout < reset_timeout:
            raise ValueError("invalid circuit breaker parameters")
        self.name = name
        self.failure_threshold = failure_threshold
        self._timeouts = Backoff(initial=reset_timeout, maximum=max_reset_timeout, multiplier=2.0, jitter=0.0)
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._opens_in_a_row = 0
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        """The current state (an OPEN breaker whose timeout has passed reports HALF_OPEN)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_timeout:
            self._set(BreakerState.HALF_OPEN)
        return self._state

    @property
    def reset_timeout(self) -> float:
        """How long the breaker stays open this time."""
        return self._timeouts.ceiling(max(0, self._opens_in_a_row - 1))

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def allow(self) -> bool:
        """Whether a call may be attempted now."""
        return self.state is not BreakerState.OPEN

    def seconds_until_trial(self) -> float:
        """How long until an open breaker allows a trial call (0 if it allows calls now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def record_success(self) -> None:
        """A call succeeded: close."""
        self._failures = 0
        self._opens_in_a_row = 0
        self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """A call failed: open after the threshold, or at once from HALF_OPEN."""
        self._failures += 1
        state = self.state
        if state is BreakerState.HALF_OPEN or (state is BreakerState.CLOSED
                                               and self._failures >= self.failure_threshold):
            self._opens_in_a_row += 1
            self._opened_at = self._clock()
            self.times_opened += 1
            self._set(BreakerState.OPEN)

    def _set(self, new: BreakerState) -> None:
        old = self._state
        if old is not new:
            self._state = new
            if self._on_change is not None:
                self._on_change(old, new)

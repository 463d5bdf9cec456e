"""Backoff with jitter, the failure counter, the retry loop, the circuit breaker (fake clock, no sleeping)."""

import pytest

from k2cli.errors import ServiceUnavailable
from k2cli.reliability.breaker import BreakerState, CircuitBreaker
from k2cli.reliability.retry import Backoff, Retries, retry


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_backoff_grows_exponentially_and_caps():
    b = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.0)
    assert [b.delay(i) for i in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoff_jitter_stays_within_bounds():
    b = Backoff(initial=1.0, maximum=8.0, jitter=0.5)
    assert b.delay(2, rng=lambda: 0.0) == 4.0
    assert b.delay(2, rng=lambda: 1.0) == 2.0
    assert b.delay(2, rng=lambda: 0.999) > 2.0


def test_retries_count_failures_delay_and_reset():
    clock = Clock()
    r = Retries(Backoff(initial=1.0, maximum=4.0, jitter=0.0), clock=clock)
    assert r.delay() == 1.0 and r.ready(0.0)
    clock.now = 10.0
    assert [r.failed() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert r.failures == 4 and r.due == 14.0
    assert not r.ready(13.9) and r.ready(14.0)
    r.reset()
    assert (r.failures, r.due, r.delay()) == (0, 0.0, 1.0)


def test_retries_half_jitter_stays_in_upper_half():
    lo = Retries(Backoff(initial=2.0, maximum=60.0, jitter=0.5), rng=lambda: 1.0)
    hi = Retries(Backoff(initial=2.0, maximum=60.0, jitter=0.5), rng=lambda: 0.0)
    for _ in range(3):
        lo.failed()
        hi.failed()
    assert (lo.delay(), hi.delay()) == (4.0, 8.0)


def test_retry_retries_transient_errors_then_succeeds():
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ServiceUnavailable("down")
        return "ok"

    assert retry(flaky, attempts=5, backoff=Backoff(initial=0.01, jitter=0), sleep=waits.append,
                 on_retry=lambda n, e, w: None) == "ok"
    assert len(calls) == 3


def test_retry_gives_up_after_attempts_and_reraises():
    calls = []

    def down():
        calls.append(1)
        raise ServiceUnavailable("still down")

    with pytest.raises(ServiceUnavailable, match="still down"):
        retry(down, attempts=4, backoff=Backoff(initial=0.001, jitter=0), sleep=lambda s: None)
    assert len(calls) == 4


def test_retry_does_not_retry_other_errors():
    calls = []

    def bug():
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retry(bug, attempts=5, sleep=lambda s: None)
    assert len(calls) == 1


def test_retry_stops_when_asked():
    with pytest.raises(ServiceUnavailable):
        retry(lambda: (_ for _ in ()).throw(ServiceUnavailable("x")), attempts=None, should_stop=lambda: True)


def test_breaker_opens_after_threshold_and_refuses_calls():
    clock, changes = Clock(), []
    b = CircuitBreaker(failure_threshold=3, reset_timeout=2.0, clock=clock,
                       on_change=lambda old, new: changes.append((old, new)))
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    assert b.seconds_until_trial() == 2.0
    assert changes == [(BreakerState.CLOSED, BreakerState.OPEN)]


def test_breaker_half_open_trial_success_closes():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_timeout=2.0, clock=clock)
    b.record_failure()
    clock.now = 2.0
    assert b.state is BreakerState.HALF_OPEN and b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.consecutive_failures == 0


def test_breaker_half_open_trial_failure_reopens_with_longer_timeout():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_timeout=2.0, max_reset_timeout=5.0, clock=clock)
    b.record_failure()
    clock.now = 2.0
    assert b.state is BreakerState.HALF_OPEN
    b.record_failure()
    assert b.state is BreakerState.OPEN and b.reset_timeout == 4.0
    clock.now = 5.9
    assert b.state is BreakerState.OPEN
    clock.now = 6.0
    assert b.state is BreakerState.HALF_OPEN
    b.record_failure()
    assert b.reset_timeout == 5.0  # capped
    assert b.times_opened == 3
    assert [s.level for s in BreakerState] == [0, 1, 2]

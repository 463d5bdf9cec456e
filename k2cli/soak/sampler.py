"""One soak sample: the children's memory from psutil and their counters from /metrics, as increases since
the baseline read when the run became ready."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from k2cli.soak import criteria
from k2cli.soak.child import Child
from k2cli.soak.profile import MB, ConsumerSample, RunRecord, Sample
from k2cli.soak.scrape import ScrapeError, StreamReading, consumer_reading, fetch, stream_reading

CONSUMER_RATE_WINDOW_S = 30.0


class Sampler:
    """Reads the stream (and consumer) child into Samples; counts failed scrapes in the run record."""

    def __init__(self, exchange: str, record: RunRecord, stream: Child, consumer: Child | None) -> None:
        self.exchange, self.record, self.stream, self.consumer = exchange, record, stream, consumer

    def _read_stream(self) -> tuple[StreamReading | None, str | None]:
        try:
            return stream_reading(fetch(self.stream.metrics_url), self.exchange), None
        except ScrapeError as exc:
            self.record.scrape_failures += 1
            return None, str(exc)

    def baseline(self) -> None:
        """Record the counters at the start, so samples count from zero."""
        reading, _ = self._read_stream()
        base: dict[str, Any] = {}
        if reading is not None:
            base = {"messages": reading.messages, "reconnects": dict(reading.reconnects),
                    "rotations": reading.rotations, "pings": reading.pings, "pong_timeouts": reading.pong_timeouts,
                    "integrity_errors": reading.integrity_errors}
        if self.consumer is not None:
            try:
                c = consumer_reading(fetch(self.consumer.metrics_url))
                base["consumer_consumed"] = c.consumed
            except ScrapeError:
                pass
        self.record.baseline = base

    def _delta(self, value: float | None, key: str) -> float | None:
        if value is None:
            return None
        base = self.record.baseline.get(key)
        return value - (base or 0.0)

    def sample(self, elapsed: float, history: Sequence[Sample]) -> Sample:
        """The sample at `elapsed` seconds; history is every sample taken before it."""
        prev = history[-1] if history else None
        rss, vms = self.stream.memory()
        reading, error = self._read_stream()
        s = Sample(timestamp=time.time(), elapsed_s=round(elapsed, 3), rss_bytes=rss, vms_bytes=vms,
                   rss_mb=round(rss / MB, 3), vms_mb=round(vms / MB, 3), scrape_error=error)
        if reading is not None:
            self._stream_counters(s, reading, elapsed, prev)
        if self.consumer is not None:
            s.consumer = self._sample_consumer(self.consumer, elapsed, history)
        steady = [x for x in [*history, s] if x.elapsed_s >= self.record.warmup_s]
        if len(steady) >= criteria.MIN_TREND_SAMPLES:
            s.leak_score = round(criteria.leak_score_of(steady), 4)
        return s

    def _stream_counters(self, s: Sample, reading: StreamReading, elapsed: float, prev: Sample | None) -> None:
        s.messages = self._delta(reading.messages, "messages")
        base_rc = self.record.baseline.get("reconnects") or {}
        s.reconnects = {k: v - base_rc.get(k, 0.0) for k, v in reading.reconnects.items()}
        s.drops = sum(s.reconnects.values())
        s.rotations = self._delta(reading.rotations, "rotations")
        s.pings = self._delta(reading.pings, "pings")
        s.pong_timeouts = self._delta(reading.pong_timeouts, "pong_timeouts")
        s.integrity_errors = self._delta(reading.integrity_errors, "integrity_errors")
        s.reported_leak_score = reading.leak_score
        before = prev.messages if prev is not None and prev.messages is not None else 0.0
        dt = elapsed - (prev.elapsed_s if prev is not None else 0.0)
        if s.messages is not None and dt > 0:
            s.rate_msg_s = round((s.messages - before) / dt, 3)

    def _sample_consumer(self, consumer: Child, elapsed: float, history: Sequence[Sample]) -> ConsumerSample:
        crss, cvms = consumer.memory()
        c = ConsumerSample(rss_bytes=crss, vms_bytes=cvms, rss_mb=round(crss / MB, 3))
        try:
            r = consumer_reading(fetch(consumer.metrics_url))
        except ScrapeError as exc:
            self.record.scrape_failures += 1
            c.scrape_error = str(exc)
            return c
        c.consumed = self._delta(r.consumed, "consumer_consumed")
        c.written, c.lag, c.dlq_entries, c.breaker_state = r.written, r.lag, r.dlq_entries, r.breaker_state
        # The consumer counts per committed batch (every few seconds), so its rate is taken over a trailing
        # window of at least CONSUMER_RATE_WINDOW_S rather than one short interval (which reads 0, 130, 0 ...).
        since, before = 0.0, 0.0
        for old in reversed(history):
            if old.consumer is not None and old.consumer.consumed is not None and \
                    elapsed - old.elapsed_s >= CONSUMER_RATE_WINDOW_S:
                since, before = old.elapsed_s, old.consumer.consumed
                break
        if c.consumed is not None and elapsed > since:
            c.rate_msg_s = round((c.consumed - before) / (elapsed - since), 3)
        return c

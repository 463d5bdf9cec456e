"""The stream's figures: summary and Prometheus metrics brought up to date, the live tick, memory sampling.

The hot path only bumps plain counters (the summary's, the pipeline's per-symbol `received`, the dedup's
duplicates); `refresh` turns them into metrics a few times a second, off the hot path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from k2cli.exchanges.base import ERROR_TYPES
from k2cli.exchanges.session import RECONNECT_REASONS, ROTATION_REASONS, Session
from k2cli.observe.metrics import StreamMetrics
from k2cli.settings import Settings
from k2cli.stream.dedup import Deduplicator
from k2cli.stream.kafka_sink import KafkaSink
from k2cli.stream.options import StreamOptions
from k2cli.stream.pipeline import FramePipeline
from k2cli.stream.summary import StoppedBy, StreamSummary

TICK = 0.1  # seconds between producer polls and bound checks


class StreamMonitor:
    """Keeps the summary and the metrics current; runs the ticker, the memory sampler and the debug leak."""

    def __init__(self, settings: Settings, options: StreamOptions, metrics: StreamMetrics, summary: StreamSummary,
                 dedup: Deduplicator, symbol_label: Callable[[str], str],
                 on_tick: Callable[[StreamSummary], None] | None = None) -> None:
        self.settings = settings
        self.opts = options
        self.metrics = metrics
        self.summary = summary
        self.dedup = dedup
        self.symbol_label = symbol_label  # exchange symbol -> the stored symbol, the metrics' label
        self.on_tick = on_tick
        self.sink: KafkaSink | None = None  # attached once set up
        self.pipeline: FramePipeline | None = None
        self.session: Session | None = None
        self.started = 0.0  # time.monotonic() at the start of streaming
        self._produced_reported = 0
        self._duplicates_reported = 0
        self._received_reported: dict[str, int] = {}
        self._leak: list[bytearray] = []

    def prime_labels(self) -> None:
        """Create every labelled series at zero, so dashboards and alerts see them before the first event."""
        m = self.metrics
        for reason in RECONNECT_REASONS:
            m.reconnects.labels(reason)
        for reason in ROTATION_REASONS:
            m.rotations.labels(reason)
        for error_type in ERROR_TYPES:
            m.frame_errors.labels(self.opts.exchange, error_type)
        for symbol in self.opts.symbols:
            m.messages_received.labels(self.symbol_label(symbol))

    def refresh(self, final: bool = False) -> None:
        """Bring the summary and the metrics up to date."""
        self._refresh_kafka()
        self._refresh_counts()
        summ, m = self.summary, self.metrics
        if self.pipeline is not None and self.pipeline.last_ingest:
            m.last_message.set(self.pipeline.last_ingest / 1e6)
        elapsed = time.monotonic() - self.started if self.started else 0.0
        summ.duration_seconds = round(elapsed, 3)
        summ.trades_per_second = round(summ.produced / elapsed, 1) if elapsed > 0 else 0.0
        primary = self.session.primary if self.session else None
        summ.connected = bool(primary is not None and not primary.done.is_set() and not final)
        m.connection_status.set(1 if summ.connected else 0)
        loop_now = asyncio.get_running_loop().time()
        m.lifetime.set(primary.age(loop_now) if summ.connected and primary is not None else 0)

    def _refresh_kafka(self) -> None:
        summ, m, sink = self.summary, self.metrics, self.sink
        delivered = sink.producer.delivered if sink else 0
        if delivered > self._produced_reported:
            m.produced.inc(delivered - self._produced_reported)
            self._produced_reported = delivered
            if sink:
                sink.producer.note_progress()
        summ.produced = delivered
        summ.buffered = sink.buffered if sink else 0
        m.queue.set(summ.buffered)
        summ.kafka_down = bool(sink and sink.producer.broker_down)

    def _refresh_counts(self) -> None:
        summ, m = self.summary, self.metrics
        duplicates = self.dedup.duplicates
        if duplicates > self._duplicates_reported:
            m.duplicates.inc(duplicates - self._duplicates_reported)
            self._duplicates_reported = duplicates
        summ.duplicates_dropped = duplicates
        received = self.pipeline.received if self.pipeline else {}
        for symbol, count in received.items():
            done = self._received_reported.get(symbol, 0)
            if count > done:
                m.messages_received.labels(self.symbol_label(symbol)).inc(count - done)
                self._received_reported[symbol] = count

    async def ticker(self, request_stop: Callable[[StoppedBy], None]) -> None:
        """Serve the producer's reports, stop at --duration, refresh and call on_tick every tick_interval."""
        next_tick = 0.0
        while True:
            await asyncio.sleep(TICK)
            if self.sink is not None:
                self.sink.producer.poll(0)
                if self.sink.producer.refused is not None:  # wrong credentials or TLS: retrying cannot help
                    raise self.sink.producer.refused
            now = time.monotonic()
            if self.opts.duration and now - self.started >= self.opts.duration:
                request_stop("duration")
            if now >= next_tick:
                next_tick = now + self.opts.tick_interval
                self.refresh()
                if self.on_tick is not None:
                    self.on_tick(self.summary)

    async def memory(self) -> None:
        """Sample RSS, VMS and the leak score every memory_sample_interval seconds."""
        from k2cli.observe.memory import MemorySampler

        sampler = MemorySampler()
        while True:
            reading = sampler.sample(time.monotonic())
            self.metrics.rss.set(reading.rss)
            self.metrics.vms.set(reading.vms)
            self.metrics.leak_score.set(reading.score)
            self.summary.rss_bytes = reading.rss
            self.summary.leak_score = round(reading.score, 4)
            await asyncio.sleep(self.settings.memory_sample_interval)

    async def debug_leak(self) -> None:
        """Test-only fault: retain memory at a steady rate so leak detection can be validated."""
        per_second = int(self.settings.debug_leak_mb_per_min * 2**20 / 60)
        while True:
            self._leak.append(bytearray(b"\xa5") * per_second)  # written, so it is resident
            await asyncio.sleep(1.0)

"""Periodic chores of the consumer: lag and memory gauges, and the paced cyclic garbage collection."""

from __future__ import annotations

import gc
from typing import Any

from k2cli.lake.offsets import TopicPartition
from k2cli.observe.consumer_metrics import ConsumerMetrics

HOUSEKEEPING_INTERVAL = 2.0


class GcPacer:
    """Runs the cyclic collector (disabled in the hot loop) at most every so many seconds."""

    def __init__(self) -> None:
        self.last = 0.0

    def collect_if_due(self, now: float, every: float) -> None:
        """gc.collect() if the last collection is `every` seconds old."""
        if now - self.last >= every:
            gc.collect()
            self.last = now


class Housekeeping:
    """Every HOUSEKEEPING_INTERVAL: lag per partition and in total, RSS, and a collection each minute."""

    def __init__(self, metrics: ConsumerMetrics, gc_pacer: GcPacer) -> None:
        self._metrics = metrics
        self._gc = gc_pacer
        self._last = 0.0
        self.caught_up = False  # at the last check: partitions owned, each read up to its end offset

    def run_if_due(self, now: float, consumer: Any, positions: dict[TopicPartition, int | None]) -> None:
        """Do the chores if they are due."""
        if now - self._last < HOUSEKEEPING_INTERVAL:
            return
        self._last = now
        self._report_lag(consumer, positions)
        try:
            import psutil

            self._metrics.rss.set(psutil.Process().memory_info().rss)
        except Exception:
            pass
        self._gc.collect_if_due(now, 60.0)

    def _report_lag(self, consumer: Any, positions: dict[TopicPartition, int | None]) -> None:
        from confluent_kafka import TopicPartition as KTP

        total, known = 0, 0
        for (topic, part), position in list(positions.items()):
            try:
                low, high = consumer.get_watermark_offsets(KTP(topic, part), cached=True)
            except Exception:
                continue
            if high is None or high < 0:
                continue
            lag = max(0, high - (position if position is not None else max(low, 0)))
            total += lag
            known += 1
            self._metrics.lag.labels(topic, str(part)).set(lag)
        self._metrics.total_lag.set(total)
        self.caught_up = bool(positions) and known == len(positions) and total == 0

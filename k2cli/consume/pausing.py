"""Backpressure: consumption of every assigned partition paused while nothing more can be taken."""

from __future__ import annotations

from typing import Any

from k2cli.observe.consumer_metrics import ConsumerMetrics


class Pauser:
    """Pauses and resumes the consumer's whole assignment, with the k2_consumer_paused gauge."""

    def __init__(self, metrics: ConsumerMetrics) -> None:
        self.paused = False
        self.consumer: Any = None
        self._metrics = metrics

    def set(self, paused: bool) -> None:
        """Pause or resume the assignment (nothing when already so)."""
        if paused == self.paused:
            return
        assignment = self.consumer.assignment()
        if paused:
            self.consumer.pause(assignment)
        else:
            self.consumer.resume(assignment)
        self.paused = paused
        self._metrics.paused.set(1 if paused else 0)

    def hold_new(self, partitions: list[Any]) -> None:
        """Keep newly assigned partitions paused (while paused, or when their offsets are unknown)."""
        self.consumer.pause(partitions)
        self.paused = True

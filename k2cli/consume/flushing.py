"""Handing the filled batch to the committer thread, its poison records dead-lettered first."""

from __future__ import annotations

from collections.abc import Callable

from k2cli.consume.accumulator import Accumulator
from k2cli.consume.committer import Committer
from k2cli.consume.deadletters import DeadLetters
from k2cli.lake.offsets import TopicPartition

Advance = Callable[[dict[TopicPartition, tuple[int, int]]], dict[TopicPartition, int | None]]


class Flusher:
    """Flushes the accumulator's batch: dead letters (durably, once), then the commit (one in flight)."""

    def __init__(self, acc: Accumulator, committer: Committer, dead_letters: DeadLetters, advance: Advance) -> None:
        self._acc = acc
        self._committer = committer
        self._dead_letters = dead_letters
        self._advance = advance

    def __call__(self, force: bool = False) -> bool:
        """Hand the batch to the committer thread; False while an earlier batch still cannot be written."""
        acc, committer = self._acc, self._committer
        acc.drain()
        batch = acc.batch
        assert batch is not None and committer.writer is not None
        if not len(batch):
            return True
        if committer.busy:
            committer.settle(block=True, force=force)
            if committer.busy:
                return False
            batch = acc.batch  # a conflict may have replaced it
            assert batch is not None
            if not len(batch):
                return True
        built = batch.build()
        if built.poison and not batch.dlq_written:
            self._dead_letters.write(built.poison)  # DLQWriteError stops the consumer: nothing committed past it
            batch.dlq_written = True
        committer.submit(batch, built, self._advance(built.ranges))
        acc.new_batch()
        return True

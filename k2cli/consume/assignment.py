"""Partition assignment: resume positions from the table's snapshot summary, rebalances, and seeking back.

On every assignment the partitions are sought to the offsets recorded in the table (the beginning when there
are none); Kafka's committed offsets are never used. A rebalance or a conflict with unwritten records drops
them and re-reads every owned partition from the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from k2cli.consume.accumulator import Accumulator
from k2cli.consume.committer import BACKOFF, Committer
from k2cli.consume.pausing import Pauser
from k2cli.lake.offsets import TopicPartition
from k2cli.lake.writer import WriteUnavailable
from k2cli.observe.consumer_metrics import ConsumerMetrics
from k2cli.reliability.retry import retry

log = logging.getLogger("k2.consume")


class Assignment:
    """The owned partitions: `positions` (next offset to read), `expected` (the table offset a commit fences on)."""

    def __init__(self, positions: dict[TopicPartition, int | None], metrics: ConsumerMetrics, *,
                 committer: Committer, accumulator: Accumulator, pauser: Pauser,
                 flush: Callable[[bool], bool], stopping: Callable[[], bool], clock: Callable[[], float]) -> None:
        self.positions = positions
        self.expected: dict[TopicPartition, int | None] = {}
        self.rebalanced = False
        self.consumer: Any = None
        self._metrics = metrics
        self._committer = committer
        self._acc = accumulator
        self._pauser = pauser
        self._flush = flush
        self._stopping = stopping
        self._clock = clock

    def advance(self, ranges: dict[TopicPartition, tuple[int, int]]) -> dict[TopicPartition, int | None]:
        """The table offsets a batch with these ranges starts from; the next batch continues after it."""
        expected = {tp: self.expected.get(tp) for tp in ranges}
        for tp, (_, nxt) in ranges.items():  # the next batch continues from here if this commit lands
            if tp in self.expected:
                self.expected[tp] = nxt
        return expected

    def on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Seek the new partitions to the table's offsets."""
        from confluent_kafka import OFFSET_BEGINNING

        self.rebalanced = True
        self._committer.settle(block=True)  # the writer is the committer thread's until its commit is done
        if self._committer.busy:  # unwritable: everything restarts from the table offsets read below
            self.reset_to_table(reason="assignment with unwritten records")
        offsets = self.table_offsets()
        for p in partitions:
            tp = (p.topic, p.partition)
            recorded = offsets.get(tp) if offsets is not None else None
            p.offset = recorded if recorded is not None else OFFSET_BEGINNING
            self.expected[tp] = recorded
            self.positions[tp] = recorded
        consumer.assign(partitions)
        if self._pauser.paused or offsets is None:
            self._pauser.hold_new(partitions)
        self._metrics.assigned.set(len(self.positions))
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]@{p.offset}" for p in partitions) or "nothing")

    def on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Commit what can be committed of the revoked partitions, drop the rest, forget them."""
        self.rebalanced = True
        revoked = {(p.topic, p.partition) for p in partitions}
        self._acc.drain()
        self._acc.put_back_pending()
        self._committer.settle(block=True, force=True)
        batch = self._acc.batch
        if batch is not None and len(batch) and set(batch.ranges) & revoked and self._flush(True):
            self._committer.settle(block=True, force=True)
        if self._committer.busy or self._holds(revoked):
            # Not writable now: forget what is unwritten; the new owners read it again from the table offsets.
            self.reset_to_table(exclude=revoked, reason="rebalance with unwritten records")
        self._forget(revoked)
        self._metrics.assigned.set(len(self.positions))

    def on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions taken away without a revoke: drop what is unwritten of them."""
        self.rebalanced = True
        lost = {(p.topic, p.partition) for p in partitions}
        self._acc.drain()
        self._acc.put_back_pending()
        self._committer.settle(block=True)
        if self._committer.busy or self._holds(lost):
            self.reset_to_table(exclude=lost, reason="partitions lost")
        self._forget(lost)
        log.warning("partitions lost: %s", ", ".join(f"{t}[{p}]" for t, p in sorted(lost)))

    def release_all(self) -> None:
        """Before a new client joins: own nothing, keep nothing unwritten (it is read again from the table)."""
        self._acc.drain()
        self._acc.pending = []  # never decoded: not counted
        self._committer.settle(block=True)
        self._drop_unwritten("new Kafka client")
        self._forget(set(self.positions))
        self._pauser.paused = False
        self._metrics.assigned.set(0)

    def _holds(self, tps: set[TopicPartition]) -> bool:
        batch = self._acc.batch
        return batch is not None and bool(set(batch.ranges) & tps)

    def _forget(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self.positions.pop(tp, None)
            self.expected.pop(tp, None)

    def table_offsets(self) -> dict[TopicPartition, int] | None:
        """The table's offsets, retried while the catalog is down (None if a stop came first)."""
        committer = self._committer

        def read() -> dict[TopicPartition, int]:
            assert committer.writer is not None
            offsets = committer.writer.offsets(refresh=True)
            committer.reload_dedup()  # the trade ids of the same snapshot
            return offsets

        def note(attempt: int, exc: BaseException, wait: float) -> None:
            committer.last_error = str(exc)
            log.warning("cannot read offsets from the table (retrying in %.1fs): %s", wait, exc)

        try:
            return retry(read, retry_on=(WriteUnavailable,), attempts=None, backoff=BACKOFF,
                         should_stop=self._stopping, clock=self._clock, on_retry=note)
        except WriteUnavailable as exc:  # only when stopping
            committer.last_error = str(exc)
            return None

    def reset_to_table(self, exclude: set[TopicPartition] | None = None, reason: str = "") -> None:
        """Forget everything not yet committed and re-read every owned partition from the table's offsets."""
        self._acc.drain()
        self._acc.put_back_pending()
        self._drop_unwritten(reason)
        offsets = self.table_offsets() or {}
        for tp in list(self.positions):
            recorded = offsets.get(tp)
            self.expected[tp] = recorded
            self.positions[tp] = recorded
            if not (exclude and tp in exclude):
                self._seek(tp, recorded)

    def _drop_unwritten(self, reason: str) -> None:
        """Forget the batch being filled and the commit that has not landed (both are read again)."""
        dropped = self._acc.unwritten() + self._committer.drop()
        self._acc.uncount(dropped)
        if dropped:
            log.warning("%s; %d unwritten records dropped, read again from the table offsets", reason, dropped)
        self._acc.new_batch()

    def seek_back(self, messages: list[Any]) -> None:
        """Rewind the owned partitions these messages came from to our next expected offset (nothing is taken)."""
        for tp in {(m.topic(), m.partition()) for m in messages if m.error() is None}:
            if tp in self.positions:
                self._seek(tp, self.positions[tp], "seek back")

    def _seek(self, tp: TopicPartition, offset: int | None, what: str = "seek") -> None:
        from confluent_kafka import OFFSET_BEGINNING
        from confluent_kafka import TopicPartition as KTP

        try:
            self.consumer.seek(KTP(tp[0], tp[1], offset if offset is not None else OFFSET_BEGINNING))
        except Exception as exc:
            log.debug("%s %s failed: %s", what, tp, exc)

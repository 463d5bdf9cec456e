"""The committer: one batch at a time appended to Iceberg with the offsets, in a thread, behind a breaker.

A batch's valid rows and the offsets of every partition go into one snapshot (`TableWriter.commit`, fenced
against other writers) while the next batch fills. A failed write is retried with backoff behind the circuit
breaker, consumption paused meanwhile; a conflict (another writer committed those offsets) hands over to
`on_conflict`, which re-reads from the table. Once a snapshot has landed its offsets go to Kafka too (lag
monitoring only), and the batch is counted in the statistics and metrics.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from k2cli.consume.batch import Batch, Built, Poison
from k2cli.consume.dedup import Deduplicator
from k2cli.consume.housekeeping import GcPacer
from k2cli.consume.options import ConsumeOptions
from k2cli.consume.pausing import Pauser
from k2cli.consume.sequences import check_table
from k2cli.consume.stats import ConsumeStats
from k2cli.lake.dedupstate import DedupState
from k2cli.lake.offsets import TopicPartition
from k2cli.lake.writer import CommitConflict, TableWriter, WriteUnavailable
from k2cli.observe.consumer_metrics import ConsumerMetrics, exchange_label
from k2cli.reliability.breaker import BreakerState, CircuitBreaker
from k2cli.reliability.retry import Backoff, Retries
from k2cli.reliability.sequence import GAP_EVENTS, SequenceTracker, describe_group, grouped
from k2cli.settings import Settings

log = logging.getLogger("k2.consume")

# the consumer's backoff: start-up, failed writes, an unreachable registry, reading the table's offsets
BACKOFF = Backoff(initial=0.1, maximum=5.0, jitter=0.5)


@dataclass
class _Commit:
    """A batch handed to the committer thread (future None: its last attempt failed, to be retried)."""

    batch: Batch
    built: Built
    expected: dict[TopicPartition, int | None]
    dedup: DedupState | None = None  # the trade ids this batch adds (None: deduplication off)
    future: Future[Any] | None = None
    started: float = 0.0


class Committer:
    """Commits batches to the table, one in flight; retries failed writes with backoff behind a breaker."""

    def __init__(self, settings: Settings, options: ConsumeOptions, stats: ConsumeStats, metrics: ConsumerMetrics,
                 *, retries: Retries, pauser: Pauser, gc_pacer: GcPacer, clock: Callable[[], float],
                 on_conflict: Callable[[str], None]) -> None:
        self.settings = settings
        self.options = options
        self.writer: TableWriter | None = None
        self.consumer: Any = None
        self.current: _Commit | None = None
        self.last_error = ""
        self._stats = stats
        self._metrics = metrics
        self._retries = retries
        self._pauser = pauser
        self._gc = gc_pacer
        self._clock = clock
        self._on_conflict = on_conflict
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k2-commit")
        self.dedup = Deduplicator() if options.dedup else None
        self._tracker = SequenceTracker(gap_large_threshold=settings.gap_large_threshold,
                                        reset_quiet_seconds=settings.sequence_reset_quiet_seconds)
        self.breaker = CircuitBreaker("iceberg", failure_threshold=settings.breaker_failure_threshold,
                                      reset_timeout=settings.breaker_reset_timeout,
                                      on_change=self._breaker_changed, clock=clock)

    def open_table(self) -> TableWriter:
        """Open the table through the catalog (raises ServiceUnavailable while it is down)."""
        from k2cli.lake.catalog import open_catalog

        label = f"{self.options.group}/{self._stats.instance_id}"
        self.writer = TableWriter(open_catalog(self.settings), self.options.table,
                                  snapshots_to_keep=self.settings.snapshots_to_keep,
                                  expire_step=self.settings.snapshot_expire_step, consumer_label=label)
        return self.writer

    @property
    def busy(self) -> bool:
        """Whether a batch is committing or waiting to be retried."""
        return self.current is not None

    @property
    def failing(self) -> bool:
        """Whether the batch's last attempt failed (it waits for the backoff and the breaker)."""
        return self.current is not None and self.current.future is None

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        self._metrics.breaker_state.labels("iceberg").set(new.level)
        if new is BreakerState.OPEN:
            self._stats.breaker_opened += 1
            log.warning("Iceberg write breaker OPEN after %d failed writes; consumption paused for %.1fs (%s)",
                        self.breaker.consecutive_failures, self.breaker.reset_timeout, self.last_error)
        elif new is BreakerState.CLOSED and old is not BreakerState.CLOSED:
            log.warning("Iceberg write breaker CLOSED: writes succeed again, consumption resumed")

    def submit(self, batch: Batch, built: Built, expected: dict[TopicPartition, int | None]) -> None:
        """Start committing a built batch without its duplicate trades (no other batch may be in flight)."""
        delta = None
        if self.dedup is not None:
            filtered = self.dedup.filter(built.table)
            delta = filtered.delta
            if filtered.keep is not None:
                built = built.without(filtered.table, filtered.keep, batch.row_topics(), filtered.duplicates)
                log.info("%d duplicate trades not written (%s)", filtered.dropped,
                         ", ".join(f"{e} {n}" for e, n in sorted(filtered.duplicates.items())))
        self.current = _Commit(batch, built, expected, delta)
        self._submit()

    def reload_dedup(self) -> None:
        """Take the trade ids in the table as last read (after reading its offsets)."""
        if self.dedup is not None and self.writer is not None:
            self.dedup.load(self.writer.dedup_state())

    def _submit(self) -> None:
        c = self.current
        assert c is not None and self.writer is not None
        c.started = time.perf_counter()
        c.future = self._executor.submit(self.writer.commit, c.built.table, c.built.ranges, c.expected,
                                         records=c.built.records, dlq_records=len(c.built.poison), dedup=c.dedup)

    def settle(self, block: bool, force: bool = False) -> None:
        """Take the outcome of the batch being committed; retry a failed one when the backoff and breaker allow."""
        c = self.current
        if c is None:
            return
        if c.future is None:
            if not self.breaker.allow() or (not force and not self._retries.ready(self._clock())):
                return
            self._submit()
        assert c.future is not None
        if not block and not c.future.done():
            return
        try:
            result = c.future.result()
        except CommitConflict as exc:
            self._stats.conflicts += 1
            self._metrics.conflicts.inc()
            self._on_conflict(str(exc))  # drops this batch and the one being filled
            return
        except WriteUnavailable as exc:
            c.future = None
            self._write_failed(exc)
            return
        self.current = None
        self._metrics.write_duration.observe(time.perf_counter() - c.started)
        self._committed(c.built, result)

    def drop(self) -> int:
        """Forget the batch not committed; how many records it held."""
        if self.current is None:
            return 0
        records, self.current = self.current.built.records, None
        return records

    def _write_failed(self, exc: WriteUnavailable) -> None:
        self.last_error = str(exc)
        self._stats.add_error("iceberg_write")
        self._metrics.errors.labels("iceberg_write").inc()
        self.breaker.record_failure()
        wait = self._retries.failed()
        self._pauser.set(True)
        log.warning("Iceberg write failed (attempt %d, breaker %s; retrying in %.1fs): %s",
                    self._retries.failures, self.breaker.state, wait, exc)

    def _committed(self, built: Built, result: Any) -> None:
        from confluent_kafka import TopicPartition as KTP

        self._retries.reset()
        self.breaker.record_success()
        self._count(built, result)
        self._track_sequences(built)
        self._count_duplicates(built)
        log.info("committed snapshot %s: %d rows, %d dead-lettered, %s in %.0f ms%s", result.snapshot_id,
                 built.table.num_rows, len(built.poison),
                 ", ".join(f"{t}[{p}] {a}..{b}" for (t, p), (a, b) in sorted(built.ranges.items())),
                 result.seconds * 1000, f", {result.expired} snapshots expired" if result.expired else "")
        try:
            self.consumer.commit(offsets=[KTP(t, p, nxt) for (t, p), (_, nxt) in built.ranges.items()],
                                 asynchronous=True)
        except Exception as exc:  # lag monitoring only; the table holds the truth
            log.debug("Kafka offset commit failed: %s", exc)
        self._pauser.set(False)
        self._gc.collect_if_due(self._clock(), 1.0)

    def _count(self, built: Built, result: Any) -> None:
        """Statistics and metrics of a committed batch."""
        stats, metrics = self._stats, self._metrics
        stats.written += built.table.num_rows
        self._count_dead_lettered(built.poison)
        stats.snapshots += 0 if result.already_committed else 1
        stats.snapshots_expired += result.expired
        stats.commit_seconds.append(result.seconds)
        stats.commit_retries += result.attempts - 1
        if len(stats.commit_seconds) > 100_000:
            del stats.commit_seconds[:50_000]
        metrics.snapshots.inc()
        if result.expired:
            metrics.snapshots_expired.inc(result.expired)
        metrics.batch_size.observe(built.records)
        consumed = dict(built.topics_written)
        for topic, n in built.topics_written.items():
            metrics.written.labels(topic).inc(n)
        for p in built.poison:
            consumed[p.topic] = consumed.get(p.topic, 0) + 1
        for topic, n in consumed.items():
            metrics.consumed.labels(topic).inc(n)

    def _count_dead_lettered(self, poison: list[Poison]) -> None:
        """Statistics and metrics of a committed batch's poison records."""
        self._stats.dlq_entries += len(poison)
        for p in poison:
            self._stats.add_error(p.error_type)
            self._metrics.dlq_entries.labels(p.error_type).inc()
            self._metrics.errors.labels(p.error_type).inc()

    def _track_sequences(self, built: Built) -> None:
        events = check_table(self._tracker, built.table)
        stats = self._tracker.stats
        self._stats.sequence_gaps = stats.gaps
        self._stats.sequence_events = {k: v for k, v in stats.events.items() if v}
        # One line and one increment per (key, event) and batch: a symbol spread over partitions (its sequence
        # interleaved) makes nearly every record an event, and a line per record cut throughput fourfold.
        for (exchange, _, event), group in grouped(events).items():
            label = exchange_label(exchange)
            self._metrics.sequence_events.labels(label, event.value).inc(len(group))
            if event in GAP_EVENTS:
                self._metrics.sequence_gaps.labels(label).inc(len(group))
            log.warning("sequence %s", describe_group(group))

    def _count_duplicates(self, built: Built) -> None:
        """Duplicates are DUPLICATE sequence events too (the tracker never sees them: they are not written)."""
        if not built.duplicates:
            return
        events = self._tracker.stats.events
        for exchange, n in built.duplicates.items():
            label = exchange_label(exchange)
            self._stats.duplicates += n
            events["DUPLICATE"] = events.get("DUPLICATE", 0) + n
            self._metrics.duplicates.labels(label).inc(n)
            self._metrics.sequence_events.labels(label, "DUPLICATE").inc(n)
        self._stats.sequence_events = {k: v for k, v in events.items() if v}

    def close(self) -> int:
        """Wait (up to 30 s) for a commit in flight and stop the thread; records left uncommitted."""
        if self.current is not None and self.current.future is not None:
            with contextlib.suppress(Exception):
                self.current.future.result(timeout=30)
        self._executor.shutdown(wait=True)
        return self.current.built.records if self.current is not None else 0

"""The `k2 consume` engine: Kafka -> decode -> Arrow -> Iceberg, exactly once.

Loop: `consume(num_messages=...)` never asks for more than the batch or `max_messages` can take, so nothing is
over-fetched (anything delivered that cannot be taken is sought back); records are decoded chunk by chunk (in
worker processes for large batches) into a `Batch`; a batch is flushed when it is full, when its first record
is `flush_interval` old, at `max_messages`, on a rebalance and at shutdown. A flush (1) writes the batch's
poison records durably to the dead-letter queue, (2) hands the batch to the committer thread, which commits the
valid rows to Iceberg together with the offsets of every partition (`TableWriter.commit`, fenced against other
writers) while the next batch fills — one commit in flight, the next batch continuing from its offsets — and
(3) once it has landed, commits the offsets to Kafka asynchronously, for lag monitoring only. Resume positions
always come from the table: on every assignment the partitions are sought to the offsets recorded in the
snapshot summaries (the beginning when there are none).

A failing Iceberg write is retried with backoff behind a circuit breaker; while a batch cannot be written,
consumption is paused (`consumer.pause`): nothing is committed, nothing dead-lettered twice, nothing lost.
A conflict (another writer committed those offsets) or a rebalance with unwritten records drops what was not
committed and re-reads it from the table's offsets. An unwritable dead-letter queue stops the consumer
(DLQWriteError) before any offset moves past its records.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from k2cli.consume.batch import Batch, Built, ChunkResult, Poison, Reserved, decode_chunk, use_system_allocator
from k2cli.consume.decode import ValueDecoder
from k2cli.errors import ConfigError, K2Error, ServiceUnavailable
from k2cli.lake.offsets import TopicPartition
from k2cli.lake.writer import CommitConflict, TableWriter, WriteUnavailable
from k2cli.observe.consumer_metrics import ConsumerMetrics, exchange_label
from k2cli.reliability.breaker import BreakerState, CircuitBreaker
from k2cli.reliability.dlq import DeadLetterQueue, DLQEntry, iter_entries
from k2cli.reliability.retry import Backoff
from k2cli.reliability.sequence import GAP_EVENTS, SequenceTracker
from k2cli.settings import Settings, ensure_writable_dir

log = logging.getLogger("k2.consume")

MAX_CONSUME = 5_000  # messages per consume() call
POLL_TIMEOUT = 0.2  # seconds; bounds how long a stop request or a due flush waits
HOUSEKEEPING_INTERVAL = 2.0


class ConsumeFailed(K2Error):
    """The consumer stopped without writing everything it had read (the records will be read again)."""

    exit_code = 3


@dataclass
class ConsumeOptions:
    """What one `k2 consume` run does (settings give the defaults)."""

    topics: tuple[str, ...]
    group: str
    table: str
    batch_size: int
    flush_interval: float
    max_messages: int | None = None
    instance_id: str = ""
    startup_timeout: float = 30.0
    decode_workers: int = -1  # -1: 2 worker processes for batches of 5,000+ records on 2+ cores, else inline

    @property
    def workers(self) -> int:
        """How many decode worker processes to run (0: decode in the consumer process)."""
        if self.decode_workers >= 0:
            return self.decode_workers
        return 2 if self.batch_size >= 5000 and (os.cpu_count() or 1) >= 2 else 0

    def check(self) -> None:
        """Reject options that cannot work, naming the flag."""
        if not self.topics or any(not t.strip() for t in self.topics):
            raise ConfigError("--topics needs at least one topic name", setting="K2_CONSUMER_TOPICS")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}", setting="K2_BATCH_SIZE")
        if self.flush_interval <= 0:
            raise ConfigError(f"--flush-interval must be greater than 0, got {self.flush_interval}",
                              setting="K2_FLUSH_INTERVAL")
        if self.max_messages is not None and self.max_messages < 1:
            raise ConfigError(f"--max-messages must be at least 1, got {self.max_messages}")
        if not self.group:
            raise ConfigError("--group must not be empty", setting="K2_CONSUMER_GROUP")


@dataclass
class ConsumeStats:
    """What a run did; the statistics block."""

    consumed: int = 0
    written: int = 0
    dlq_entries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    sequence_gaps: int = 0
    sequence_events: dict[str, int] = field(default_factory=dict)
    snapshots: int = 0
    conflicts: int = 0
    snapshots_expired: int = 0
    breaker_opened: int = 0
    started: float = 0.0
    ended: float = 0.0
    startup_seconds: float = 0.0
    stopped_by: str = ""
    instance_id: str = ""
    commit_seconds: list[float] = field(default_factory=list)
    commit_retries: int = 0
    first_record: float = 0.0
    unwritten: int = 0

    @property
    def error_count(self) -> int:
        """All errors: records dead-lettered plus failed operations (retried writes, Kafka errors)."""
        return sum(self.errors.values())

    @property
    def duration(self) -> float:
        """Seconds from subscribing to the end of the run (or now)."""
        end = self.ended or time.monotonic()
        return max(0.0, end - self.started) if self.started else 0.0

    @property
    def throughput(self) -> float:
        """Records consumed per second."""
        return self.consumed / self.duration if self.duration > 0 else 0.0

    def add_error(self, error_type: str, n: int = 1) -> None:
        """Count n errors of a type."""
        self.errors[error_type] = self.errors.get(error_type, 0) + n

    def to_dict(self) -> dict[str, Any]:
        """The statistics as plain JSON values."""
        lat = self.commit_seconds
        return {
            "messages_consumed": self.consumed,
            "messages_written": self.written,
            "errors": self.error_count,
            "errors_by_type": dict(sorted(self.errors.items())),
            "sequence_gaps": self.sequence_gaps,
            "sequence_events": dict(sorted(self.sequence_events.items())),
            "duration_seconds": round(self.duration, 3),
            "throughput_msg_per_sec": round(self.throughput, 2),
            "dlq_entries": self.dlq_entries,
            "snapshots_committed": self.snapshots,
            "snapshots_expired": self.snapshots_expired,
            "commit_conflicts": self.conflicts,
            "commit_retries": self.commit_retries,
            "breaker_opened": self.breaker_opened,
            "commit_latency_ms": {
                "median": round(statistics.median(lat) * 1000, 1) if lat else None,
                "max": round(max(lat) * 1000, 1) if lat else None,
            },
            "startup_seconds": round(self.startup_seconds, 3),
            "first_record_seconds": round(self.first_record - self.started, 3) if self.first_record else None,
            "stopped_by": self.stopped_by,
            "instance_id": self.instance_id,
            "unwritten_records": self.unwritten,
        }


@dataclass
class _Commit:
    """A batch handed to the committer thread (future None: its last attempt failed, to be retried)."""

    batch: Batch
    built: Built
    expected: dict[TopicPartition, int | None]
    future: Future | None = None
    started: float = 0.0


class _DlqIndex:
    """(topic, partition, offset) of records already dead-lettered, so a re-read never writes a second entry."""

    def __init__(self, dlq: DeadLetterQueue) -> None:
        self._dlq = dlq
        self._seen: set[tuple[str, int, int]] | None = None

    def _load(self) -> set[tuple[str, int, int]]:
        if self._seen is None:
            seen: set[tuple[str, int, int]] = set()
            for entry in iter_entries(self._dlq.directory):
                src = entry.source or {}
                if entry.origin == "consume" and "topic" in src and "offset" in src:
                    try:
                        seen.add((str(src["topic"]), int(src["partition"]), int(src["offset"])))
                    except (TypeError, ValueError, KeyError):
                        continue
            self._seen = seen
        return self._seen

    def fresh(self, poison: list[Poison]) -> list[Poison]:
        """The poison records not dead-lettered before."""
        seen = self._load()
        return [p for p in poison if (p.topic, p.partition, p.offset) not in seen]

    def add(self, poison: list[Poison]) -> None:
        """Remember records just dead-lettered."""
        self._load().update((p.topic, p.partition, p.offset) for p in poison)


class ConsumeEngine:
    """Runs one consumer until max_messages, a stop request, or a fatal error."""

    def __init__(self, settings: Settings, options: ConsumeOptions, *, metrics: ConsumerMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        options.check()
        self.settings = settings
        self.options = options
        self.metrics = metrics or ConsumerMetrics()
        self.stats = ConsumeStats()
        self._clock = clock
        self._stop_reason: str | None = None
        self._consumer: Any = None
        self._writer: TableWriter | None = None
        self._decoder: ValueDecoder | None = None
        self._positions: dict[TopicPartition, int | None] = {}
        self._expected: dict[TopicPartition, int | None] = {}
        self._batch: Batch | None = None
        self._pending: list[Any] = []
        self._pool: Any = None
        self._commit: _Commit | None = None
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k2-commit")
        self._inflight: deque[tuple[Batch, Reserved, Any]] = deque()
        self._paused = False
        self._rebalanced = False
        self._failed = False
        self._next_attempt = 0.0
        self._write_failures = 0
        self._backoff = Backoff(initial=0.1, maximum=5.0, jitter=0.5)
        self._last_housekeeping = 0.0
        self._last_gc = 0.0
        self._dlq = DeadLetterQueue(settings.dlq_path, origin="consume")
        self._dlq_index = _DlqIndex(self._dlq)
        self._tracker = SequenceTracker(gap_large_threshold=settings.gap_large_threshold,
                                        reset_quiet_seconds=settings.sequence_reset_quiet_seconds)
        self.breaker = CircuitBreaker("iceberg", failure_threshold=settings.breaker_failure_threshold,
                                      reset_timeout=settings.breaker_reset_timeout,
                                      on_change=self._breaker_changed, clock=clock)
        self.last_error = ""
        self._kafka_warned: dict[str, float] = {}

    # ------------------------------------------------------------ control

    def request_stop(self, reason: str = "signal") -> None:
        """Ask the loop to finish (safe from a signal handler): the current batch is written, then it returns."""
        if self._stop_reason is None:
            self._stop_reason = reason

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop_reason is not None

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        self.metrics.breaker_state.labels("iceberg").set(new.level)
        if new is BreakerState.OPEN:
            self.stats.breaker_opened += 1
            log.warning("Iceberg write breaker OPEN after %d failed writes; consumption paused for %.1fs (%s)",
                        self.breaker.consecutive_failures, self.breaker.reset_timeout, self.last_error)
        elif new is BreakerState.CLOSED and old is not BreakerState.CLOSED:
            log.warning("Iceberg write breaker CLOSED: writes succeed again, consumption resumed")

    # ------------------------------------------------------------ setup

    def _until_ready(self, what: str, fn: Callable[[], Any]) -> Any:
        """Call fn, retrying transient failures with backoff for the startup timeout (or until stopped)."""
        deadline = self._clock() + self.options.startup_timeout
        attempt = 0
        while True:
            try:
                return fn()
            except ServiceUnavailable as exc:
                attempt += 1
                wait = self._backoff.delay(attempt - 1)
                if self.stopping or self._clock() + wait > deadline:
                    raise ServiceUnavailable(f"{what}: {exc}", setting=exc.setting) from None
                log.warning("%s (retrying in %.1fs): %s", what, wait, exc)
                self._sleep(wait)

    def _sleep(self, seconds: float) -> None:
        end = self._clock() + seconds
        while not self.stopping and self._clock() < end:
            time.sleep(min(0.05, max(0.0, end - self._clock())))

    def _open_table(self) -> TableWriter:
        from k2cli.lake.catalog import open_catalog

        label = f"{self.options.group}/{self.stats.instance_id}"
        return TableWriter(open_catalog(self.settings), self.options.table,
                           snapshots_to_keep=self.settings.snapshots_to_keep,
                           expire_step=self.settings.snapshot_expire_step, consumer_label=label)

    def _kafka_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.settings.kafka_bootstrap_servers,
            "group.id": self.options.group,
            "group.instance.id": self.stats.instance_id,
            "client.id": f"k2-consume-{self.stats.instance_id}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(self.settings.consumer_session_timeout * 1000),
            "heartbeat.interval.ms": max(500, int(self.settings.consumer_session_timeout * 1000 / 5)),
            "max.poll.interval.ms": 300_000,
            "queued.max.messages.kbytes": 16384,  # the prefetch queue: enough to keep up, bounded memory
            "queued.min.messages": 20000,
            "enable.partition.eof": False,
            "error_cb": self._on_kafka_error,
            "on_commit": self._on_commit,
        }

    def _on_kafka_error(self, err: Any) -> None:
        self.stats.add_error("kafka")
        self.metrics.errors.labels("kafka").inc()
        if err.fatal():
            self.last_error = f"Kafka fatal error: {err.str()}"
            log.error("%s", self.last_error)
            self.request_stop("kafka_fatal")
        else:
            self._warn_kafka(err.str())

    def _warn_kafka(self, text: str) -> None:
        """Log a Kafka error, each distinct one at most every 30 s (the client repeats them while they last)."""
        now = self._clock()
        if now - self._kafka_warned.get(text, -1e9) >= 30:
            self._kafka_warned[text] = now
            log.warning("Kafka: %s", text)

    def _on_commit(self, err: Any, partitions: Any) -> None:
        if err is not None:
            log.debug("Kafka offset commit (lag monitoring only) failed: %s", err)

    def _check_topics(self, consumer: Any) -> None:
        from confluent_kafka import KafkaException

        try:
            md = consumer.list_topics(timeout=5.0)
        except KafkaException as exc:
            raise ServiceUnavailable(f"Kafka broker unreachable at {self.settings.kafka_bootstrap_servers}: "
                                     f"{exc.args[0].str() if exc.args else exc}",
                                     setting="K2_KAFKA_BOOTSTRAP_SERVERS") from None
        missing = [t for t in self.options.topics if t not in md.topics or md.topics[t].error is not None]
        if missing:
            log.warning("topic(s) %s do not exist yet on %s; waiting for them", ", ".join(missing),
                        self.settings.kafka_bootstrap_servers)

    # ------------------------------------------------------------ rebalance callbacks

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        self._rebalanced = True
        self._settle(block=True)  # the writer is the committer thread's until its commit is done
        if self._commit is not None:  # unwritable: everything restarts from the table offsets read below
            self._reset_to_table(reason="assignment with unwritten records")
        offsets = self._table_offsets()
        for p in partitions:
            tp = (p.topic, p.partition)
            recorded = offsets.get(tp) if offsets is not None else None
            p.offset = recorded if recorded is not None else OFFSET_BEGINNING
            self._expected[tp] = recorded
            self._positions[tp] = recorded
        consumer.assign(partitions)
        if self._paused or offsets is None:
            consumer.pause(partitions)
            self._paused = True
        self.metrics.assigned.set(len(self._positions))
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]@{p.offset}" for p in partitions) or "nothing")

    def _table_offsets(self) -> dict[TopicPartition, int] | None:
        """The table's offsets, retried while the catalog is down (None if a stop came first)."""
        attempt = 0
        while True:
            try:
                assert self._writer is not None
                return self._writer.offsets(refresh=True)
            except WriteUnavailable as exc:
                self.last_error = str(exc)
                attempt += 1
                if self.stopping:
                    return None
                wait = self._backoff.delay(min(attempt - 1, 6))
                log.warning("cannot read offsets from the table (retrying in %.1fs): %s", wait, exc)
                self._sleep(wait)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._rebalanced = True
        revoked = {(p.topic, p.partition) for p in partitions}
        self._drain()
        self._put_back_pending()
        self._settle(block=True, force=True)
        batch = self._batch
        if batch is not None and len(batch) and set(batch.ranges) & revoked and self._flush(force=True):
            self._settle(block=True, force=True)
        if self._commit is not None or (self._batch is not None and set(self._batch.ranges) & revoked):
            # Not writable now: forget what is unwritten; the new owners read it again from the table offsets.
            self._reset_to_table(exclude=revoked, reason="rebalance with unwritten records")
        for tp in revoked:
            self._positions.pop(tp, None)
            self._expected.pop(tp, None)
        self.metrics.assigned.set(len(self._positions))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._rebalanced = True
        lost = {(p.topic, p.partition) for p in partitions}
        self._drain()
        self._put_back_pending()
        self._settle(block=True)
        if self._commit is not None or (self._batch is not None and set(self._batch.ranges) & lost):
            self._reset_to_table(exclude=lost, reason="partitions lost")
        for tp in lost:
            self._positions.pop(tp, None)
            self._expected.pop(tp, None)
        log.warning("partitions lost: %s", ", ".join(f"{t}[{p}]" for t, p in sorted(lost)))

    # ------------------------------------------------------------ the loop

    def run(self) -> ConsumeStats:
        """Consume until done; returns the statistics (raises K2Error on a fatal condition)."""
        from confluent_kafka import Consumer

        from k2cli.consume.membership import claim_instance_id
        from k2cli.kafka.registry import RegistryClient

        t0 = self._clock()
        ensure_writable_dir(self.settings.dlq_path, "K2_DLQ_DIR")
        claim = claim_instance_id(self.options.group, self.settings.kafka_bootstrap_servers,
                                  self.options.instance_id or self.settings.consumer_instance_id)
        self.stats.instance_id = claim.instance_id
        registry = RegistryClient(self.settings.schema_registry_url)
        gc_was_enabled = gc.isenabled()
        try:
            self._writer = self._until_ready("Iceberg catalog unavailable", self._open_table)
            if self.options.workers:
                from k2cli.consume.workers import DecodePool

                self._pool = DecodePool(self.options.workers, self.settings.schema_registry_url)
                self._pool.warm_up()
            else:
                self._decoder = ValueDecoder(registry)
            self._consumer = Consumer(self._kafka_config())
            self._until_ready("Kafka unavailable", lambda: self._check_topics(self._consumer))
            self._batch = Batch(self._positions, clock=self._clock)
            use_system_allocator()
            # Decoded records are acyclic: the cyclic collector only slows the hot loop down (see perf notes).
            gc.collect()
            gc.freeze()
            gc.disable()
            self._last_gc = self._clock()
            self._consumer.subscribe(list(self.options.topics), on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_lost)
            self.stats.started = self._clock()
            self.stats.startup_seconds = self.stats.started - t0
            self._loop()
            if self._stop_reason == "kafka_fatal":
                raise ConsumeFailed(self.last_error, setting="K2_KAFKA_BOOTSTRAP_SERVERS")
        except BaseException:
            self._failed = True
            raise
        finally:
            self.stats.ended = self._clock()
            try:
                self._shutdown()
            finally:
                if gc_was_enabled:
                    gc.enable()
                gc.unfreeze()
                registry.close()
                claim.close()
        return self.stats

    def _remaining(self) -> int | None:
        if self.options.max_messages is None:
            return None
        return max(0, self.options.max_messages - self.stats.consumed)

    def _loop(self) -> None:
        consumer, batch_size = self._consumer, self.options.batch_size
        while True:
            now = self._clock()
            if now - self._last_housekeeping >= HOUSEKEEPING_INTERVAL:
                self._housekeeping(now)
            batch = self._batch
            assert batch is not None
            remaining = self._remaining()
            if self.stopping:
                self._drain()
                self._settle(block=True, force=True)
                if self._flush(force=True):
                    self._settle(block=True, force=True)
                self.stats.stopped_by = self._stop_reason or "signal"
                return
            if self._commit is not None:
                self._settle(block=False)
            if self._inflight:
                self._collect(block=len(self._inflight) >= 2 * max(1, self.options.workers))
            if self._pending:
                self._retry_pending()
            full = len(batch) >= batch_size or (remaining == 0 and len(batch) > 0)
            if len(batch) and (full or batch.age() >= self.options.flush_interval):
                self._flush()
                batch = self._batch
            if remaining == 0 and not len(batch) and not self._pending and not self._inflight:
                self._settle(block=True)
                if self._commit is None:
                    self.stats.stopped_by = "max_messages"
                    return
                # the last batch's commit failed: it is retried below while consumption stays paused
            room = batch_size - len(batch) - len(self._pending)
            if remaining is not None:
                room = min(room, remaining - len(self._pending))
            failing = self._commit is not None and self._commit.future is None
            accepting = room > 0 and not self._pending and not failing and self._next_attempt <= now
            if not accepting:
                self._set_paused(True)
                self._rebalanced = False
                stray = consumer.consume(num_messages=1, timeout=0.1)  # serves callbacks; partitions are paused
                if stray:
                    self._seek_back(stray)
                continue
            self._set_paused(False)
            timeout = POLL_TIMEOUT
            if len(batch):
                timeout = max(0.0, min(timeout, self.options.flush_interval - batch.age()))
            self._rebalanced = False
            messages = consumer.consume(num_messages=min(room, MAX_CONSUME), timeout=timeout)
            if messages:
                if self._rebalanced:
                    # Some of these may predate the rebalance: re-read all of them from our positions.
                    self._seek_back(messages)
                else:
                    self._take(messages)

    def _take(self, messages: list[Any]) -> None:
        good = messages
        if any(m.error() is not None for m in messages):
            good = []
            for m in messages:
                err = m.error()
                if err is None:
                    good.append(m)
                else:
                    self.stats.add_error("kafka")
                    self.metrics.errors.labels("kafka").inc()
                    self._warn_kafka(err.str())
        self._decode(good)

    def _decode(self, messages: list[Any]) -> None:
        """Reserve messages in the batch and decode them (inline, or in a worker: collected later)."""
        batch = self._batch
        assert batch is not None
        reserved = batch.reserve(messages)
        if not reserved.messages:
            return
        self._count(len(reserved.messages))
        if self._pool is not None:
            self._inflight.append((batch, reserved, self._pool.submit(reserved.values)))
        else:
            assert self._decoder is not None
            self._apply(batch, reserved, decode_chunk(self._decoder, reserved.values))

    def _apply(self, batch: Batch, reserved: Reserved, result: ChunkResult) -> None:
        rest = batch.apply(reserved, result)
        if rest:
            self._uncount(len(rest))
            later: list[Any] = []
            while self._inflight:  # chunks behind the stalled one are read again after it, in order
                b, r, future = self._inflight.popleft()
                future.cancel()
                with contextlib.suppress(Exception):
                    future.result()
                b.unreserve(r.messages)
                self._uncount(len(r.messages))
                later.extend(r.messages)
            self._pending = rest + later
            self._registry_stalled()

    def _collect(self, block: bool) -> None:
        """Apply finished worker chunks in order (wait for the oldest when block)."""
        from k2cli.consume.workers import unpack

        while self._inflight:
            batch, reserved, future = self._inflight[0]
            if not block and not future.done():
                return
            self._inflight.popleft()
            self._apply(batch, reserved, unpack(future.result()))
            block = False

    def _drain(self) -> None:
        """Wait for every chunk in decoding."""
        while self._inflight:
            self._collect(block=True)

    def _count(self, n: int) -> None:
        if n and not self.stats.first_record:
            self.stats.first_record = self._clock()
        self.stats.consumed += n

    def _uncount(self, n: int) -> None:
        self.stats.consumed -= n

    def _registry_stalled(self) -> None:
        self.stats.add_error("registry_unavailable")
        self.metrics.errors.labels("registry_unavailable").inc()
        self._write_failures += 1
        wait = self._backoff.delay(min(self._write_failures - 1, 6))
        self._next_attempt = self._clock() + wait
        log.warning("Schema Registry unreachable; %d records wait, retrying in %.1fs", len(self._pending), wait)

    def _retry_pending(self) -> None:
        if self._clock() < self._next_attempt or self._inflight:
            return
        pending, self._pending = self._pending, []
        self._decode(pending)
        if self._pool is not None:
            self._drain()
        if not self._pending:
            self._write_failures = 0

    def _seek_back(self, messages: list[Any]) -> None:
        """Rewind the owned partitions these messages came from to our next expected offset (nothing is taken)."""
        from confluent_kafka import OFFSET_BEGINNING
        from confluent_kafka import TopicPartition as KTP

        for tp in {(m.topic(), m.partition()) for m in messages if m.error() is None}:
            if tp not in self._positions:
                continue
            position = self._positions[tp]
            try:
                self._consumer.seek(KTP(tp[0], tp[1], position if position is not None else OFFSET_BEGINNING))
            except Exception as exc:
                log.debug("seek back %s failed: %s", tp, exc)

    def _put_back_pending(self) -> None:
        """Seek partitions back to their first pending (undecoded) record, and forget the pending list."""
        if not self._pending:
            return
        from confluent_kafka import TopicPartition as KTP

        first: dict[TopicPartition, int] = {}
        for m in self._pending:
            first.setdefault((m.topic(), m.partition()), m.offset())
        self._pending = []
        for (topic, part), offset in first.items():
            if (topic, part) in self._positions:
                try:
                    self._consumer.seek(KTP(topic, part, offset))
                except Exception as exc:  # not assigned any more: the next owner starts from the table
                    log.debug("seek %s[%d] failed: %s", topic, part, exc)

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        assignment = self._consumer.assignment()
        if paused:
            self._consumer.pause(assignment)
        else:
            self._consumer.resume(assignment)
        self._paused = paused
        self.metrics.paused.set(1 if paused else 0)

    # ------------------------------------------------------------ flushing

    def _flush(self, force: bool = False) -> bool:
        """Hand the batch to the committer thread; False while an earlier batch still cannot be written."""
        self._drain()
        batch = self._batch
        assert batch is not None and self._writer is not None
        if not len(batch):
            return True
        if self._commit is not None:
            self._settle(block=True, force=force)
            if self._commit is not None:
                return False
            batch = self._batch  # a conflict may have replaced it
            if not len(batch):
                return True
        built = batch.build()
        if built.poison and not batch.dlq_written:
            self._dead_letter(built.poison)  # DLQWriteError stops the consumer: nothing committed past it
            batch.dlq_written = True
        expected = {tp: self._expected.get(tp) for tp in built.ranges}
        for tp, (_, nxt) in built.ranges.items():  # the next batch continues from here if this commit lands
            if tp in self._expected:
                self._expected[tp] = nxt
        self._commit = _Commit(batch, built, expected)
        self._submit()
        self._new_batch()
        return True

    def _submit(self) -> None:
        c = self._commit
        assert c is not None and self._writer is not None
        c.started = time.perf_counter()
        c.future = self._committer.submit(self._writer.commit, c.built.table, c.built.ranges, c.expected,
                                          records=c.built.records, dlq_records=len(c.built.poison))

    def _settle(self, block: bool, force: bool = False) -> None:
        """Take the outcome of the batch being committed; retry a failed one when the backoff and breaker allow."""
        c = self._commit
        if c is None:
            return
        if c.future is None:
            if not self.breaker.allow() or (not force and self._clock() < self._next_attempt):
                return
            self._submit()
        assert c.future is not None
        if not block and not c.future.done():
            return
        try:
            result = c.future.result()
        except CommitConflict as exc:
            self.stats.conflicts += 1
            self.metrics.conflicts.inc()
            self._reset_to_table(reason=str(exc))  # drops this batch and the one being filled
            return
        except WriteUnavailable as exc:
            c.future = None
            self._write_failed(exc)
            return
        self._commit = None
        self.metrics.write_duration.observe(time.perf_counter() - c.started)
        self._committed(c.built, result)

    def _dead_letter(self, poison: list[Poison]) -> None:
        fresh = self._dlq_index.fresh(poison)
        if fresh:
            entries = [DLQEntry(error=p.error, error_type=p.error_type, origin="consume", transient=False,
                                source={**p.source(), "group": self.options.group, "table": self.options.table},
                                value=p.value, record=p.record) for p in fresh]
            self._dlq.write(entries)
            self._dlq_index.add(fresh)
        for p in fresh:
            log.warning("dead-lettered %s[%d]@%d: %s: %s", p.topic, p.partition, p.offset, p.error_type, p.error)

    def _count_dead_lettered(self, poison: list[Poison]) -> None:
        """Statistics and metrics of a committed batch's poison records."""
        self.stats.dlq_entries += len(poison)
        for p in poison:
            self.stats.add_error(p.error_type)
            self.metrics.dlq_entries.labels(p.error_type).inc()
            self.metrics.errors.labels(p.error_type).inc()

    def _write_failed(self, exc: WriteUnavailable) -> None:
        self.last_error = str(exc)
        self.stats.add_error("iceberg_write")
        self.metrics.errors.labels("iceberg_write").inc()
        self._write_failures += 1
        self.breaker.record_failure()
        wait = self._backoff.delay(min(self._write_failures - 1, 6))
        self._next_attempt = self._clock() + wait
        self._set_paused(True)
        log.warning("Iceberg write failed (attempt %d, breaker %s; retrying in %.1fs): %s",
                    self._write_failures, self.breaker.state, wait, exc)

    def _reset_to_table(self, exclude: set[TopicPartition] | None = None, reason: str = "") -> None:
        """Forget everything not yet committed and re-read every owned partition from the table's offsets."""
        from confluent_kafka import OFFSET_BEGINNING
        from confluent_kafka import TopicPartition as KTP

        self._drain()
        self._put_back_pending()
        dropped = len(self._batch) if self._batch is not None else 0
        if self._commit is not None:
            dropped += self._commit.built.records
            self._commit = None
        self._uncount(dropped)
        if dropped:
            log.warning("%s; %d unwritten records dropped, read again from the table offsets", reason, dropped)
        self._new_batch()
        offsets = self._table_offsets() or {}
        for tp in list(self._positions):
            recorded = offsets.get(tp)
            self._expected[tp] = recorded
            self._positions[tp] = recorded
            if exclude and tp in exclude:
                continue
            try:
                self._consumer.seek(KTP(tp[0], tp[1], recorded if recorded is not None else OFFSET_BEGINNING))
            except Exception as err:
                log.debug("seek %s failed: %s", tp, err)

    def _committed(self, built: Built, result: Any) -> None:
        from confluent_kafka import TopicPartition as KTP

        self._write_failures = 0
        self._next_attempt = 0.0
        self.breaker.record_success()
        written = built.table.num_rows
        self.stats.written += written
        self._count_dead_lettered(built.poison)
        self.stats.snapshots += 0 if result.already_committed else 1
        self.stats.snapshots_expired += result.expired
        self.stats.commit_seconds.append(result.seconds)
        self.stats.commit_retries += result.attempts - 1
        if len(self.stats.commit_seconds) > 100_000:
            del self.stats.commit_seconds[:50_000]
        self.metrics.snapshots.inc()
        if result.expired:
            self.metrics.snapshots_expired.inc(result.expired)
        self.metrics.batch_size.observe(built.records)
        consumed = dict(built.topics_written)
        for topic, n in built.topics_written.items():
            self.metrics.written.labels(topic).inc(n)
        for p in built.poison:
            consumed[p.topic] = consumed.get(p.topic, 0) + 1
        for topic, n in consumed.items():
            self.metrics.consumed.labels(topic).inc(n)
        self._track_sequences(built)
        log.info("committed snapshot %s: %d rows, %d dead-lettered, %s in %.0f ms%s", result.snapshot_id, written,
                 len(built.poison), ", ".join(f"{t}[{p}] {a}..{b}" for (t, p), (a, b) in sorted(built.ranges.items())),
                 result.seconds * 1000, f", {result.expired} snapshots expired" if result.expired else "")
        try:
            self._consumer.commit(offsets=[KTP(t, p, nxt) for (t, p), (_, nxt) in built.ranges.items()],
                                  asynchronous=True)
        except Exception as exc:  # lag monitoring only; the table holds the truth
            log.debug("Kafka offset commit failed: %s", exc)
        self._set_paused(False)
        now = self._clock()
        if now - self._last_gc >= 1.0:
            gc.collect()
            self._last_gc = now

    def _track_sequences(self, built: Built) -> None:
        events = self._tracker.check_many(*built.sequence_columns())
        stats = self._tracker.stats
        self.stats.sequence_gaps = stats.gaps
        self.stats.sequence_events = {k: v for k, v in stats.events.items() if v}
        for ev in events:
            label = exchange_label(ev.exchange)
            self.metrics.sequence_events.labels(label, ev.event.value).inc()
            if ev.event in GAP_EVENTS:
                self.metrics.sequence_gaps.labels(label).inc()
            log.warning("sequence %s", ev.describe())

    def _new_batch(self) -> None:
        self._batch = Batch(self._positions, clock=self._clock)

    # ------------------------------------------------------------ housekeeping and shutdown

    def _housekeeping(self, now: float) -> None:
        from confluent_kafka import TopicPartition as KTP

        self._last_housekeeping = now
        total = 0
        for (topic, part), position in list(self._positions.items()):
            try:
                low, high = self._consumer.get_watermark_offsets(KTP(topic, part), cached=True)
            except Exception:
                continue
            if high is None or high < 0:
                continue
            lag = max(0, high - (position if position is not None else max(low, 0)))
            total += lag
            self.metrics.lag.labels(topic, str(part)).set(lag)
        self.metrics.total_lag.set(total)
        try:
            import psutil

            self.metrics.rss.set(psutil.Process().memory_info().rss)
        except Exception:
            pass
        if now - self._last_gc >= 60.0:
            gc.collect()
            self._last_gc = now

    def _shutdown(self) -> None:
        batch = self._batch
        consumer = self._consumer
        if self._commit is not None and self._commit.future is not None:
            with contextlib.suppress(Exception):
                self._commit.future.result(timeout=30)
        self._committer.shutdown(wait=True)
        self.stats.unwritten = (len(batch) if batch is not None else 0) + (
            self._commit.built.records if self._commit is not None else 0)
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:
                log.debug("consumer close: %s", exc)
        if self._pool is not None:
            self._pool.close()
        if self.stats.unwritten and not self._failed:
            raise ConsumeFailed(f"stopped with {self.stats.unwritten} records not written to Iceberg "
                                f"({self.last_error or 'write failed'}); nothing was committed for them, "
                                f"the next run reads them again")


class stop_on_signals:
    """While active, SIGTERM/SIGINT ask the engine to stop gracefully; a second signal interrupts at once."""

    def __init__(self, engine: ConsumeEngine) -> None:
        self._engine = engine
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        if self._engine.stopping:
            raise KeyboardInterrupt
        self._engine.request_stop(signal.Signals(signum).name)

    def __enter__(self) -> stop_on_signals:
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

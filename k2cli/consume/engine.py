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

The parts: `assignment` (positions, rebalances), `accumulator` (the batch being filled), `committer` (Iceberg,
breaker, backoff), `pausing`, `deadletters`, `kafka_client`, `housekeeping`, `signals`; this module is the loop.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from k2cli.consume.accumulator import Accumulator
from k2cli.consume.assignment import Assignment
from k2cli.consume.batch import use_system_allocator
from k2cli.consume.committer import BACKOFF, Committer
from k2cli.consume.deadletters import DeadLetters
from k2cli.consume.decode import ValueDecoder
from k2cli.consume.fencing import Rejoins
from k2cli.consume.flushing import Flusher
from k2cli.consume.housekeeping import GcPacer, Housekeeping
from k2cli.consume.kafka_client import FatalLogWatch, KafkaErrors, check_topics, kafka_config
from k2cli.consume.opening import TableOpening, until_ready
from k2cli.consume.options import ConsumeFailed, ConsumeOptions
from k2cli.consume.pausing import Pauser
from k2cli.consume.signals import stop_on_signals
from k2cli.consume.stats import ConsumeStats
from k2cli.errors import ServiceUnavailable
from k2cli.lake.offsets import TopicPartition
from k2cli.observe.consumer_metrics import ConsumerMetrics
from k2cli.reliability.breaker import CircuitBreaker
from k2cli.reliability.retry import Retries
from k2cli.settings import Settings, ensure_writable_dir

__all__ = ["ConsumeEngine", "ConsumeFailed", "ConsumeOptions", "ConsumeStats", "stop_on_signals"]

log = logging.getLogger("k2.consume")

MAX_CONSUME = 5_000  # messages per consume() call
POLL_TIMEOUT = 0.2  # seconds; bounds how long a stop request or a due flush waits

T = TypeVar("T")


def quiet_memory() -> None:
    """Before the hot loop: Arrow buffers from malloc, and no cyclic collector (decoded records are acyclic: it only
    slows the loop down, see perf notes)."""
    use_system_allocator()
    gc.collect()
    gc.freeze()
    gc.disable()


def counted(check: Callable[[], None], stats: ConsumeStats, metrics: ConsumerMetrics) -> Callable[[], None]:
    """The registry check, each unanswered attempt counted as the mid-run registry retries are."""
    def attempt() -> None:
        try:
            check()
        except ServiceUnavailable:
            stats.add_error("registry_unavailable")
            metrics.errors.labels("registry_unavailable").inc()
            raise
    return attempt


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
        self.workers = 0  # decode worker processes in use (set at start)
        self._consumer: Any = None
        self._failed = False
        retries = Retries(BACKOFF, clock)  # shared: a failed write and a stalled registry hold the same loop
        self._gc = GcPacer()
        self._housekeeping = Housekeeping(self.metrics, self._gc)
        self._pauser = Pauser(self.metrics)
        self._kafka_errors = KafkaErrors(self.stats, self.metrics, clock, self._kafka_fatal)
        self._fatal_watch = FatalLogWatch(self._kafka_errors)
        positions: dict[TopicPartition, int | None] = {}
        self._acc = Accumulator(positions, self.stats, self.metrics, retries, self._kafka_errors, clock)
        self._committer = Committer(settings, options, self.stats, self.metrics, retries=retries,
                                    pauser=self._pauser, gc_pacer=self._gc, clock=clock,
                                    on_conflict=lambda reason: self._assignment.reset_to_table(reason=reason))
        dead_letters = DeadLetters(settings.dlq_path, options.group, options.table)
        self._flush = Flusher(self._acc, self._committer, dead_letters, lambda ranges: self._assignment.advance(ranges))
        self._assignment = Assignment(positions, self.metrics, committer=self._committer, accumulator=self._acc,
                                      pauser=self._pauser, flush=self._flush, stopping=lambda: self.stopping,
                                      clock=clock)
        self._retries = retries
        self._rejoins = Rejoins()

    @property
    def breaker(self) -> CircuitBreaker:
        """The Iceberg write circuit breaker."""
        return self._committer.breaker

    @property
    def last_error(self) -> str:
        """The last write or fatal Kafka error (named when the run fails)."""
        return self._committer.last_error

    def request_stop(self, reason: str = "signal") -> None:
        """Ask the loop to finish (safe from a signal handler): the current batch is written, then it returns."""
        if self._stop_reason is None:
            self._stop_reason = reason

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop_reason is not None

    def _kafka_fatal(self, text: str) -> None:
        self._committer.last_error = text
        self.request_stop("kafka_fatal")

    def _until_ready(self, what: str, fn: Callable[[], T], name_in_error: bool = True,
                     gave_up: Callable[[], bool] = lambda: False) -> T:
        return until_ready(what, fn, self.options.startup_timeout, lambda: self.stopping or gave_up(), self._clock,
                           name_in_error)

    # ------------------------------------------------------------ the run

    def run(self) -> ConsumeStats:
        """Consume until done; returns the statistics (raises K2Error on a fatal condition)."""
        from k2cli.consume.membership import claim_instance_id
        from k2cli.kafka.registry import RegistryClient

        t0 = self._clock()
        ensure_writable_dir(self.settings.dlq_path, "K2_DLQ_DIR")
        claim = claim_instance_id(self.options.group, self.settings.kafka_bootstrap_servers,
                                  self.options.instance_id or self.settings.consumer_instance_id)
        self.stats.instance_id = claim.instance_id
        # The table opens (pyiceberg's imports, the catalog) while the registry is checked and the group is joined.
        opening = TableOpening(lambda gave_up: self._until_ready("Iceberg catalog unavailable",
                                                                 self._committer.open_table, gave_up=gave_up))
        registry = RegistryClient.from_settings(self.settings)
        try:
            self._until_ready("Schema Registry unavailable", counted(registry.check, self.stats, self.metrics), False)
        except BaseException:
            opening.abandon()
            registry.close()
            claim.close()
            raise
        gc_was_enabled = gc.isenabled()
        try:
            self._start(registry, opening)
            self.stats.started = self._clock()
            self.stats.startup_seconds = self.stats.started - t0
            self._loop()
            while self._stop_reason == "kafka_fatal" and self._rejoins.allow(self.last_error, self._clock()):
                self._rejoin()
                self._loop()
            if self._stop_reason == "kafka_fatal":  # refused: credentials or TLS, naming their setting
                line = self._rejoins.refusal(self.last_error, self.stats.instance_id)
                raise self._kafka_errors.refused or ConsumeFailed(line, setting="K2_KAFKA_BOOTSTRAP_SERVERS")
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

    def _start(self, registry: Any, opening: TableOpening) -> None:
        """Start the decoders and the Kafka consumer, subscribe, wait for the table (its error first if it failed)."""
        try:
            self._start_consumer(registry, opening)
            opening.wait()
        except BaseException:
            opening.abandon()
            raise
        quiet_memory()
        self._gc.last = self._clock()

    def _start_consumer(self, registry: Any, opening: TableOpening) -> None:
        opening.check()
        self.workers = self._acc.start_decoding(ValueDecoder(registry, self.options.decoder), self.options.workers,
                                                registry.access)
        consumer = self._new_client()
        opening.check()
        self._until_ready("Kafka unavailable", lambda: check_topics(
            consumer, self.settings.kafka_bootstrap_servers, self.options.topics, self._kafka_errors))
        self._subscribe()

    def _new_client(self) -> Any:
        from confluent_kafka import Consumer

        consumer = self._consumer = Consumer(kafka_config(self.settings, self.options, self.stats.instance_id,
                                                          self._kafka_errors), logger=self._fatal_watch.install())
        self._pauser.consumer = self._acc.consumer = self._committer.consumer = self._assignment.consumer = consumer
        return consumer

    def _subscribe(self) -> None:
        a = self._assignment
        self._acc.new_batch()
        self._consumer.subscribe(list(self.options.topics), on_assign=a.on_assign, on_revoke=a.on_revoke,
                                 on_lost=a.on_lost)

    def _rejoin(self) -> None:
        """Fenced by its own rejoin after a lost session: a new client with the same id reads on from the table."""
        log.warning("%s; rejoining the group with a new client (same group.instance.id)", self.last_error)
        self.stats.rejoins = self._rejoins.count
        self.metrics.errors.labels("kafka_rejoin").inc()
        self._assignment.release_all()
        self._close_client()
        self._stop_reason = None
        self._new_client()
        self._subscribe()

    def _remaining(self) -> int | None:
        if self.options.max_messages is None:
            return None
        return max(0, self.options.max_messages - self.stats.consumed)

    def _loop(self) -> None:
        consumer, batch_size, acc, committer = self._consumer, self.options.batch_size, self._acc, self._committer
        while True:
            now = self._clock()
            self._housekeeping.run_if_due(now, consumer, self._assignment.positions)
            if self.options.until_caught_up and self._housekeeping.caught_up:
                self.request_stop("caught_up")
            remaining = self._remaining()
            if self.stopping:
                self._finish()
                return
            if committer.busy:
                committer.settle(block=False)
            if acc.inflight:
                acc.collect(block=len(acc.inflight) >= 2 * max(1, self.workers))
            if acc.pending:
                acc.retry_pending()
            batch = acc.batch
            assert batch is not None
            full = len(batch) >= batch_size or (remaining == 0 and len(batch) > 0)
            if len(batch) and (full or batch.age() >= self.options.flush_interval):
                self._flush()
                batch = acc.batch
                assert batch is not None
            if remaining == 0 and not len(batch) and not acc.pending and not acc.inflight:
                committer.settle(block=True)
                if not committer.busy:
                    self.stats.stopped_by = "max_messages"
                    return
                # the last batch's commit failed: it is retried below while consumption stays paused
            room = batch_size - len(batch) - len(acc.pending)
            if remaining is not None:
                room = min(room, remaining - len(acc.pending))
            if room <= 0 or acc.pending or committer.failing or not self._retries.ready(now):
                self._hold()
                continue
            self._pauser.set(False)
            timeout = POLL_TIMEOUT
            if len(batch):
                timeout = max(0.0, min(timeout, self.options.flush_interval - batch.age()))
            self._read(min(room, MAX_CONSUME), timeout)

    def _hold(self) -> None:
        """Nothing can be taken now: pause, and serve the callbacks (partitions are paused)."""
        self._pauser.set(True)
        self._assignment.rebalanced = False
        stray = self._consumer.consume(num_messages=1, timeout=0.1)
        if stray:
            self._assignment.seek_back(stray)

    def _read(self, count: int, timeout: float) -> None:
        """Read up to count messages into the batch (re-read if a rebalance happened meanwhile)."""
        self._assignment.rebalanced = False
        messages = self._consumer.consume(num_messages=count, timeout=timeout)
        if messages:
            if self._assignment.rebalanced:
                # Some of these may predate the rebalance: re-read all of them from our positions.
                self._assignment.seek_back(messages)
            else:
                self._acc.take(messages)

    def _finish(self) -> None:
        """A stop was requested: write and commit the current batch."""
        self._acc.drain()
        self._committer.settle(block=True, force=True)
        if self._flush(force=True):
            self._committer.settle(block=True, force=True)
        self.stats.stopped_by = self._stop_reason or "signal"

    def _shutdown(self) -> None:
        unwritten_batch = self._acc.unwritten()
        self.stats.unwritten = unwritten_batch + self._committer.close()
        self._close_client()
        self._acc.close()
        if self.stats.unwritten and not self._failed:
            raise ConsumeFailed(f"stopped with {self.stats.unwritten} records not written to Iceberg "
                                f"({self.last_error or 'write failed'}); nothing was committed for them, "
                                f"the next run reads them again")

    def _close_client(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception as exc:
                log.debug("consumer close: %s", exc)
        self._fatal_watch.remove()

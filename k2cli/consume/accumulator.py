"""The batch accumulator: messages reserved in the batch, decoded (inline or in worker processes), applied in order.

When the Schema Registry is unreachable the undecoded messages wait in `pending` (not counted as consumed) and
are decoded again after a backoff; a rebalance or a stop puts them back by seeking their partitions.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable
from itertools import repeat
from operator import is_not, methodcaller
from typing import Any

from k2cli.consume.batch import Batch, ChunkResult, Reserved, decode_chunk
from k2cli.consume.decode import ValueDecoder
from k2cli.consume.kafka_client import KafkaErrors
from k2cli.consume.stats import ConsumeStats
from k2cli.kafka.registry_access import RegistryAccess
from k2cli.lake.offsets import TopicPartition
from k2cli.observe.consumer_metrics import ConsumerMetrics
from k2cli.reliability.retry import Retries

log = logging.getLogger("k2.consume")

_error = methodcaller("error")


def has_errors(messages: list[Any]) -> bool:
    """Whether any message is an error; C-level, no Python code per message (and by identity: KafkaError's ==
    raises against None)."""
    return any(map(is_not, map(_error, messages), repeat(None)))


class Accumulator:
    """Fills the current batch; `pending` holds what waits for the registry, `inflight` the chunks in decoding."""

    def __init__(self, positions: dict[TopicPartition, int | None], stats: ConsumeStats, metrics: ConsumerMetrics,
                 retries: Retries, errors: KafkaErrors, clock: Callable[[], float]) -> None:
        self.batch: Batch | None = None
        self.pending: list[Any] = []
        self.inflight: deque[tuple[Batch, Reserved, Any]] = deque()
        self.pool: Any = None
        self.decoder: ValueDecoder | None = None
        self.consumer: Any = None
        self._positions = positions
        self._stats = stats
        self._metrics = metrics
        self._retries = retries
        self._errors = errors
        self._clock = clock

    def start_decoding(self, decoder: ValueDecoder, workers: int, registry: RegistryAccess) -> int:
        """Decode in this process with the compiled decoder, else in `workers` processes (0: here too); how many."""
        if decoder.native is not None or not workers:  # compiled: ~0.3 µs/record, no worker pays its start-up
            self.decoder = decoder
            return 0
        from k2cli.consume.workers import DecodePool

        # Started, not awaited: the workers import while the consumer joins the group.
        self.pool = DecodePool(workers, registry)
        self.pool.start()
        return workers

    def new_batch(self) -> None:
        """Start an empty batch continuing from the current positions."""
        self.batch = Batch(self._positions, clock=self._clock)

    def take(self, messages: list[Any]) -> None:
        """Count error messages, decode the rest into the batch."""
        good = messages
        if has_errors(messages):
            good = []
            for m in messages:
                err = m.error()
                if err is None:
                    good.append(m)
                else:
                    self._errors.count(err)
        self._decode(good)

    def _decode(self, messages: list[Any]) -> None:
        """Reserve messages in the batch and decode them (inline, or in a worker: collected later)."""
        batch = self.batch
        assert batch is not None
        reserved = batch.reserve(messages)
        if not reserved.messages:
            return
        self._count(len(reserved.messages))
        if self.pool is not None:
            self.inflight.append((batch, reserved, self.pool.submit(reserved.values)))
        else:
            assert self.decoder is not None
            self._apply(batch, reserved, decode_chunk(self.decoder, reserved.values))

    def _apply(self, batch: Batch, reserved: Reserved, result: ChunkResult) -> None:
        rest = batch.apply(reserved, result)
        if rest:
            self.uncount(len(rest))
            later: list[Any] = []
            while self.inflight:  # chunks behind the stalled one are read again after it, in order
                b, r, future = self.inflight.popleft()
                future.cancel()
                with contextlib.suppress(Exception):
                    future.result()
                b.unreserve(r.messages)
                self.uncount(len(r.messages))
                later.extend(r.messages)
            self.pending = rest + later
            self._registry_stalled()

    def collect(self, block: bool) -> None:
        """Apply finished worker chunks in order (wait for the oldest when block)."""
        from k2cli.consume.workers import unpack

        while self.inflight:
            batch, reserved, future = self.inflight[0]
            if not block and not future.done():
                return
            self.inflight.popleft()
            self._apply(batch, reserved, unpack(future.result()))
            block = False

    def drain(self) -> None:
        """Wait for every chunk in decoding."""
        while self.inflight:
            self.collect(block=True)

    def _count(self, n: int) -> None:
        if n and not self._stats.first_record:
            self._stats.first_record = self._clock()
            log.info("first %d records fetched", n)
        self._stats.consumed += n

    def uncount(self, n: int) -> None:
        """Records dropped before they were written are not consumed (they will be read again)."""
        self._stats.consumed -= n

    def _registry_stalled(self) -> None:
        self._stats.add_error("registry_unavailable")
        self._metrics.errors.labels("registry_unavailable").inc()
        wait = self._retries.failed()
        log.warning("Schema Registry unreachable; %d records wait, retrying in %.1fs", len(self.pending), wait)

    def retry_pending(self) -> None:
        """Decode the waiting messages again once the backoff allows."""
        if not self._retries.ready(self._clock()) or self.inflight:
            return
        pending, self.pending = self.pending, []
        self._decode(pending)
        if self.pool is not None:
            self.drain()
        if not self.pending:
            self._retries.failures = 0

    def put_back_pending(self) -> None:
        """Seek partitions back to their first pending (undecoded) record, and forget the pending list."""
        if not self.pending:
            return
        from confluent_kafka import TopicPartition as KTP

        first: dict[TopicPartition, int] = {}
        for m in self.pending:
            first.setdefault((m.topic(), m.partition()), m.offset())
        self.pending = []
        for (topic, part), offset in first.items():
            if (topic, part) in self._positions:
                try:
                    self.consumer.seek(KTP(topic, part, offset))
                except Exception as exc:  # not assigned any more: the next owner starts from the table
                    log.debug("seek %s[%d] failed: %s", topic, part, exc)

    def unwritten(self) -> int:
        """Records in the batch being filled."""
        return len(self.batch) if self.batch is not None else 0

    def close(self) -> None:
        """Stop the decode workers."""
        if self.pool is not None:
            self.pool.close()

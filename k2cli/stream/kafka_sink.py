"""The stream's Kafka side: the producer and the bounded pending buffer in front of it.

Records go straight into librdkafka's queue. When that queue is full (Kafka slow or down) they wait in
`pending`, in order, and the session stops reading (SIG_BLOCKED) until `wait_unblocked` has moved them
on: memory stays bounded and nothing is dropped. The frame pipeline uses `pending` and `try_produce`
directly, so the hot path pays no call into this class.

Where undelivered trades surface: a record Kafka refuses reaches the `on_failure` hook given to `open`
(the runner counts it and hands it to the dead-letter sink). What Kafka has not acknowledged when `drain`'s
deadline passes goes to the `on_unacknowledged` hook, record by record with the stage it had reached:
"buffer" (still in `pending`, never handed to librdkafka), "queue" (librdkafka's queue, never sent:
_PURGE_QUEUE once purged) or "in_flight" (sent, acknowledgement never came: _PURGE_INFLIGHT; it may have
been stored, so a replay can duplicate it in the topic).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from k2cli.errors import ServiceUnavailable
from k2cli.kafka.producer import TradeProducer
from k2cli.settings import Settings

log = logging.getLogger("k2.stream")

# (key, value, error name, message) of a record Kafka did not take
DeliveryFailed = Callable[[bytes | None, bytes | None, str, str], None]
Stage = Literal["buffer", "queue", "in_flight"]  # how far an unacknowledged record got
# (key, value, stage) of a record Kafka had not acknowledged when the stream stopped
Unacknowledged = Callable[[bytes | None, bytes | None, Stage], None]
PURGED: dict[str, Stage] = {"_PURGE_QUEUE": "queue", "_PURGE_INFLIGHT": "in_flight"}  # librdkafka's error names


def route_failures(on_failure: DeliveryFailed, on_unacknowledged: Unacknowledged) -> DeliveryFailed:
    """One delivery-failure hook for the producer: records a purge took back go to `on_unacknowledged`."""

    def failed(key: bytes | None, value: bytes | None, name: str, message: str) -> None:
        stage = PURGED.get(name)
        if stage is None:
            on_failure(key, value, name, message)
        else:
            on_unacknowledged(key, value, stage)

    return failed


class KafkaSink:
    """The producer with its pending buffer: back-pressure while Kafka is slow, the flush at shutdown."""

    def __init__(self, producer: TradeProducer, on_unacknowledged: Unacknowledged) -> None:
        self.producer = producer
        self.pending: deque[tuple[bytes, bytes]] = deque()  # (key, value) not yet taken by the producer
        self.try_produce = producer.try_produce
        self.on_unacknowledged = on_unacknowledged

    @classmethod
    def open(cls, settings: Settings, topic: str, on_failure: DeliveryFailed,
             on_unacknowledged: Unacknowledged) -> KafkaSink:
        """Make sure the topic exists (or warn that Kafka is down) and start the producer.

        `on_failure` gets the records Kafka refuses; `on_unacknowledged` those `drain` takes back."""
        from k2cli.kafka.producer import ensure_topic

        try:
            state = ensure_topic(settings, topic, timeout=5.0)
            log.info("Kafka topic %s %s", topic, state)
        except ServiceUnavailable as exc:
            log.warning("%s; streaming anyway: trades wait in the bounded buffer until Kafka is back", exc)
        producer = TradeProducer(settings, topic, settings.producer_buffer_max_messages,
                                 on_failure=route_failures(on_failure, on_unacknowledged))
        return cls(producer, on_unacknowledged)

    @property
    def buffered(self) -> int:
        """Trades not yet acknowledged: in librdkafka's queue or in flight, plus those waiting here."""
        return self.producer.pending + len(self.pending)

    def push_pending(self) -> None:
        """Move waiting records into the producer, in order, until it is full again."""
        pending, try_produce = self.pending, self.try_produce
        while pending:
            key, value = pending[0]
            if not try_produce(key, value):
                return
            pending.popleft()

    async def wait_unblocked(self, stop: asyncio.Event, waited: Callable[[float], None]) -> None:
        """Back-pressure: wait (never drop) until the pending buffer is empty or the run stops.

        `waited(seconds)` is called while it lasts, so a metrics scrape sees the blocked time grow."""
        producer = self.producer
        last = time.monotonic()
        while self.pending and not stop.is_set():
            producer.poll(0)
            self.push_pending()
            if self.pending:
                await asyncio.sleep(0.02)
            now = time.monotonic()
            waited(now - last)
            last = now

    def drain(self, timeout: float) -> int:
        """Flush for up to `timeout` seconds: pending into the producer, the producer into Kafka.

        What Kafka has not acknowledged by then is taken back and handed, record by record, to
        `on_unacknowledged` (librdkafka's first, then our pending buffer: oldest first). Returns how many
        trades Kafka has not acknowledged; all of them were handed over unless librdkafka kept some back."""
        deadline = time.monotonic() + timeout
        producer = self.producer
        while self.pending and time.monotonic() < deadline:
            self.push_pending()
            producer.poll(0.05)
        unacknowledged = 0
        if producer.flush(max(0.0, deadline - time.monotonic())):
            reported, held = producer.purge()  # each record comes back through on_failure -> route_failures
            unacknowledged += reported + held
            if held:
                log.error("%d records are still held by the Kafka client after the purge: they cannot be kept", held)
        pending, hand_over = self.pending, self.on_unacknowledged
        unacknowledged += len(pending)
        while pending:
            key, value = pending.popleft()
            hand_over(key, value, "buffer")
        return unacknowledged

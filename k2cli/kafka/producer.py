"""The Kafka producer of the stream: idempotent (acks=all), lz4, keyed by symbol, bounded local buffer.

Back-pressure: librdkafka's queue holds at most `buffer_max_messages` records (and 32 MiB); when it is
full `try_produce` returns False and the caller keeps the record and waits, so memory stays bounded
while Kafka is down. Messages never time out in the queue (message.timeout.ms=0): they wait for the
broker to return, and what is still queued at shutdown after the flush timeout is reported as
undelivered and taken back with `purge` (each record comes back through `on_failure`). Delivery reports are
requested for failures only; every failure is counted and handed to `on_failure` (the stream writes it to
its dead-letter file). Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from k2cli.kafka import rdlog

if TYPE_CHECKING:
    from k2cli.kafka.refusals import KafkaRefused
    from k2cli.settings import Settings

log = logging.getLogger("k2.kafka")
_RDKAFKA_LOG = rdlog.logger()  # librdkafka's warnings, repeats collapsed
DEFAULT_PARTITIONS = 6


class TradeProducer:
    """Produces framed Avro values to one topic and keeps exact delivery accounting."""

    def __init__(self, settings: Settings, topic: str, buffer_max_messages: int = 100_000, *, linger_ms: int = 20,
                 on_failure: Callable[[bytes | None, bytes | None, str, str], None] | None = None) -> None:
        from confluent_kafka import Producer

        from k2cli.kafka.client_config import client_config
        from k2cli.kafka.refusals import RefusalWatch

        self.topic = topic
        self.enqueued = 0
        self.failed = 0
        self.failures: Counter[str] = Counter()
        self.broker_down = False
        self.last_error = ""
        self._on_failure = on_failure
        self._purging = False
        defaults: dict[str, Any] = {
            "compression.type": "lz4",
            "linger.ms": linger_ms,
            "batch.num.messages": 10_000,
            "queue.buffering.max.kbytes": 32 * 1024,
            "client.id": "k2-stream",
        }
        controlled: dict[str, Any] = {
            "enable.idempotence": True,
            "acks": "all",
            "queue.buffering.max.messages": buffer_max_messages,  # K2_PRODUCER_BUFFER_MAX_MESSAGES
            "message.timeout.ms": 0,  # never expire: wait for the broker; shutdown decides what is undelivered
            "delivery.report.only.error": True,
            "on_delivery": self._delivery,
        }
        conf = client_config(settings, defaults, controlled)
        self.watch = RefusalWatch(conf, then=self._error)  # wrong credentials or TLS: `refused`, fatal to the stream
        self._producer = Producer({**conf, "error_cb": self.watch}, logger=_RDKAFKA_LOG)
        self._produce = self._producer.produce

    @property
    def refused(self) -> KafkaRefused | None:
        """Kafka refused the credentials or the TLS handshake (the stream stops with this line)."""
        return self.watch.refused

    def try_produce(self, key: bytes, value: bytes) -> bool:
        """Queue one record; False when the local buffer is full (keep it and retry after poll())."""
        try:
            self._produce(self.topic, value, key)
        except BufferError:
            return False
        self.enqueued += 1
        return True

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports and errors."""
        return self._producer.poll(timeout)

    @property
    def pending(self) -> int:
        """Records queued or in flight (not yet acknowledged or failed)."""
        return len(self._producer)

    @property
    def delivered(self) -> int:
        """Records acknowledged by Kafka (all replicas)."""
        return max(0, self.enqueued - self.failed - self.pending)

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for everything queued; returns how many are still not acknowledged."""
        return self._producer.flush(timeout)

    def purge(self, timeout: float = 5.0) -> tuple[int, int]:
        """Take back every record not yet acknowledged; each is reported to `on_failure` as _PURGE_QUEUE
        (never sent) or _PURGE_INFLIGHT (sent, unacknowledged: it may have been stored).

        Returns (records reported, records still held after `timeout` seconds of serving the reports)."""
        import time

        self._purging = True
        before = self._purged()
        self._producer.purge(in_queue=True, in_flight=True, blocking=True)
        deadline = time.monotonic() + timeout
        while len(self._producer) and time.monotonic() < deadline:
            self._producer.poll(0.05)
        return self._purged() - before, len(self._producer)

    def _purged(self) -> int:
        return self.failures["_PURGE_QUEUE"] + self.failures["_PURGE_INFLIGHT"]

    def _delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            return
        name = err.name() if hasattr(err, "name") else str(err)
        self.failed += 1
        self.failures[name] += 1
        if not self._purging:  # a purge reports every record it takes back: the caller sums them up instead
            log.error("Kafka did not take a record for %s: %s", self.topic,
                      err.str() if hasattr(err, "str") else err)
        if self._on_failure is not None:
            self._on_failure(msg.key(), msg.value(), name, err.str() if hasattr(err, "str") else str(err))

    def _error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            if not self.broker_down:
                log.warning("Kafka unreachable (%s); holding trades in the bounded buffer", err.str())
            self.broker_down = True
        elif code == KafkaError._TRANSPORT and self.broker_down:
            pass  # still down; already reported
        else:
            log.warning("Kafka: %s", err.str())
        self.last_error = err.str()

    def note_progress(self) -> None:
        """Call when deliveries advance: clears the broker-down state (and says so once)."""
        if self.broker_down:
            log.warning("Kafka reachable again; delivering the buffered trades")
            self.broker_down = False


def ensure_topic(settings: Settings, topic: str, partitions: int = DEFAULT_PARTITIONS, timeout: float = 10.0) -> str:
    """Make sure the topic exists: "exists", "created", or raise ServiceUnavailable if Kafka cannot be reached
    (KafkaRefused when it refuses the credentials or the TLS handshake)."""
    from k2cli.kafka import admin
    from k2cli.kafka.client_config import client_config

    return admin.ensure_topic(client_config(settings), topic, partitions, timeout, logger=_RDKAFKA_LOG)

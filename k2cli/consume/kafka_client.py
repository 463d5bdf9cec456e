"""The consumer's Kafka client: its configuration, error reporting, and the start-up check of the topics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from k2cli.consume.options import ConsumeOptions
from k2cli.consume.stats import ConsumeStats
from k2cli.errors import ServiceUnavailable
from k2cli.observe.consumer_metrics import ConsumerMetrics
from k2cli.settings import Settings

if TYPE_CHECKING:
    from k2cli.kafka.refusals import KafkaRefused

log = logging.getLogger("k2.consume")
# KafkaError._FATAL: a fatal error (e.g. a static member fenced by another with its group.instance.id) can arrive with
# this code and fatal() False, so the code decides too
_FATAL = -150


class KafkaErrors:
    """Counts Kafka errors and logs each distinct one at most every 30 s; a fatal one stops the consumer."""

    def __init__(self, stats: ConsumeStats, metrics: ConsumerMetrics, clock: Callable[[], float],
                 on_fatal: Callable[[str], None]) -> None:
        self._stats = stats
        self._metrics = metrics
        self._clock = clock
        self._on_fatal = on_fatal
        self._warned: dict[str, float] = {}
        self.conf: dict[str, Any] = {}  # the client's configuration (kafka_config sets it): named in refusals
        self.refused: KafkaRefused | None = None

    def on_error(self, err: Any) -> None:
        """librdkafka's error_cb."""
        from k2cli.kafka.refusals import of_error

        self._stats.add_error("kafka")
        self._metrics.errors.labels("kafka").inc()
        if self.refused is not None:
            return  # stopping with that line; what follows is its echo (brokers down, the same refusal again)
        refused = of_error(self.conf, err)
        if refused is not None:  # wrong credentials or TLS: retrying cannot help
            self.refused = refused
            self._on_fatal(str(refused))
        elif err.fatal() or err.code() == _FATAL:
            text = f"Kafka fatal error: {err.str()}"
            log.error("%s", text)
            self._on_fatal(text)
        else:
            self.warn(err.str())

    def fatal_line(self, text: str) -> None:
        """A FATAL line in librdkafka's log: some fatal errors (a static member fenced by its own rejoin after a
        lost session) reach no callback, and the client then sits idle for ever."""
        self._stats.add_error("kafka")
        self._metrics.errors.labels("kafka").inc()
        if self.refused is None:
            self._on_fatal(f"Kafka fatal error: {text}")

    def count(self, err: Any) -> None:
        """A message that carried an error instead of a record (a fatal one, e.g. fenced, arrives this way too)."""
        self.on_error(err)

    def warn(self, text: str) -> None:
        """Log a Kafka error, each distinct one at most every 30 s (the client repeats them while they last)."""
        from k2cli.kafka.rdlog import shape

        key, now = shape(text), self._clock()
        if now - self._warned.get(key, -1e9) >= 30:
            self._warned[key] = now
            log.warning("Kafka: %s", text)


class FatalLogWatch(logging.Filter):
    """Hands librdkafka's FATAL log lines to KafkaErrors.fatal_line (installed on the librdkafka logger)."""

    def __init__(self, errors: KafkaErrors) -> None:
        super().__init__()
        self._errors = errors

    def install(self) -> logging.Logger:
        """The librdkafka logger (k2cli.kafka.rdlog), watched by this filter; hand it to the Consumer."""
        from k2cli.kafka import rdlog

        rd_logger = rdlog.logger()
        rd_logger.addFilter(self)
        return rd_logger

    def remove(self) -> None:
        """Stop watching (the consumer is closed)."""
        from k2cli.kafka import rdlog

        rdlog.logger().removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.levelno >= logging.CRITICAL and text.startswith("FATAL"):
            self._errors.fatal_line(text)
        return True


def _on_commit(err: Any, partitions: Any) -> None:
    if err is not None:
        log.debug("Kafka offset commit (lag monitoring only) failed: %s", err)


# The prefetch queue and fetch sizes, measured on the peers harness's 6-partition topic (benchmarks/peers): raw reads
# ran at 106k msg/s with a 16 MiB / 20k-message queue and 1 MiB per-partition fetches, ~600k msg/s with these, and a
# 1M-record `k2 consume` at 390k rows/s (225k with 2 MiB fetches, 132k with 1 MiB) for ~100 MB more peak RSS.
FETCH: dict[str, int] = {
    "queued.max.messages.kbytes": 32768,
    "queued.min.messages": 100000,
    "max.partition.fetch.bytes": 4 * 1024 * 1024,
}


def kafka_config(settings: Settings, options: ConsumeOptions, instance_id: str, errors: KafkaErrors) -> dict[str, Any]:
    """The confluent-kafka Consumer configuration (no auto commit: the table holds the offsets)."""
    from k2cli.kafka.client_config import client_config

    defaults = {
        "client.id": f"k2-consume-{instance_id}",
        "session.timeout.ms": int(settings.consumer_session_timeout * 1000),
        "heartbeat.interval.ms": max(500, int(settings.consumer_session_timeout * 1000 / 5)),
        "max.poll.interval.ms": 300_000,
        # librdkafka backs off reconnects up to 10 s by default: after a network blip the group coordinator could
        # then stay unreachable past the session timeout, and a static member that lost its session this way is
        # fenced by its own rejoin (a fatal error: confluentinc/librdkafka#3437)
        "reconnect.backoff.max.ms": 1000,
        **FETCH,
    }
    controlled = {
        "group.id": options.group,
        "group.instance.id": instance_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "error_cb": errors.on_error,
        "on_commit": _on_commit,
    }
    conf = client_config(settings, defaults, controlled)
    errors.conf = conf
    return conf


def check_topics(consumer: Any, bootstrap: str, topics: tuple[str, ...], errors: KafkaErrors | None = None) -> None:
    """Raise ServiceUnavailable when the broker is unreachable (KafkaRefused when it refuses the credentials or
    the TLS handshake); warn about topics that do not exist yet."""
    from confluent_kafka import KafkaException

    try:
        md = consumer.list_topics(timeout=5.0)
    except KafkaException as exc:
        if errors is not None:
            consumer.poll(0)  # serves error_cb: the refusal behind the failure, if any
            if errors.refused is not None:
                raise errors.refused from None
        raise ServiceUnavailable(f"Kafka broker unreachable at {bootstrap}: "
                                 f"{exc.args[0].str() if exc.args else exc}",
                                 setting="K2_KAFKA_BOOTSTRAP_SERVERS") from None
    missing = [t for t in topics if t not in md.topics or md.topics[t].error is not None]
    if missing:
        log.warning("topic(s) %s do not exist yet on %s; waiting for them", ", ".join(missing), bootstrap)

"""The consumer's Kafka error reporting: which errors stop it."""

from __future__ import annotations

from confluent_kafka import KafkaError

from k2cli.consume.kafka_client import KafkaErrors
from k2cli.consume.stats import ConsumeStats
from k2cli.observe.consumer_metrics import ConsumerMetrics

FENCED = "Fatal error: Broker: Static consumer fenced by other consumer with same group.instance.id"


def _errors() -> tuple[KafkaErrors, ConsumeStats, list[str]]:
    stats, fatal = ConsumeStats(), []
    return KafkaErrors(stats, ConsumerMetrics(), lambda: 0.0, fatal.append), stats, fatal


def test_a_fatal_error_on_a_message_stops_the_consumer_even_when_fatal_is_not_flagged():
    errors, stats, fatal = _errors()
    err = KafkaError(KafkaError._FATAL, FENCED)
    assert not err.fatal()  # how a fenced static member's error arrives from consume()
    errors.count(err)
    assert fatal == [f"Kafka fatal error: {FENCED}"]
    assert stats.errors == {"kafka": 1}


def test_a_fatal_error_callback_stops_it_and_a_transient_one_does_not():
    errors, stats, fatal = _errors()
    errors.on_error(KafkaError(KafkaError._TRANSPORT, "1/1 brokers are down"))
    errors.count(KafkaError(KafkaError._TRANSPORT, "Disconnected"))
    assert fatal == [] and stats.errors == {"kafka": 2}
    errors.on_error(KafkaError(KafkaError._FATAL, FENCED))
    assert len(fatal) == 1


def test_has_errors_finds_an_error_message_among_good_ones():
    from confluent_kafka import KafkaError

    from k2cli.consume.accumulator import has_errors

    class Message:
        def __init__(self, error):
            self._error = error

        def error(self):
            return self._error

    good = [Message(None) for _ in range(3)]
    assert not has_errors(good) and not has_errors([])
    assert has_errors([*good, Message(KafkaError(KafkaError._PARTITION_EOF)), *good])


def test_a_fatal_line_in_librdkafkas_log_stops_the_consumer_and_other_lines_do_not():
    import logging

    from k2cli.consume.kafka_client import FatalLogWatch

    errors, stats, fatal = _errors()
    watch = FatalLogWatch(errors)
    line = f"FATAL [k2-consume-x#consumer-1] [thrd:main]: {FENCED}: Fatal consumer error: {FENCED}"

    def record(level: int, text: str) -> logging.LogRecord:
        return logging.LogRecord("k2.kafka.librdkafka", level, __file__, 1, text, (), None)

    assert watch.filter(record(logging.WARNING, "SESSTMOUT [x] [thrd:main]: Consumer group session timed out"))
    assert fatal == []
    assert watch.filter(record(logging.CRITICAL, line))  # the line itself is still logged
    assert fatal == [f"Kafka fatal error: {line}"] and stats.errors == {"kafka": 1}

"""Broker measurements for checks: topics and groups through k2cli.kafka.admin, ranges through plain consumers and
producers."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

from k2cli.errors import ServiceUnavailable
from k2cli.kafka import admin
from k2cli.kafka.client_config import client_config
from k2cli.settings import Settings

SETTING = "K2_KAFKA_BOOTSTRAP_SERVERS"


# log_level 0 keeps librdkafka's own connection-refused chatter out of the report's terminal.
_QUIET = {"socket.timeout.ms": 5000, "log_level": 0}


def _base(settings: Settings, controlled: dict[str, Any] | None = None) -> dict[str, Any]:
    return client_config(settings, _QUIET, controlled)


def cluster(settings: Settings, timeout: float = 5.0) -> Any:  # -> ClusterMetadata
    """Cluster metadata (brokers and topics), or ServiceUnavailable naming the setting."""
    return admin.metadata(_base(settings), timeout)


def consumer(settings: Settings, group: str | None = None) -> Any:  # -> confluent_kafka.Consumer
    """A consumer that never commits (for reading offsets and ranges without touching groups' positions)."""
    from confluent_kafka import Consumer

    return Consumer(_base(settings, {"group.id": group or f"k2-validate-reader-{uuid.uuid4().hex[:8]}",
                                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                     "enable.partition.eof": False}))


def partitions(settings: Settings, topic: str, timeout: float = 5.0) -> list[int]:
    """The partition ids of a topic ([] when it does not exist)."""
    return admin.partitions(_base(settings), topic, timeout)


def watermarks(settings: Settings, topic: str, timeout: float = 5.0) -> dict[int, tuple[int, int]]:
    """(low, high) offsets per partition."""
    parts = partitions(settings, topic, timeout)
    marks = admin.watermark_offsets(_base(settings), [(topic, p) for p in parts], timeout)
    return {p: marks[(topic, p)] for p in parts}


def committed(settings: Settings, group: str, topic: str, timeout: float = 10.0) -> dict[int, int | None]:
    """The group's committed offset per partition of a topic (None where it has none)."""
    return admin.committed(_base(settings), group, topic, timeout)


def group_state(settings: Settings, group: str, timeout: float = 10.0) -> tuple[str, int]:
    """(state, member count) of a consumer group; ('UNKNOWN'/'DEAD', 0) for a group the broker does not know."""
    return admin.group_state(_base(settings), group, timeout)


def create_topic(settings: Settings, topic: str, partitions_count: int = 1, timeout: float = 15.0) -> None:
    """Create a topic and wait until it exists."""
    admin.create_topics(_base(settings), [topic], partitions_count, timeout)


def delete_topic(settings: Settings, topic: str, timeout: float = 15.0) -> None:
    """Delete a topic (best effort: errors are ignored, it is clean-up)."""
    with contextlib.suppress(Exception):  # clean-up must not mask the step's result
        admin.delete_topic(_base(settings), topic, timeout)


def produce(settings: Settings, topic: str, values: list[tuple[bytes | None, bytes]],
            partition: int | None = None, timeout: float = 30.0) -> list[tuple[int, int]]:
    """Produce raw values and return (partition, offset) of each, in order."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer(client_config(settings, {**_QUIET, "linger.ms": 5},
                                      {"enable.idempotence": True, "acks": "all"}))
    delivered: list[tuple[int, int] | None] = [None] * len(values)
    failures: list[str] = []

    def on_delivery(index: int) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(err.str())
            else:
                delivered[index] = (msg.partition(), msg.offset())
        return report

    for index, (key, value) in enumerate(values):
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery(index)}
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(topic, **kwargs)
        producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining or failures or any(d is None for d in delivered):
        raise KafkaException(f"produce to {topic} failed: {failures[:1] or [f'{remaining} undelivered']}")
    return [d for d in delivered if d is not None]


def read_range(settings: Settings, topic: str, start: dict[int, int], end: dict[int, int],
               timeout: float = 30.0) -> list[Any]:
    """Every message of a topic with start[p] <= offset < end[p], read without a group commit."""
    import time

    from confluent_kafka import TopicPartition

    wanted = {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}
    if not wanted:
        return []
    c = consumer(settings)
    out: list[Any] = []
    try:
        c.assign([TopicPartition(topic, p, s) for p, (s, _) in wanted.items()])
        remaining = {p: e for p, (_, e) in wanted.items()}
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=1.0):
                if msg.error() is not None:
                    continue
                p = msg.partition()
                if p in remaining and msg.offset() < remaining[p]:
                    out.append(msg)
                    if msg.offset() + 1 >= remaining[p]:
                        del remaining[p]
        if remaining:
            raise ServiceUnavailable(f"reading {topic} partitions {sorted(remaining)} timed out after {timeout} s",
                                     setting=SETTING)
    finally:
        c.close()
    return out

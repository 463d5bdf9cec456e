"""Topics and consumer groups: metadata, create, ensure, delete, describe and committed offsets.

Every call takes a librdkafka client configuration (`k2cli.kafka.client_config.client_config(settings, ...)`,
or the stack's own for its broker) and, optionally, a logger for librdkafka's own lines. No answer from the
brokers, or a topic that cannot be created, is ServiceUnavailable naming K2_KAFKA_BOOTSTRAP_SERVERS; refused
credentials or a failed TLS handshake is KafkaRefused naming the security setting."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from k2cli.errors import ServiceUnavailable
from k2cli.kafka.refusals import RefusalWatch

SETTING = "K2_KAFKA_BOOTSTRAP_SERVERS"
Created = Literal["created", "exists"]


def client(conf: Mapping[str, Any], logger: logging.Logger | None = None,
           watch: RefusalWatch | None = None) -> Any:  # -> confluent_kafka.admin.AdminClient
    """An AdminClient (keep it alive until its futures resolve); `watch` sees its errors."""
    from confluent_kafka.admin import AdminClient

    full = {**conf, "error_cb": watch} if watch is not None else dict(conf)
    return AdminClient(full, logger=logger) if logger is not None else AdminClient(full)


def _where(conf: Mapping[str, Any]) -> str:
    return str(conf.get("bootstrap.servers", "?"))


def _failed(watch: RefusalWatch, handle: Any, text: str) -> ServiceUnavailable:
    """The error to raise for a failed call: the refusal behind it (raised here), else ServiceUnavailable."""
    watch.raise_if_refused(handle)
    return ServiceUnavailable(text, setting=SETTING)


def reason(exc: Exception) -> str:
    """The broker's own words for a KafkaException (its KafkaError's text), else the exception's text."""
    text = getattr(exc.args[0], "str", None) if exc.args else None
    return str(text()) if callable(text) else str(exc)


def metadata(conf: Mapping[str, Any], timeout: float = 5.0, *,
             logger: logging.Logger | None = None) -> Any:  # -> ClusterMetadata
    """Cluster metadata (brokers and topics), or ServiceUnavailable (KafkaRefused: credentials, TLS)."""
    from confluent_kafka import KafkaException

    watch = RefusalWatch(conf)
    handle = client(conf, logger, watch)
    try:
        return handle.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _failed(watch, handle, f"Kafka unreachable at {_where(conf)}: {reason(exc)}") from None


def partitions(conf: Mapping[str, Any], topic: str, timeout: float = 5.0) -> list[int]:
    """The partition ids of a topic ([] when it does not exist)."""
    meta = metadata(conf, timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        return []
    return sorted(meta.partitions)


def create_topics(conf: Mapping[str, Any], topics: Sequence[str], partitions_count: int, timeout: float = 15.0, *,
                  logger: logging.Logger | None = None) -> dict[str, Created]:
    """Create topics (replication 1) and wait for each: "created", or "exists" when it was there already."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    watch = RefusalWatch(conf)
    admin = client(conf, logger, watch)
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions_count, replication_factor=1) for t in topics],
                                  request_timeout=timeout, operation_timeout=timeout)
    outcome: dict[str, Created] = {}
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout)
            outcome[topic] = "created"
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if error is not None and getattr(error, "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
                outcome[topic] = "exists"
                continue
            raise _failed(watch, admin, f"cannot create topic {topic}: {reason(exc)}") from None
    return outcome


def ensure_topic(conf: Mapping[str, Any], topic: str, partitions_count: int, timeout: float = 10.0, *,
                 logger: logging.Logger | None = None) -> Created:
    """Make sure the topic exists: "exists" or "created"; ServiceUnavailable if Kafka cannot be reached."""
    meta = metadata(conf, timeout, logger=logger)
    if topic in meta.topics and not meta.topics[topic].error:
        return "exists"
    return create_topics(conf, [topic], partitions_count, timeout, logger=logger)[topic]


def delete_topic(conf: Mapping[str, Any], topic: str, timeout: float = 15.0) -> None:
    """Delete a topic and wait until the broker has (ServiceUnavailable when it cannot)."""
    from confluent_kafka import KafkaException

    watch = RefusalWatch(conf)
    admin = client(conf, watch=watch)
    try:
        admin.delete_topics([topic], request_timeout=timeout)[topic].result(timeout=timeout)
    except KafkaException as exc:
        raise _failed(watch, admin, f"cannot delete topic {topic}: {reason(exc)}") from None


def group_state(conf: Mapping[str, Any], group: str, timeout: float = 10.0) -> tuple[str, int]:
    """(state, member count) of a consumer group; ('UNKNOWN'/'DEAD', 0) for a group the broker does not know."""
    from confluent_kafka import KafkaException

    watch = RefusalWatch(conf)
    admin = client(conf, watch=watch)
    futures = admin.describe_consumer_groups([group], request_timeout=timeout)
    try:
        desc = futures[group].result()
    except KafkaException as exc:
        raise _failed(watch, admin, f"describing consumer group {group} failed: {reason(exc)}") from None
    state = getattr(desc.state, "name", str(desc.state))
    return state, len(desc.members)


def committed(conf: Mapping[str, Any], group: str, topic: str, timeout: float = 10.0) -> dict[int, int | None]:
    """The group's committed offset per partition of a topic (None where it has none)."""
    from confluent_kafka import Consumer, TopicPartition

    parts = partitions(conf, topic)
    if not parts:
        return {}
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        result = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=timeout)
    finally:
        consumer.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in result}


def group_offsets(conf: Mapping[str, Any], group: str, timeout: float = 10.0) -> dict[tuple[str, int], int | None]:
    """Every (topic, partition) the group has committed, with its committed offset (None where negative)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException

    watch = RefusalWatch(conf)
    admin = client(conf, watch=watch)
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=timeout)
    try:
        result = futures[group].result()
    except KafkaException as exc:
        raise _failed(watch, admin, f"listing the offsets of consumer group {group} failed: {reason(exc)}") from None
    return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in result.topic_partitions or []}


def watermark_offsets(conf: Mapping[str, Any], partitions_wanted: Sequence[tuple[str, int]],
                      timeout: float = 5.0) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) offsets of each (topic, partition): the oldest retained and the one the next record gets."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    if not partitions_wanted:
        return {}
    consumer = Consumer({**conf, "group.id": "k2-offsets-reader", "enable.auto.commit": False})
    marks: dict[tuple[str, int], tuple[int, int]] = {}
    try:
        for t, p in partitions_wanted:
            low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=timeout)
            marks[(t, p)] = (low, high)
        return marks
    except KafkaException as exc:
        raise ServiceUnavailable(f"reading watermark offsets failed: {reason(exc)}", setting=SETTING) from None
    finally:
        consumer.close()

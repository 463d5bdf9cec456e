"""Topics and consumer groups: metadata, create, ensure, delete, describe and committed offsets.

Every call takes the bootstrap servers and, optionally, extra client settings (a quiet log level, shorter
socket timeouts) and a logger for librdkafka's own lines. No answer from the brokers, or a topic that
cannot be created, is ServiceUnavailable naming K2_KAFKA_BOOTSTRAP_SERVERS."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from k2cli.errors import ServiceUnavailable

SETTING = "K2_KAFKA_BOOTSTRAP_SERVERS"
Created = Literal["created", "exists"]


def client(bootstrap: str, config: Mapping[str, Any] | None = None,
           logger: logging.Logger | None = None) -> Any:  # -> confluent_kafka.admin.AdminClient
    """An AdminClient for these brokers (keep it alive until its futures resolve)."""
    from confluent_kafka.admin import AdminClient

    conf = {"bootstrap.servers": bootstrap, **(config or {})}
    return AdminClient(conf, logger=logger) if logger is not None else AdminClient(conf)


def reason(exc: Exception) -> str:
    """The broker's own words for a KafkaException (its KafkaError's text), else the exception's text."""
    text = getattr(exc.args[0], "str", None) if exc.args else None
    return str(text()) if callable(text) else str(exc)


def metadata(bootstrap: str, timeout: float = 5.0, *, config: Mapping[str, Any] | None = None,
             logger: logging.Logger | None = None) -> Any:  # -> ClusterMetadata
    """Cluster metadata (brokers and topics), or ServiceUnavailable."""
    from confluent_kafka import KafkaException

    try:
        return client(bootstrap, config, logger).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ServiceUnavailable(f"Kafka unreachable at {bootstrap}: {reason(exc)}", setting=SETTING) from None


def partitions(bootstrap: str, topic: str, timeout: float = 5.0, *,
               config: Mapping[str, Any] | None = None) -> list[int]:
    """The partition ids of a topic ([] when it does not exist)."""
    meta = metadata(bootstrap, timeout, config=config).topics.get(topic)
    if meta is None or meta.error is not None:
        return []
    return sorted(meta.partitions)


def create_topics(bootstrap: str, topics: Sequence[str], partitions_count: int, timeout: float = 15.0, *,
                  config: Mapping[str, Any] | None = None,
                  logger: logging.Logger | None = None) -> dict[str, Created]:
    """Create topics (replication 1) and wait for each: "created", or "exists" when it was there already."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    admin = client(bootstrap, config, logger)
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
            raise ServiceUnavailable(f"cannot create topic {topic}: {reason(exc)}", setting=SETTING) from None
    return outcome


def ensure_topic(bootstrap: str, topic: str, partitions_count: int, timeout: float = 10.0, *,
                 config: Mapping[str, Any] | None = None, logger: logging.Logger | None = None) -> Created:
    """Make sure the topic exists: "exists" or "created"; ServiceUnavailable if Kafka cannot be reached."""
    meta = metadata(bootstrap, timeout, config=config, logger=logger)
    if topic in meta.topics and not meta.topics[topic].error:
        return "exists"
    return create_topics(bootstrap, [topic], partitions_count, timeout, config=config, logger=logger)[topic]


def delete_topic(bootstrap: str, topic: str, timeout: float = 15.0, *,
                 config: Mapping[str, Any] | None = None) -> None:
    """Delete a topic and wait until the broker has (ServiceUnavailable when it cannot)."""
    from confluent_kafka import KafkaException

    admin = client(bootstrap, config)
    try:
        admin.delete_topics([topic], request_timeout=timeout)[topic].result(timeout=timeout)
    except KafkaException as exc:
        raise ServiceUnavailable(f"cannot delete topic {topic}: {reason(exc)}", setting=SETTING) from None


def group_state(bootstrap: str, group: str, timeout: float = 10.0, *,
                config: Mapping[str, Any] | None = None) -> tuple[str, int]:
    """(state, member count) of a consumer group; ('UNKNOWN'/'DEAD', 0) for a group the broker does not know."""
    from confluent_kafka import KafkaException

    admin = client(bootstrap, config)
    futures = admin.describe_consumer_groups([group], request_timeout=timeout)
    try:
        desc = futures[group].result()
    except KafkaException as exc:
        raise ServiceUnavailable(f"describing consumer group {group} failed: {reason(exc)}",
                                 setting=SETTING) from None
    state = getattr(desc.state, "name", str(desc.state))
    return state, len(desc.members)


def committed(bootstrap: str, group: str, topic: str, timeout: float = 10.0, *,
              config: Mapping[str, Any] | None = None) -> dict[int, int | None]:
    """The group's committed offset per partition of a topic (None where it has none)."""
    from confluent_kafka import Consumer, TopicPartition

    parts = partitions(bootstrap, topic, config=config)
    if not parts:
        return {}
    consumer = Consumer({"bootstrap.servers": bootstrap, **(config or {}), "group.id": group,
                         "enable.auto.commit": False})
    try:
        result = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=timeout)
    finally:
        consumer.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in result}


def group_offsets(bootstrap: str, group: str, timeout: float = 10.0, *,
                  config: Mapping[str, Any] | None = None) -> dict[tuple[str, int], int | None]:
    """Every (topic, partition) the group has committed, with its committed offset (None where negative)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException

    admin = client(bootstrap, config)
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=timeout)
    try:
        result = futures[group].result()
    except KafkaException as exc:
        raise ServiceUnavailable(f"listing the offsets of consumer group {group} failed: {reason(exc)}",
                                 setting=SETTING) from None
    return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in result.topic_partitions or []}


def watermark_offsets(bootstrap: str, partitions_wanted: Sequence[tuple[str, int]], timeout: float = 5.0, *,
                      config: Mapping[str, Any] | None = None) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) offsets of each (topic, partition): the oldest retained and the one the next record gets."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    if not partitions_wanted:
        return {}
    consumer = Consumer({"bootstrap.servers": bootstrap, **(config or {}), "group.id": "k2-offsets-reader",
                         "enable.auto.commit": False})
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

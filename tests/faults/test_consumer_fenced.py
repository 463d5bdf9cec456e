"""A running consumer fenced: another member joins its group with its group.instance.id.

librdkafka reports this as a fatal error, the same one a consumer meets when its session times out behind a network
cut and its rejoin races its own old member (librdkafka#3437; the Kafka blackhole scenario of
test_network_faults.py). The first fencing is answered with a new client under the same id, which reads on from the
table; a second fencing within a minute of that means another process really holds the id, and the consumer stops
at once, naming it (exit 3), instead of bouncing partitions with it. A rerun then ends exactly once. Independent
count: the message ids the feeder produced against the Iceberg rows.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError

from tests.conftest import require
from tests.faults import support
from tests.faults.support import (
    Feeder,
    K2Process,
    consume,
    count_ids,
    dlq_count,
    end_offsets,
    iceberg_columns,
    table_offsets,
    wait_caught_up,
    wait_until,
)
from tests.integration.consume_support import create_topic, delete_topic

pytestmark = pytest.mark.faults
TABLE = "market_data.trades_v2"


def is_fatal(err: KafkaError) -> bool:
    """A fatal error (a fencing can come with code _FATAL and fatal() False)."""
    return err.fatal() or err.code() == KafkaError._FATAL


def intrude(group: str, instance_id: str, topic: str, k2: K2Process, seconds: float) -> str:
    """Join the group as instance_id and poll until this intruder is fenced in turn, k2 exits, or time is up;
    how it ended ("fenced", "k2 exited", "timeout")."""
    fatal: list[Any] = []
    intruder = Consumer({"bootstrap.servers": support.BOOTSTRAP, "group.id": group, "group.instance.id": instance_id,
                         "session.timeout.ms": 10000, "enable.auto.commit": False,
                         "error_cb": lambda err: fatal.append(err) if is_fatal(err) else None})
    try:
        intruder.subscribe([topic])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = intruder.poll(0.2)
            if fatal or (msg is not None and msg.error() is not None and is_fatal(msg.error())):
                return "fenced"
            if not k2.alive():
                return "k2 exited"
        return "timeout"
    finally:
        intruder.close()


def test_fenced_consumer_rejoins_once_then_stops_naming_the_other_holder(request, tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic, group = f"test.faults.fenced.{unique}", f"faults-fenced-{unique}"
    create_topic(topic, partitions=2)
    instance_id = f"{group}-{re.sub(r'[^A-Za-z0-9._-]', '-', socket.gethostname())[:64]}-0"
    feeder = Feeder(topic, rate=200, partitions=2).start()
    first = rerun = None
    try:
        first = consume(k2_env, tmp_path / "logs", "--topics", topic, "--group", group, "--flush-interval", "0.5")
        wait_until(lambda: sum(table_offsets(k2_env, TABLE).values()) >= 200, 90, "trades flowing into Iceberg")
        once = intrude(group, instance_id, topic, first, 45)
        after_rejoin = sum(table_offsets(k2_env, TABLE).values())
        if first.alive():
            wait_until(lambda: sum(table_offsets(k2_env, TABLE).values()) >= after_rejoin + 200, 60,
                       "trades written by the rejoined consumer")
        alive_after_once = first.alive()
        fenced_at = time.monotonic()
        again = intrude(group, instance_id, topic, first, 45)
        rc_first = first.wait(30)
        stopped_s = time.monotonic() - fenced_at
        feeder.stop()
        rerun = consume(k2_env, tmp_path / "logs", "--topics", topic, "--group", group, "--flush-interval", "0.5")
        recovery = wait_caught_up(k2_env, TABLE, end_offsets(topic), 120, "the rerun to write the whole topic")
        rc_rerun = rerun.stop(60)
        stats = rerun.summary()
    finally:
        for proc in (first, rerun):
            if proc is not None and proc.alive():
                proc.kill()
        feeder.stop()
        delete_topic(topic)

    rows = iceberg_columns(k2_env, TABLE, "message_id")
    count = count_ids(feeder.valid_ids, [r["message_id"] for r in rows])
    support.record(request.node.nodeid, "consumer fenced", "another member joins with the consumer's "
                   "group.instance.id twice within a minute (librdkafka: fatal); then a rerun", count,
                   dlq_count(k2_env), recovery, "rerun start -> table offsets cover the topic",
                   notes=f"first intruder: {once}; second: {again}; consumer exit {rc_first} {stopped_s:.1f} s "
                         "after the second joined")
    err = first.stderr()
    assert once == "fenced" and alive_after_once, f"the first fencing was not answered by a rejoin: {support.tail(err)}"
    assert "rejoining the group with a new client" in err, support.tail(err)
    assert rc_first == 3, f"the consumer fenced twice did not stop with exit 3 (exit {rc_first}): {support.tail(err)}"
    assert f"another consumer is running with group.instance.id {instance_id}" in err, support.tail(err)
    assert rc_rerun == 0 and stats["unwritten_records"] == 0, support.tail(rerun.stderr())
    assert count.exact, (count, count.detail)

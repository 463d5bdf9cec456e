"""A running consumer fenced: another member joins its group with its group.instance.id.

librdkafka reports this as a fatal error, the same one a consumer meets when its session times out behind a network
partition and its rejoin races its own old member (librdkafka#3437; seen once in the Kafka blackhole scenario of
test_network_faults.py). The consumer must stop at once, naming the error (exit 3), not hang consuming nothing; a
rerun then ends exactly once. Independent count: the message ids the feeder produced against the Iceberg rows.
"""

from __future__ import annotations

import re
import socket
import time

import pytest
from confluent_kafka import Consumer

from tests.conftest import require
from tests.faults import support
from tests.faults.support import (
    Feeder,
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


def test_fenced_consumer_exits_naming_it_and_a_rerun_ends_exactly_once(request, tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic, group = f"test.faults.fenced.{unique}", f"faults-fenced-{unique}"
    create_topic(topic, partitions=2)
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64]
    feeder = Feeder(topic, rate=200, partitions=2).start()
    first = rerun = intruder = None
    try:
        first = consume(k2_env, tmp_path / "logs", "--topics", topic, "--group", group, "--flush-interval", "0.5")
        wait_until(lambda: sum(table_offsets(k2_env, TABLE).values()) >= 200, 90, "trades flowing into Iceberg")
        intruder = Consumer({"bootstrap.servers": support.BOOTSTRAP, "group.id": group,
                             "group.instance.id": f"{group}-{host}-0", "session.timeout.ms": 10000,
                             "enable.auto.commit": False})
        intruder.subscribe([topic])
        fenced_at = time.monotonic()
        while first.alive() and time.monotonic() - fenced_at < 45:
            intruder.poll(0.2)
        rc_first = first.wait(30)
        stopped_s = time.monotonic() - fenced_at
        intruder.close()
        intruder = None
        feeder.stop()
        rerun = consume(k2_env, tmp_path / "logs", "--topics", topic, "--group", group, "--flush-interval", "0.5")
        recovery = wait_caught_up(k2_env, TABLE, end_offsets(topic), 120, "the rerun to write the whole topic")
        rc_rerun = rerun.stop(60)
        stats = rerun.summary()
    finally:
        if intruder is not None:
            intruder.close()
        for proc in (first, rerun):
            if proc is not None and proc.alive():
                proc.kill()
        feeder.stop()
        delete_topic(topic)

    rows = iceberg_columns(k2_env, TABLE, "message_id")
    count = count_ids(feeder.valid_ids, [r["message_id"] for r in rows])
    support.record(request.node.nodeid, "consumer fenced", "another member joins with the consumer's "
                   "group.instance.id (librdkafka: fatal); then a rerun", count, dlq_count(k2_env), recovery,
                   "rerun start -> table offsets cover the topic",
                   notes=f"first consumer exit {rc_first} {stopped_s:.1f} s after the intruder joined")
    err = first.stderr()
    assert rc_first == 3, f"the fenced consumer did not stop with exit 3 (exit {rc_first}): {support.tail(err)}"
    assert "fenced" in err and "k2: error: Kafka fatal error" in err, support.tail(err)
    assert rc_rerun == 0 and stats["unwritten_records"] == 0, support.tail(rerun.stderr())
    assert count.exact, (count, count.detail)

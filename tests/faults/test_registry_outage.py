"""The Schema Registry down for 30 s while trades stream in, and a consumer that starts during the outage.

The shared registry on :8081 keeps running: both processes reach it through a TCP proxy that this test stops
(the port closes, open connections are cut) and starts again. The stream registered its schema before the
outage and keeps producing; the consumer, started during the outage, cannot decode anything until the registry
returns, and must neither dead-letter the records nor skip them. Independent count: the simulator's tape.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import require
from tests.faults import support
from tests.faults.support import (
    TcpProxy,
    consume,
    count_against_tape,
    dlq_count,
    end_offsets,
    iceberg_columns,
    metric,
    table_offsets,
    tape_by_symbol,
    wait_caught_up,
    wait_until,
    with_env,
)
from tests.integration.consume_support import delete_topic, free_port
from tests.integration.stream_support import create_topic, simulator

pytestmark = pytest.mark.faults
TABLE = "market_data.trades_v2"
OUTAGE = 30


def test_schema_registry_down_30s(request, tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.faults.registry.{unique}"
    create_topic(topic, partitions=2)
    proxy = TcpProxy("127.0.0.1", 8081)
    env = with_env(k2_env, schema_registry_url=f"http://127.0.0.1:{proxy.port}")
    tape_path = tmp_path / "tape.jsonl"
    logs = tmp_path / "logs"
    port = free_port()
    consumer = None

    def registry_errors() -> float:
        return metric(port, "k2_consumer_errors_total", 'error_type="registry_unavailable"') or 0

    try:
        with simulator("binance", ["--rate", "200", "--symbols", "BTCUSDT,ETHUSDT", "--record", str(tape_path)],
                       env, tmp_path) as url:
            streamer = support.stream("binance", env, logs, "--url", url, "--symbols", "BTCUSDT,ETHUSDT", "--topic",
                                      topic)
            try:
                wait_until(lambda: sum(end_offsets(topic).values()) >= 300, 60, "the stream producing")
                proxy.down()
                down_at = time.monotonic()
                before = sum(end_offsets(topic).values())
                # started inside the outage: it waits for the registry at start, so its startup window outlasts it
                consumer = consume({**env, "K2_CONSUMER_STARTUP_TIMEOUT": str(OUTAGE * 3)}, logs,
                                   "--topics", topic, "--group", f"faults-registry-{unique}",
                                   "--batch-size", "500", "--flush-interval", "0.5", metrics_port=port)
                wait_until(lambda: registry_errors() >= 1, OUTAGE - 5, "the consumer to meet the outage")
                time.sleep(max(0.0, OUTAGE - 4 - (time.monotonic() - down_at)))
                during = {"rows": sum(table_offsets(env, TABLE).values()), "dlq": dlq_count(env),
                          "produced": sum(end_offsets(topic).values()) - before,
                          "registry_errors": registry_errors()}
                assert consumer.alive() and streamer.alive(), "a process gave up during the registry outage"
                time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
                proxy.up()
                outage = time.monotonic() - down_at
                recovery = wait_caught_up(env, TABLE, end_offsets(topic), 120,
                                          "the consumer to write everything produced before the registry returned")
                time.sleep(2)
                rc_stream = streamer.stop(60)
                summary = streamer.summary()
                wait_caught_up(env, TABLE, end_offsets(topic), 120, "the consumer to read the whole topic")
                rc_consume = consumer.stop(60)
                stats = consumer.summary()
            finally:
                for proc in (streamer, consumer):
                    if proc is not None and proc.alive():
                        proc.kill()
    finally:
        proxy.close()
        delete_topic(topic)

    rows = iceberg_columns(env, TABLE, "symbol", "source_sequence", "price", "quantity", "side")
    count = count_against_tape(tape_by_symbol(tape_path), rows, symbols=("BTCUSDT", "ETHUSDT"),
                               until_us=streamer.stopped_us)
    support.record(request.node.nodeid, "Schema Registry down", f"registry unreachable for {outage:.0f} s (proxy "
                   "stopped); consumer started during the outage", count, dlq_count(env), recovery,
                   "registry back -> table offsets cover what Kafka held then",
                   notes=f"during the outage: {during['produced']} trades produced, {during['rows']} written, "
                         f"{during['registry_errors']:.0f} registry retries", during=during, detail=count.detail)
    assert during["rows"] == 0 and during["dlq"] == 0, during  # nothing decoded, nothing dead-lettered
    assert during["produced"] > 0, "the stream stopped producing while the registry was down"
    assert rc_stream == 0 and summary["undelivered"] == 0, support.tail(streamer.stderr())
    assert rc_consume == 0 and stats["unwritten_records"] == 0, support.tail(consumer.stderr())
    assert stats["errors_by_type"].get("registry_unavailable", 0) >= 1, stats
    assert stats["messages_written"] == summary["produced"] == len(rows)
    assert count.exact, (count, count.detail)
    assert dlq_count(env) == 0

"""The Kafka broker stopped (SIGTERM) or killed (SIGKILL) and restarted while `k2 stream` and `k2 consume` both run.

The shared broker on :9092 is never touched: this uses the throwaway single-node KRaft broker of the stream
back-pressure test (its own ports, K2_HOME and data under the test's temp directory) and points both processes
at it. Independent count: the simulator's --record tape against the Iceberg rows.
"""

from __future__ import annotations

import signal
import time

import pytest

from k2cli.stack import proc as stack_proc
from tests.conftest import require
from tests.faults import support
from tests.faults.support import (
    consume,
    count_against_tape,
    dlq_count,
    end_offsets,
    iceberg_columns,
    table_offsets,
    tape_by_symbol,
    wait_caught_up,
    wait_until,
    with_env,
)
from tests.integration.stream_support import simulator
from tests.integration.test_stream_backpressure import throwaway_kafka  # noqa: F401 - the fixture

pytestmark = pytest.mark.faults
TABLE = "market_data.trades_v2"
OUTAGE = 10  # seconds the broker is down, plus its restart
HOW = {"stop": ("Kafka broker restart", "stopped (SIGTERM)"), "kill": ("Kafka broker kill -9", "killed -9")}


def _tape_covered(env: dict[str, str], tape_path, upto: dict[str, int]) -> bool:
    """Whether Iceberg holds every trade of the tape up to the given sequence per symbol."""
    tape = tape_by_symbol(tape_path)
    rows = iceberg_columns(env, TABLE, "symbol", "source_sequence")
    have: dict[str, set[int]] = {}
    for r in rows:
        have.setdefault(r["symbol"], set()).add(r["source_sequence"])
    return all(t["seq"] in have.get(symbol, ()) for symbol, trades in tape.items() for t in trades
               if t["seq"] <= upto.get(symbol, -1))


@pytest.mark.parametrize("how", list(HOW))
def test_broker_stopped_and_restarted_under_stream_and_consume(request, tmp_path, k2_env, unique, how,
                                                              throwaway_kafka):  # noqa: F811
    scenario, verb = HOW[how]
    require("schema-registry")
    bootstrap, topic, kafka = throwaway_kafka
    env = with_env(k2_env, kafka_bootstrap_servers=bootstrap, backoff_initial=0.2, backoff_max=2)
    tape_path = tmp_path / "tape.jsonl"
    logs = tmp_path / "logs"
    with simulator("binance", ["--rate", "200", "--symbols", "BTCUSDT,ETHUSDT", "--record", str(tape_path)], env,
                   tmp_path) as url:
        streamer = support.stream("binance", env, logs, "--url", url, "--symbols", "BTCUSDT,ETHUSDT", "--topic",
                                  topic)
        consumer = consume(env, logs, "--topics", topic, "--group", f"faults-broker-{unique}", "--batch-size", "500",
                           "--flush-interval", "0.5")
        try:
            wait_until(lambda: sum(table_offsets(env, TABLE).values()) >= 500, 90, "trades flowing into Iceberg")
            if how == "stop":
                kafka.stop()  # the service's own stop: SIGTERM, SIGKILL only after its timeout
            else:
                assert stack_proc.stop(kafka.pid_file, signal.SIGKILL, timeout=10) == "stopped"  # gone at once
            stopped = time.monotonic()
            time.sleep(OUTAGE)
            assert streamer.alive() and consumer.alive(), "a process gave up while the broker was down"
            kafka.start_and_wait()
            outage = time.monotonic() - stopped
            back = {s: trades[-1]["seq"] for s, trades in tape_by_symbol(tape_path).items()}
            recovery = wait_until(lambda: _tape_covered(env, tape_path, back), 180,
                                  "Iceberg to hold every trade generated before the broker returned", interval=0.5)
            time.sleep(3)  # a little more streaming after the recovery
            rc_stream = streamer.stop(90)
            summary = streamer.summary()
            wait_caught_up(env, TABLE, end_offsets(topic, bootstrap), 120, "the consumer to read the whole topic")
            rc_consume = consumer.stop(60)
            stats = consumer.summary()
        finally:
            for proc in (streamer, consumer):
                if proc.alive():
                    proc.kill()

    rows = iceberg_columns(env, TABLE, "symbol", "source_sequence", "price", "quantity", "side")
    count = count_against_tape(tape_by_symbol(tape_path), rows, symbols=("BTCUSDT", "ETHUSDT"),
                               until_us=streamer.stopped_us)
    support.record(request.node.nodeid, scenario, f"throwaway broker {verb}, down {outage:.0f} s "
                   "(restart included) under a running stream and consumer", count, dlq_count(env), recovery,
                   "broker back -> Iceberg holds every trade generated until then",
                   notes=f"stream back-pressure {summary.get('backpressure_seconds', 0):.1f} s, consumer Kafka "
                         f"errors {stats.get('errors_by_type', {}).get('kafka', 0)}", detail=count.detail)
    assert rc_stream == 0 and summary["undelivered"] == 0 and summary["produce_errors"] == {}, \
        support.tail(streamer.stderr())
    assert rc_consume == 0 and stats["unwritten_records"] == 0, support.tail(consumer.stderr())
    assert stats["messages_written"] == summary["produced"] == len(rows)
    assert count.exact, (count, count.detail)
    assert summary["reconnects"] == {}  # the exchange side never noticed
    assert dlq_count(env) == 0

"""Nothing lost at shutdown: the trades Kafka had not acknowledged when `k2 stream` stopped are dead-lettered,
`k2 dlq replay` produces them once the broker is back, and `k2 consume` writes each of them once.

Checked against the simulator's own record of what it sent (trade ids and exact prices), with the real
registry and catalog. The shared broker is never stopped: an unreachable broker is a port where nothing
listens, and the mid-stream outage stops a throwaway broker of this test's own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require, run_k2
from tests.integration.stream_support import (
    BOOTSTRAP,
    REGISTRY,
    create_topic,
    free_port,
    metric_value,
    parse_summary,
    read_record_file,
    read_topic,
    run_stream,
    scrape,
    simulator,
    stream_cmd,
)
from tests.integration.test_stream_backpressure import throwaway_kafka  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration
SYMBOLS = "BTCUSDT,ETHUSDT"
UNACKNOWLEDGED = "unacknowledged_at_shutdown"


def _env(k2_env: dict[str, str], bootstrap: str, unique: str) -> dict[str, str]:
    return {**k2_env, "K2_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "K2_SCHEMA_REGISTRY_URL": REGISTRY,
            "K2_STREAM_FLUSH_TIMEOUT": "2", "K2_TABLE": f"shutdown_{unique}.trades_v2"}


def _dead_lettered(env: dict[str, str]) -> list[tuple[Any, dict[str, Any]]]:
    """(entry, decoded v2 record) of every stream entry that keeps a record."""
    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import AvroDeserializer
    from k2cli.reliability.dlq import iter_entries

    decoder = AvroDeserializer(RegistryClient(REGISTRY))
    return [(e, decoder.decode(e.value)) for e in iter_entries(Path(env["K2_DLQ_DIR"])) if e.value is not None]


def _tape(record: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """What the simulator sent, by (symbol, trade id)."""
    return {(t["symbol"], t["seq"]): t for t in read_record_file(record)}


def _assert_sent(trades: dict[tuple[str, int], tuple[Decimal, Decimal]], tape: dict) -> None:
    """Every trade is one the simulator sent, with its exact price and quantity; ids per symbol consecutive."""
    for (symbol, seq), (price, qty) in trades.items():
        sent = tape.get((symbol, seq))
        assert sent is not None, f"{symbol} {seq} was never sent"
        assert (price, qty) == (Decimal(sent["price"]), Decimal(sent["qty"])), (symbol, seq)
    for symbol in {s for s, _ in trades}:
        seqs = sorted(q for s, q in trades if s == symbol)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{symbol}: trades missing in {seqs}"


def _replay_and_consume(env: dict[str, str], topic: str, unique: str, expected: int, replayed: int) -> list[dict]:
    """`k2 dlq replay --all` (then again: nothing), `k2 consume` the topic; returns the table's rows."""
    out = json.loads(run_k2(["dlq", "replay", "--all", "--format", "json"], env=env, check=True).stdout)
    assert out["counts"] == {"replayed": replayed}, out
    again = json.loads(run_k2(["dlq", "replay", "--all", "--format", "json"], env=env, check=True).stdout)
    assert again["counts"] == {"skipped": replayed}
    run_k2(["consume", "--topics", topic, "--group", f"k2-shutdown-{unique}", "--max-messages", str(expected),
            "--metrics-port", "0", "--format", "json"], env=env, timeout=240, check=True)
    return json.loads(run_k2(["query", "sql", "SELECT symbol, source_sequence, trade_id, price, quantity, "
                              "count(*) AS n FROM trades GROUP BY ALL ORDER BY symbol, source_sequence",
                              "--format", "json"], env=env, check=True).stdout)


def _assert_table(rows: list[dict], trades: dict[tuple[str, int], tuple[Decimal, Decimal]]) -> None:
    """The table holds exactly these trades, once each, with their exact numbers."""
    assert [r["n"] for r in rows] == [1] * len(rows), [r for r in rows if r["n"] != 1]
    got = {(r["symbol"], r["source_sequence"]): (Decimal(r["price"]), Decimal(r["quantity"])) for r in rows}
    assert got == trades
    assert {r["trade_id"] for r in rows} == {f"BINANCE-{seq}" for _, seq in trades}


def test_broker_unreachable_every_trade_is_dead_lettered_and_replays_once(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.shutdown.{unique}"
    create_topic(topic)
    record = tmp_path / "tape.jsonl"
    down = _env(k2_env, f"127.0.0.1:{free_port()}", unique)  # nothing listens there
    with simulator("binance", ["--rate", "200", "--symbols", SYMBOLS, "--record", str(record)], down,
                   tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", SYMBOLS, "--topic", topic,
                                                    "--max-messages", "60"], down)
    assert code == 1, err  # a bounded run that could not deliver fails, as before
    assert (summary["trades_accepted"], summary["undelivered"], summary["dlq_trades"]) == (60, 60, 60), summary
    assert summary["produce_errors"] == {} and summary["produced"] == 0
    assert (f"60 trades were not delivered to Kafka; all 60 are kept in the dead-letter directory "
            f"{down['K2_DLQ_DIR']}") in " ".join(err.split())

    kept = _dead_lettered(down)
    assert len(kept) == 60 and {e.error_type for e, _ in kept} == {UNACKNOWLEDGED}
    assert {e.source["topic"] for e, _ in kept} == {topic}
    assert all(e.source["key"] == r["symbol"] for e, r in kept)
    trades = {(r["symbol"], r["source_sequence"]): (r["price"], r["quantity"]) for _, r in kept}
    assert len(trades) == 60
    _assert_sent(trades, _tape(record))

    env = _env(k2_env, BOOTSTRAP, unique)  # the broker is back
    rows = _replay_and_consume(env, topic, unique, expected=60, replayed=60)
    _assert_table(rows, trades)


def test_broker_gone_mid_stream_what_it_never_acknowledged_is_replayed_once(tmp_path, k2_env, unique,
                                                                            throwaway_kafka):  # noqa: F811
    require("schema-registry")
    bootstrap, topic, kafka = throwaway_kafka
    env = {**_env(k2_env, bootstrap, unique), "K2_PRODUCER_BUFFER_MAX_MESSAGES": "200"}  # full within the outage
    record = tmp_path / "tape.jsonl"
    port = free_port()
    with simulator("binance", ["--rate", "200", "--symbols", SYMBOLS, "--record", str(record)], env,
                   tmp_path) as url:
        proc = subprocess.Popen(stream_cmd("binance", ["--url", url, "--symbols", SYMBOLS, "--topic", topic,
                                                       "--metrics-port", str(port)]),
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_produced(port, 300, 60)
            kafka.stop()  # the broker goes away and stays away until the stream has stopped
            time.sleep(3)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err
    summary = parse_summary(out)
    assert summary["status"] == "interrupted" and summary["produced"] >= 300
    assert summary["undelivered"] > 0 and summary["dlq_trades"] == summary["undelivered"], summary
    assert summary["produced"] + summary["undelivered"] == summary["trades_accepted"]
    kept = _dead_lettered(env)
    assert len(kept) == summary["undelivered"] and {e.error_type for e, _ in kept} == {UNACKNOWLEDGED}
    stages = {e.source["stage"] for e, _ in kept}
    assert {"queue", "buffer"} <= stages, stages  # taken back from librdkafka's queue and from our own buffer

    kafka.start_and_wait()  # the broker is back
    before = {(r["symbol"], r["source_sequence"]): (r["price"], r["quantity"]) for _, r in read_topic(topic, bootstrap)}
    dead = {(r["symbol"], r["source_sequence"]): (r["price"], r["quantity"]) for _, r in kept}
    assert not before.keys() & dead.keys(), "a trade Kafka stored was also dead-lettered"
    trades = before | dead
    assert len(trades) == summary["trades_accepted"]
    _assert_sent(trades, _tape(record))

    rows = _replay_and_consume(env, topic, unique, expected=len(trades), replayed=len(dead))
    _assert_table(rows, trades)


def test_records_the_broker_refuses_are_dead_lettered_and_replay_once_the_topic_is_fixed(tmp_path, k2_env, unique):
    """The other way a trade is not delivered: the broker refuses it (a topic whose max.message.bytes is too
    small for a trade). Once the topic is fixed, `k2 dlq replay` produces the kept records once."""
    require("kafka", "schema-registry")
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

    topic = f"test.stream.refused.{unique}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                  config={"max.message.bytes": "100"})])[topic].result(30)
    record = tmp_path / "tape.jsonl"
    env = _env(k2_env, BOOTSTRAP, unique)
    with simulator("binance", ["--rate", "200", "--symbols", SYMBOLS, "--record", str(record)], env,
                   tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", SYMBOLS, "--topic", topic,
                                                    "--max-messages", "20"], env)
    assert code == 1, err
    assert summary["produce_errors"] == {"MSG_SIZE_TOO_LARGE": 20} and summary["undelivered"] == 0, summary
    assert summary["dlq_trades"] == 20
    assert "20 trades were not delivered to Kafka; all 20 are kept" in " ".join(err.split())
    kept = _dead_lettered(env)
    assert len(kept) == 20 and {e.error_type for e, _ in kept} == {"delivery_failed"}
    trades = {(r["symbol"], r["source_sequence"]): (r["price"], r["quantity"]) for _, r in kept}
    _assert_sent(trades, _tape(record))

    fix = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "1048588", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([fix])[fix].result(30)
    rows = _replay_and_consume(env, topic, unique, expected=20, replayed=20)
    _assert_table(rows, trades)


def _wait_produced(port: int, at_least: int, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = metric_value(scrape(port), "k2_stream_messages_produced_total", 'exchange="binance"')
        except httpx.HTTPError:  # the endpoint starts once the stream is set up
            value = None
        if value is not None and value >= at_least:
            return
        time.sleep(0.3)
    raise AssertionError(f"the stream produced {value} trades, waiting for {at_least}")

"""Back-pressure: with the broker stopped the stream holds a bounded buffer and stops reading; when the
broker returns everything is delivered, nothing lost, nothing duplicated.

The shared stack's broker must not be stopped, so this test starts its own throwaway Kafka (the same jars
and launcher `k2 stack` uses, on free ports, in a temp directory), stops it mid-stream and restarts it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import defaultdict

import pytest

from tests.conftest import require
from tests.integration.stream_support import (
    free_port,
    metric_value,
    parse_summary,
    read_record_file,
    read_topic,
    scrape,
    simulator,
    stream_cmd,
)

pytestmark = pytest.mark.integration
BUFFER = 2000


@pytest.fixture
def throwaway_kafka(tmp_path, unique):
    """(bootstrap, topic, kafka service) of a single-node KRaft broker of our own."""
    from k2cli.stack.config import StackConfig, load_stack_config
    from k2cli.stack.install import kafka_libs
    from k2cli.stack.paths import StackPaths
    from k2cli.stack.services import Kafka

    shared = StackPaths.for_home(load_stack_config().home)
    if not kafka_libs(shared).is_dir():
        pytest.fail(f"Kafka jars not found in {kafka_libs(shared)}; run `k2 stack up` first", pytrace=False)
    topic = f"test.stream.backpressure.{unique}"
    cfg = StackConfig(home=tmp_path / "kafka2", kafka_port=free_port(), kafka_controller_port=free_port(),
                      kafka_heap="256m", topics=(topic,), topic_partitions=2)
    kafka = Kafka(cfg, StackPaths.for_home(cfg.home, cache=shared.cache))
    kafka.paths.ensure()
    kafka.prepare()

    def start() -> None:
        kafka.start()
        deadline = time.monotonic() + 120
        while not kafka.ready().ok:
            if time.monotonic() > deadline:
                raise AssertionError(f"throwaway Kafka did not start; log: {kafka.log_file.read_text()[-2000:]}")
            time.sleep(0.5)

    kafka.start_and_wait = start  # type: ignore[attr-defined]
    start()
    kafka.after_start()
    try:
        yield f"127.0.0.1:{cfg.kafka_port}", topic, kafka
    finally:
        kafka.stop()


def _wait_metric(port, name, labels, predicate, timeout):
    import httpx

    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = metric_value(scrape(port), name, labels)
        except httpx.HTTPError:  # the endpoint starts once the stream is set up
            value = None
        if value is not None and predicate(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"{name}{{{labels}}} stayed at {value}")


def test_broker_down_holds_a_bounded_buffer_and_loses_nothing_when_it_returns(tmp_path, k2_env, throwaway_kafka):
    require("schema-registry")
    bootstrap, topic, kafka = throwaway_kafka
    env = dict(k2_env, K2_KAFKA_BOOTSTRAP_SERVERS=bootstrap, K2_PRODUCER_BUFFER_MAX_MESSAGES=str(BUFFER),
               K2_MEMORY_SAMPLE_INTERVAL="1")
    record = tmp_path / "tape.jsonl"
    port = free_port()
    produced = 'exchange="binance"'
    with simulator("binance", ["--rate", "400", "--symbols", "BTCUSDT,ETHUSDT", "--record", str(record)], env,
                   tmp_path) as url:
        proc = subprocess.Popen(stream_cmd("binance", ["--url", url, "--symbols", "BTCUSDT,ETHUSDT", "--topic", topic,
                                                       "--metrics-port", str(port)]),
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_metric(port, "k2_stream_messages_produced_total", produced, lambda v: v >= 1000, 60)
            kafka.stop()  # the broker goes away mid-stream
            # until the buffer is full and reading blocks: however long the simulator takes to fill it on a busy box
            _wait_metric(port, "k2_stream_backpressure_seconds_total", produced, lambda v: v > 0, 60)
            before = metric_value(scrape(port), "k2_stream_messages_produced_total", produced)
            queue_peak, rss_peak = 0.0, 0.0
            for _ in range(16):  # 8 s with the broker down
                text = scrape(port)
                queue_peak = max(queue_peak, metric_value(text, "k2_stream_producer_queue_messages", produced))
                rss_peak = max(rss_peak, metric_value(text, "process_memory_rss_bytes"))
                time.sleep(0.5)
            text = scrape(port)
            during = metric_value(text, "k2_stream_messages_produced_total", produced)
            blocked = metric_value(text, "k2_stream_backpressure_seconds_total", produced)
            received_down = metric_value(text, "binance_messages_received_total", 'symbol="BTCUSDT"')
            assert during == before, "trades were reported produced while the broker was down"
            assert BUFFER * 0.5 <= queue_peak <= BUFFER + 1, queue_peak  # the buffer filled, and no further
            assert rss_peak < 150 * 2**20, rss_peak
            time.sleep(2)
            received_later = metric_value(scrape(port), "binance_messages_received_total", 'symbol="BTCUSDT"')
            assert received_later == received_down  # reading stopped: back-pressure, not an unbounded queue

            kafka.start_and_wait()  # the broker returns
            _wait_metric(port, "k2_stream_messages_produced_total", produced, lambda v: v > during + 2 * BUFFER, 90)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    summary = parse_summary(out)
    assert summary["status"] == "interrupted" and summary["undelivered"] == 0 and summary["produce_errors"] == {}
    assert summary["backpressure_seconds"] >= 5 and blocked >= 3
    assert summary["reconnects"] == {}

    recs = read_topic(topic, bootstrap=bootstrap)
    assert len(recs) == summary["produced"]
    tape = defaultdict(list)
    for t in read_record_file(record):
        tape[t["symbol"]].append(t["seq"])
    got = defaultdict(list)
    for _, r in recs:
        got[r["symbol"]].append(r["source_sequence"])
    for symbol, seqs in got.items():
        assert len(seqs) == len(set(seqs)), f"{symbol}: duplicates"
        assert sorted(seqs) == tape[symbol][:len(seqs)], f"{symbol}: trades lost around the outage"

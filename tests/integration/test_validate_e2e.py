"""`k2 validate e2e` against the real stack: simulator -> k2 stream -> Kafka -> k2 consume -> Iceberg -> k2 query,
Prometheus and the DLQ. Each test gets its own topic, table, group and data directory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from k2cli.checks.context import Context
from k2cli.checks.probes import kafka, pipeline
from k2cli.settings import Settings
from tests.conftest import require
from tests.integration.validate_support import dead_port, delete_subject, explain, statuses, step, thresholds, validate

pytestmark = pytest.mark.integration


@pytest.fixture
def e2e_env(k2_env, unique):
    """An environment whose trade topic, table and consumer group belong to this test only."""
    topic = f"test.validate.e2e.{unique}"
    settings = Settings()
    kafka.create_topic(settings, topic, 3)
    env = {**k2_env, "K2_BINANCE_TOPIC": topic, "K2_TABLE": f"validate_e2e_{unique}.trades",
           "K2_CONSUMER_GROUP": f"test-validate-e2e-{unique}"}
    yield env
    kafka.delete_topic(settings, topic)
    delete_subject(f"{topic}-value")


def test_e2e_green_streams_test_data_and_checks_every_step(e2e_env, tmp_path):
    require("kafka", "schema-registry", "prometheus")
    # 3,000 messages: streamed at 200/s so the run spans three 5 s Prometheus scrapes of the consumer. The consumer's
    # rate is bounded by that stream (which shares the 2 cores with it), and a busy box slows both and the writes:
    # the seed's floors (>100 msg/s, p99 write <2 s) are performance figures (benchmarks/consume_bench.py); here the
    # steps measure and compare against floors a loaded box holds
    config = thresholds(tmp_path, e2e_messages=3000, e2e_throughput_min_msg_per_s=25, e2e_write_p99_max_s=10)
    proc, report = validate(["e2e"], e2e_env, config=config, timeout=900)
    assert proc.returncode == 0, explain(report) + proc.stderr[-2000:]
    assert set(statuses(report).values()) == {"PASS"}
    assert step(report, "e2e.test-data")["measured"] == 3000
    assert step(report, "e2e.2-no-loss")["summary"] == "3000 consumed = 2999 written + 1 dead-lettered"
    gaps = step(report, "e2e.2-sequence-gaps")
    assert gaps["measured"] >= 1  # the simulator skips an id every 1,000 trades; the consumer must count them
    assert step(report, "e2e.3-records")["measured"] == 2999
    assert step(report, "e2e.4-count")["measured"] == 100
    assert step(report, "e2e.5-throughput")["measured"] > 25
    assert step(report, "e2e.5-write-p99")["threshold"] == "< 10 s"
    assert "original 51 bytes" in step(report, "e2e.6-dlq-poison")["summary"]


def test_e2e_red_names_prometheus_and_the_memory_step(e2e_env, tmp_path):
    require("kafka", "schema-registry")
    # a backlog already on the topic: the run consumes it without streaming
    ctx = Context(Settings())
    pipeline.produce_trades(ctx, e2e_env["K2_BINANCE_TOPIC"], pipeline.make_trades("BTCUSDT", range(1, 1000)))
    config = thresholds(tmp_path, e2e_messages=1000, e2e_memory_max_mb=1)
    env = {**e2e_env, "K2_PROMETHEUS_URL": f"http://localhost:{dead_port()}"}
    proc, report = validate(["e2e"], env, config=config, timeout=600)
    assert proc.returncode == 2
    result = statuses(report)
    assert result["e2e.prometheus"] == "FAIL"
    assert result["e2e.5-throughput"] == result["e2e.5-write-p99"] == "SKIP"
    assert result["e2e.5-memory"] == "FAIL" and step(report, "e2e.5-memory")["threshold"] == "< 1 MB"
    others = {k: v for k, v in result.items() if k not in ("e2e.prometheus", "e2e.5-throughput", "e2e.5-write-p99",
                                                           "e2e.5-memory")}
    assert set(others.values()) == {"PASS"}, explain(report)
    assert step(report, "e2e.1-baseline")["measured"] == 999
    assert step(report, "e2e.2-sequence-gaps")["measured"] == 0


def test_e2e_could_not_run_without_the_topic(k2_env, unique):
    require("kafka", "schema-registry")
    env = {**k2_env, "K2_BINANCE_TOPIC": f"test.validate.e2e.missing.{unique}"}
    proc, report = validate(["e2e", "--step", "e2e.1-baseline"], env)
    assert proc.returncode == 2
    assert step(report, "e2e.1-baseline")["summary"].endswith("does not exist")


def test_e2e_clean_state_waits_out_a_consumer_that_just_finished(e2e_env):
    require("kafka", "schema-registry")
    topic = e2e_env["K2_BINANCE_TOPIC"]
    pipeline.produce_trades(Context(Settings()), topic, pipeline.make_trades("BTCUSDT", range(1, 201)))
    done = subprocess.run([sys.executable, "-m", "k2cli", "consume", "--topics", topic, "--max-messages", "200"],
                          env=e2e_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # a static member keeps its slot for the session timeout after a clean exit; the step waits it out
    proc, report = validate(["e2e", "--step", "e2e.clean-state"], e2e_env)
    assert proc.returncode == 0, explain(report)
    assert "departed member" in step(report, "e2e.clean-state")["summary"]

"""`k2 validate deploy --pre|--post` and `tech-debt` against the real stack, step by step (--step) where the whole
checklist needs things a test cannot provide (a week of production metrics, a finished README)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from k2cli.checks.context import Context
from k2cli.checks.probes import kafka, pipeline
from k2cli.settings import Settings
from tests.conftest import require
from tests.integration.validate_support import delete_subject, explain, statuses, step, thresholds, validate

pytestmark = pytest.mark.integration


@pytest.fixture
def isolated(k2_env, unique):
    """An environment whose trade topic, consumer topics, table and group belong to this test only."""
    topic = f"test.validate.deploy.{unique}"
    kafka.create_topic(Settings(), topic, 3)
    env = {**k2_env, "K2_BINANCE_TOPIC": topic, "K2_CONSUMER_TOPICS": topic,
           "K2_TABLE": f"validate_deploy_{unique}.trades", "K2_CONSUMER_GROUP": f"test-validate-deploy-{unique}"}
    yield env
    kafka.delete_topic(Settings(), topic)
    delete_subject(f"{topic}-value")


def test_deploy_pre_measured_steps(k2_env):
    require("kafka", "schema-registry", "prometheus")
    wanted = ["deploy-pre.sequence-gaps", "deploy-pre.sigterm", "deploy-pre.stream-sigterm", "deploy-pre.lag-alert"]
    proc, report = validate(["deploy", "--pre", "--step", ",".join(wanted)], k2_env, timeout=600)
    assert proc.returncode == 0, explain(report)
    assert step(report, "deploy-pre.sequence-gaps")["measured"] == 3
    assert "stopped by SIGTERM" in " ".join(step(report, "deploy-pre.sigterm")["evidence"])


def test_deploy_pre_reads_a_nested_e2e_run(isolated, tmp_path):
    require("kafka", "schema-registry", "prometheus")
    config = thresholds(tmp_path, e2e_messages=3000, deploy_e2e_min_messages=3000)
    wanted = ["deploy-pre.e2e", "deploy-pre.dlq-injected", "deploy-pre.performance", "deploy-pre.logs-clean",
              "deploy-pre.metrics"]
    proc, report = validate(["deploy", "--pre", "--step", ",".join(wanted)], isolated, config=config, timeout=900)
    assert proc.returncode == 0, explain(report)
    assert step(report, "deploy-pre.e2e")["measured"] == 3000
    assert any("e2e.6-dlq-poison: PASS" in line for line in step(report, "deploy-pre.dlq-injected")["evidence"])


def test_deploy_pre_red_when_the_e2e_run_is_too_small(isolated, tmp_path):
    require("kafka", "schema-registry", "prometheus")
    ctx = Context(Settings())
    pipeline.produce_trades(ctx, isolated["K2_BINANCE_TOPIC"], pipeline.make_trades("BTCUSDT", range(1, 500)))
    # deploy_e2e_min_messages stays at the seed's 5,000; the nested run's rate floors are lowered, so that only its
    # size can fail it (500 messages take under 5 s on a quiet box, over it on a busy one: below 100 msg/s)
    config = thresholds(tmp_path, e2e_messages=500, e2e_throughput_min_msg_per_s=1)
    proc, report = validate(["deploy", "--pre", "--step", "deploy-pre.e2e"], isolated, config=config, timeout=600)
    assert proc.returncode == 2, explain(report)
    assert statuses(report) == {"deploy-pre.e2e": "FAIL"}, explain(report)
    assert step(report, "deploy-pre.e2e")["threshold"] == ">= 5000 messages", explain(report)


def test_deploy_post_group_lag_snapshots_freshness_red_then_green(isolated, tmp_path, k2_env):
    require("kafka", "schema-registry")
    ctx = Context(Settings())
    topic = isolated["K2_BINANCE_TOPIC"]
    pipeline.produce_trades(ctx, topic, pipeline.make_trades("BTCUSDT", range(1, 2001)))
    wanted = ["deploy-post.group-healthy", "deploy-post.lag", "deploy-post.snapshots", "deploy-post.freshness"]
    args = ["deploy", "--post", "--step", ",".join(wanted)]

    red_config = thresholds(tmp_path, post_lag_within_s=2)
    proc, report = validate(args, isolated, config=red_config, timeout=300)
    assert proc.returncode == 2
    result = statuses(report)
    assert {s: result[s] for s in wanted} == dict.fromkeys(wanted, "FAIL"), explain(report)
    assert step(report, "deploy-post.lag")["measured"] == 2000

    log = (tmp_path / "consumer.log").open("w")
    consumer = subprocess.Popen([sys.executable, "-m", "k2cli", "consume", "--topics", topic, "--metrics-port", "0"],
                                env=isolated, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60  # the operator validates a deployment that is up, not one still joining
        while kafka.group_state(Settings(), isolated["K2_CONSUMER_GROUP"])[0] != "STABLE":
            assert consumer.poll() is None and time.monotonic() < deadline, (tmp_path / "consumer.log").read_text()
            time.sleep(0.5)
        green_config = thresholds(tmp_path, post_lag_within_s=120)
        proc, report = validate(args, isolated, config=green_config, timeout=300)
    finally:
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(60)
        log.close()
    assert proc.returncode == 0, explain(report)
    assert step(report, "deploy-post.lag")["measured"] < 1000


def test_tech_debt_measured_steps(k2_env):
    require("kafka", "schema-registry")
    wanted = ["tech-debt.api-contract", "tech-debt.serialization", "tech-debt.error-classes", "tech-debt.retry-backoff",
              "tech-debt.dlq-context", "tech-debt.metrics-labels"]
    proc, report = validate(["tech-debt", "--step", ",".join(wanted)], k2_env, timeout=600)
    assert proc.returncode == 0, explain(report)
    assert step(report, "tech-debt.error-classes")["measured"] == 0
    assert step(report, "tech-debt.retry-backoff")["measured"] == 0


def test_tech_debt_red_when_the_registry_is_down(k2_env):
    env = {**k2_env, "K2_SCHEMA_REGISTRY_URL": "http://localhost:1"}
    proc, report = validate(["tech-debt", "--step", "tech-debt.serialization"], env, timeout=120)
    assert proc.returncode == 2
    result = statuses(report)
    assert result["tech-debt.registry"] == "FAIL" and result["tech-debt.serialization"] == "SKIP"

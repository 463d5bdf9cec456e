"""`k2 validate deploy --post --rehearse`: the post-deployment checklist against a short-lived simulator-fed
pipeline on the real stack (broker, registry, catalog, Prometheus scraping the streams and the consumer)."""

from __future__ import annotations

import re
import socket
import time

import pytest

from k2cli.checks.probes import kafka
from k2cli.exchanges import registry
from k2cli.settings import Settings
from tests.conftest import require, run_k2
from tests.integration.validate_support import dead_port, explain, statuses, step, validate

pytestmark = pytest.mark.integration

MEASURED_BY_THE_REHEARSAL = [
    "deploy-post.group-healthy", "deploy-post.lag", "deploy-post.throughput", "deploy-post.dlq",
    "deploy-post.snapshots", "deploy-post.freshness", "deploy-post.metrics", "deploy-post.alerts-firing",
    "deploy-post.tls", "deploy-post.weekly-report", "deploy-post.memory", "deploy-post.rotations",
    "deploy-post.heartbeat", "deploy-post.stream-rate", "deploy-post.reconnects", "deploy-post.critical-alerts",
    "deploy-post.uptime", "deploy-post.bg-green-deployed", "deploy-post.bg-dual", "deploy-post.bg-green-validated",
]


def _rehearsal_names(stderr: str) -> tuple[list[str], str]:
    found = re.search(r"into (\S+(?:, \S+)*) -> (\S+) \(group", stderr)  # one topic per registered exchange
    assert found, stderr
    topics = found.group(1).split(", ")
    assert len(topics) == len(registry.names()), stderr
    return topics, found.group(2)


def _topics_gone(topics: list[str], timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = [t for t in topics if t in kafka.cluster(Settings()).topics]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_rehearsal_runs_green_and_leaves_nothing_behind(k2_env):
    require("kafka", "schema-registry", "prometheus")
    proc, report = validate(["deploy", "--post", "--rehearse", "1.5"], k2_env, timeout=600)
    assert proc.returncode == 0, explain(report) + proc.stderr[-2000:]
    result = statuses(report)
    assert {s: result[s] for s in MEASURED_BY_THE_REHEARSAL} == dict.fromkeys(MEASURED_BY_THE_REHEARSAL, "PASS")
    assert set(result.values()) == {"PASS", "MANUAL"}
    assert report["options"]["rehearsal_minutes"] == 1.5
    # the window held the scaled rotations and pings, both exchanges were scraped, the consumer kept up
    jobs = ", ".join(sorted(["k2-consumer", *(d.scrape_job for d in registry.all())]))
    assert f"up: {jobs}" in step(report, "deploy-post.metrics")["summary"]
    assert step(report, "deploy-post.throughput")["measured"] > 100
    assert "1.5 min" in step(report, "deploy-post.weekly-report")["summary"]
    tls = step(report, "deploy-post.tls")
    urls = [line for line in tls["evidence"] if line.startswith("url: ")]
    assert len(urls) == 2 * len(registry.names()) and all(u.startswith("url: wss://127.0.0.1:") for u in urls), tls
    assert "in force: True" in tls["evidence"] and "ca_bundle: (certifi only)" not in tls["evidence"]
    # binance went blue-green before the window: green on the green port beside blue, blue SIGTERMed (exit 0)
    deployed = step(report, "deploy-post.bg-green-deployed")["summary"]
    assert deployed.startswith("green 127.0.0.1:9191 up beside blue 127.0.0.1:9091 for "), deployed
    assert step(report, "deploy-post.bg-dual")["measured"] >= 6
    assert step(report, "deploy-post.bg-green-validated")["measured"] >= 90
    cutover = step(report, "deploy-post.bg-cutover")
    assert cutover["status"] == "MANUAL" and cutover["summary"].startswith("blue 127.0.0.1:9091 went down at "), cutover
    topics, table = _rehearsal_names(proc.stderr)
    assert "rehearsal stopped: consumer exit 0, stream-binance exit 0, stream-kraken exit 0" in proc.stderr
    assert "stream-binance-green exit 0" in proc.stderr
    assert _topics_gone(topics) == []
    done = run_k2(["query", "sql", "SELECT 1", "--format", "json"], env={**k2_env, "K2_TABLE": table})
    assert done.returncode != 0  # the rehearsal's table was purged


def test_rehearsal_turns_red_on_a_tightened_threshold(k2_env):
    require("kafka", "schema-registry", "prometheus")
    env = {**k2_env, "K2_THRESHOLDS": "post_throughput_min_msg_per_s=100000"}
    proc, report = validate(["deploy", "--post", "--rehearse", "1"], env, timeout=600)
    assert proc.returncode == 2, explain(report)
    failed = [s for s, status in statuses(report).items() if status not in ("PASS", "MANUAL")]
    assert failed == ["deploy-post.throughput"], explain(report)
    assert step(report, "deploy-post.throughput")["threshold"] == "> 100000 msg/s"


def test_rehearsal_refuses_a_busy_metrics_port(k2_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**k2_env, "K2_CONSUMER_METRICS_PORT": str(port)}
        proc = run_k2(["validate", "deploy", "--post", "--rehearse", "1", "--format", "json"], env=env, timeout=60)
    assert proc.returncode == 3
    assert f"port {port} (consumer_metrics_port) is in use" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_rehearsal_with_prometheus_down_stops_before_starting_anything(k2_env):
    env = {**k2_env, "K2_PROMETHEUS_URL": f"http://127.0.0.1:{dead_port()}"}
    proc = run_k2(["validate", "deploy", "--post", "--rehearse", "1", "--format", "json"], env=env, timeout=60)
    assert proc.returncode == 3
    assert "Prometheus unreachable" in proc.stderr and "Traceback" not in proc.stderr
    assert "rehearsal stopped: nothing had started" in proc.stderr


def test_rehearse_goes_with_post_only(k2_env):
    proc = run_k2(["validate", "deploy", "--pre", "--rehearse", "1"], env=k2_env, timeout=60)
    assert proc.returncode == 2 and "--rehearse goes with --post" in proc.stderr  # a usage error

"""The deploy files that list exchanges match their templates and the registry (scripts/gen_deploy.py)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from k2cli.exchanges import registry
from k2cli.stack.deploy_files import render_all

ROOT = Path(__file__).resolve().parents[2]


def test_generated_deploy_files_are_current():
    for name, text in render_all(ROOT).items():
        path = ROOT / name
        assert path.exists(), f"{name} missing: run python scripts/gen_deploy.py"
        assert path.read_text() == text, f"{name} drifted from its template or the registry: run scripts/gen_deploy.py"


def test_every_exchange_has_its_alerts_with_the_seed_thresholds():
    groups = yaml.safe_load((ROOT / "deploy/prometheus/rules/k2-stream.yml").read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    kinds = ("MemoryHigh", "MemoryLeakDetected", "NoMessages", "Disconnected", "PongTimeouts", "HeartbeatStale",
             "ReconnectsFrequent")
    for d in registry.all():
        for kind in kinds:
            rule = rules[d.alert(kind)]
            assert rule["labels"]["exchange"] == d.name
            assert f"{d.metric_prefix}_" in rule["expr"], rule["expr"]
        assert rules[d.alert("MemoryHigh")]["expr"].startswith("process_memory_rss_bytes > 400 * 1024 * 1024 and on")
        assert "> 0.8 and on (instance)" in rules[d.alert("MemoryLeakDetected")]["expr"]
    assert len(rules) == len(kinds) * len(registry.all()) + 2  # and the two shared data-health rules


def test_every_exchange_has_a_promtool_test_of_each_of_its_alerts():
    spec = yaml.safe_load((ROOT / "deploy/prometheus/tests/k2-stream-exchanges_test.yml").read_text())
    cases = [c for t in spec["tests"] for c in t["alert_rule_test"]]
    for d in registry.all():
        for kind in ("MemoryHigh", "MemoryLeakDetected", "NoMessages", "Disconnected", "PongTimeouts",
                     "HeartbeatStale", "ReconnectsFrequent"):
            mine = [c for c in cases if c["alertname"] == d.alert(kind)]
            assert any(c["exp_alerts"] for c in mine) and any(not c["exp_alerts"] for c in mine), d.alert(kind)


def test_compose_runs_a_stream_and_creates_the_topic_of_every_exchange():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    topics = compose["services"]["kafka-init"]["command"][0].split("; do")[0].split()
    scrape = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())["scrape_configs"]
    targets = [t for job in scrape if job["job_name"] == "k2-stream" for t in job["static_configs"]]
    for d in registry.all():
        service = compose["services"][f"stream-{d.name}"]
        assert service["command"] == ["stream", d.name, "--metrics-port", str(d.default_metrics_port)]
        assert d.default_topic in topics
        assert {"targets": [f"stream-{d.name}:{d.default_metrics_port}"], "labels": {"exchange": d.name}} in targets
    assert sum("build" in s for s in compose["services"].values()) == 1  # one image, built once


def test_dashboard_has_each_per_exchange_query_for_every_exchange():
    panels = json.loads((ROOT / "deploy/grafana/dashboards/k2.json").read_text())["panels"]
    connected = next(p for p in panels if p["title"] == "Connected")
    assert [t["expr"] for t in connected["targets"]] == [f"max({d.metric_prefix}_connection_status)"
                                                         for d in registry.all()]
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    assert "<metric_prefix>" not in exprs and "<exchange>" not in exprs
    for d in registry.all():
        for family in ("messages_received_total", "reconnects_total", "last_pong_timestamp_seconds",
                       "message_latency_seconds_bucket"):
            assert f"{d.metric_prefix}_{family}" in exprs

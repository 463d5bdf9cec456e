"""The Grafana dashboard is well formed and wired to the provisioned Prometheus data source."""

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "k2.json"


def load():
    return json.loads(DASHBOARD.read_text())


def test_uses_the_provisioned_datasource_uid():
    provisioned = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    panels = [p for p in load()["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] == uid for p in panels)
    assert all(t["datasource"]["uid"] == uid for p in panels for t in p["targets"])


def test_provisioning_points_grafana_at_the_dashboards_folder():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/k2.yml").read_text())["providers"][0]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts


def test_panels_have_unique_ids_titles_and_queries():
    d = load()
    assert d["uid"] == "k2-pipeline" and d["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert p["title"]
        if p["type"] == "row":
            continue
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["expr"].strip() for t in p["targets"]), p["title"]


def test_panels_do_not_overlap_and_fit_the_grid():
    cells = set()
    for p in load()["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel at {x},{y}"
                cells.add((x, y))


def test_the_seed_metrics_have_panels():
    exprs = " ".join(t["expr"] for p in load()["panels"] for t in p.get("targets", []))
    for name in ("process_memory_rss_bytes", "memory_leak_detection_score", "binance_messages_received_total",
                 "binance_connection_rotations_total", "binance_connection_lifetime_seconds",
                 "binance_last_pong_timestamp_seconds", "binance_pong_timeouts_total", "kraken_reconnects_total",
                 "serializer_cache_size", "k2_messages_consumed_total", "k2_consumer_total_lag_messages",
                 "k2_iceberg_write_duration_seconds_bucket", "k2_dlq_entries_total", "k2_circuit_breaker_state"):
        assert name in exprs, name

"""`k2 validate` as an operator types it, without services: help, list, coverage, flag mistakes."""

import json
import subprocess
import sys

import pytest


def k2(*args, env=None):
    return subprocess.run([sys.executable, "-m", "k2cli", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.fixture
def clean_env(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env["K2_HOME"] = str(tmp_path)
    return env


def test_help_lists_every_checklist_and_the_exit_codes(clean_env):
    proc = k2("validate", "--help", env=clean_env)
    assert proc.returncode == 0
    for name in ("prereqs", "e2e", "streaming", "resilience", "deploy", "tech-debt", "list", "coverage"):
        assert name in proc.stdout
    assert "3 could not run" in proc.stdout


def test_list_json_has_every_checklist_step_and_threshold(clean_env):
    proc = k2("validate", "list", "--format", "json", env=clean_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    names = [c["name"] for c in data["checklists"]]
    assert names == ["prereqs", "e2e", "streaming", "resilience", "deploy-pre", "deploy-post", "tech-debt"]
    steps = {s["id"]: s for c in data["checklists"] for s in c["steps"]}
    assert steps["deploy-post.grafana"]["kind"] == "manual" and steps["deploy-post.grafana"]["manual"]["reason"]
    assert steps["streaming.connect"]["thresholds"] == {"streaming_connect_max_s": "< 5 s"}
    limits = {t["name"]: t for t in data["thresholds"]}
    assert limits["e2e_write_p99_max_s"]["default"] == 2 and limits["e2e_write_p99_max_s"]["op"] == "<"


def test_list_shows_thresholds_in_force_from_k2_toml(clean_env, tmp_path):
    config = tmp_path / "k2.toml"
    config.write_text("[thresholds]\nstreaming_connect_max_s = 2.5\n")
    proc = k2("--config", str(config), "validate", "list", "--format", "json", env=clean_env)
    data = json.loads(proc.stdout)
    steps = {s["id"]: s for c in data["checklists"] for s in c["steps"]}
    assert steps["streaming.connect"]["thresholds"] == {"streaming_connect_max_s": "< 2.5 s"}


def test_coverage_json_maps_all_120_items(clean_env):
    proc = k2("validate", "coverage", "--format", "json", env=clean_env)
    rows = json.loads(proc.stdout)
    assert len(rows) == 120 and all(r["steps"] for r in rows)


def test_usage_errors_exit_2_with_one_line(clean_env):
    proc = k2("validate", "deploy", env=clean_env)
    assert proc.returncode == 2 and proc.stderr.strip() == "k2: error: choose exactly one of --pre or --post"
    proc = k2("validate", "prereqs", "--step", "prereqs.nope", env=clean_env)
    assert proc.returncode == 2 and "prereqs has no step 'prereqs.nope'" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = k2("validate", "prereqs", "--format", "yaml", env=clean_env)
    assert proc.returncode == 2 and "yaml" in proc.stderr  # a usage error, like every command's


def test_a_checklist_that_cannot_start_exits_3(clean_env, tmp_path):
    config = tmp_path / "k2.toml"
    config.write_text("[thresholds]\nservice_latncy_max_ms = 10\n")
    proc = k2("--config", str(config), "validate", "prereqs", env=clean_env)
    assert proc.returncode == 3 and "unknown threshold 'service_latncy_max_ms'" in proc.stderr


def test_soak_thresholds_in_the_same_table_are_not_rejected(clean_env, tmp_path):
    config = tmp_path / "k2.toml"
    config.write_text("[thresholds]\nsoak_memory_growth_1h_max_mb = 12\nstreaming_connect_max_s = 3\n")
    proc = k2("--config", str(config), "validate", "prereqs", "--step", "prereqs.dependencies", env=clean_env)
    assert proc.returncode == 0, proc.stderr

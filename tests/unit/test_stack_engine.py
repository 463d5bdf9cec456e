"""The stack engine's pure parts: configuration, templates, and pid ownership (with a real `sleep`)."""

from __future__ import annotations

import os
import signal
import sys
import types
from pathlib import Path

import pytest

from k2cli.stack import proc
from k2cli.stack.config import load_stack_config, stream_scrape_configs
from k2cli.stack.errors import PortInUse, StackConfigError, StackError
from k2cli.stack.paths import StackPaths, find_deploy_dir
from k2cli.stack.templates import packaged, render, render_file


def _settings(**overrides: object) -> types.SimpleNamespace:
    base = dict(home=Path("/tmp/k2-unit"), kafka_bootstrap_servers="localhost:9092",
                schema_registry_url="http://localhost:8081", prometheus_url="http://localhost:9090",
                postgres_uri="postgresql+psycopg2://k2:k2@localhost:5432/k2_catalog",
                binance_topic="market.crypto.trades.binance", kraken_topic="market.crypto.trades.kraken",
                binance_metrics_port=9091, kraken_metrics_port=9093, consumer_metrics_port=9094)
    base.update(overrides)
    return types.SimpleNamespace(**base)


def test_config_derives_ports_from_settings():
    cfg = load_stack_config(_settings(kafka_bootstrap_servers="127.0.0.1:29092,localhost:29093",
                                      schema_registry_url="http://localhost:28081",
                                      postgres_uri="postgresql+psycopg2://u:p@localhost:25432/cat",
                                      prometheus_url="http://127.0.0.1:29090"))
    assert (cfg.kafka_port, cfg.registry_port, cfg.postgres_port, cfg.prometheus_port) == (29092, 28081, 25432,
                                                                                          29090)
    assert (cfg.postgres_user, cfg.postgres_password, cfg.postgres_database) == ("u", "p", "cat")
    assert cfg.topics == ("market.crypto.trades.binance", "market.crypto.trades.kraken",
                          "market.crypto.trades.coinbase")
    assert cfg.topic_partitions == 6


def test_config_refuses_remote_hosts_naming_the_setting():
    with pytest.raises(StackConfigError) as err:
        load_stack_config(_settings(kafka_bootstrap_servers="broker.example.com:9092"))
    assert err.value.setting == "K2_KAFKA_BOOTSTRAP_SERVERS"
    with pytest.raises(StackConfigError) as err:
        load_stack_config(_settings(postgres_uri="postgresql://k2:k2@db.example.com/k2_catalog"))
    assert err.value.setting == "K2_POSTGRES_URI"


def test_config_refuses_two_services_on_one_port(monkeypatch):
    monkeypatch.setenv("K2_STACK_APICURIO_PORT", "9090")
    with pytest.raises(StackConfigError, match="port 9090"):
        load_stack_config(_settings())
    monkeypatch.setenv("K2_STACK_APICURIO_PORT", "not-a-port")
    with pytest.raises(StackConfigError, match="K2_STACK_APICURIO_PORT"):
        load_stack_config(_settings())


def test_render_fills_every_placeholder_or_fails():
    assert render("a={{x}} b={{y}}", {"x": 1, "y": "two"}) == "a=1 b=two"
    with pytest.raises(StackError, match="no value for y"):
        render("{{x}} {{y}}", {"x": 1})


def test_shipped_templates_render_with_the_values_services_give():
    values = {"kafka_version": "4.4.0", "kafka_port": 9092, "controller_port": 19093, "data_dir": "/d",
              "topic_partitions": 6, "log_file": "/l/kafka.log", "registry_port": 8081, "apicurio_port": 18081,
              "run_dir": "/r", "proxied_listeners": "", "proxied_advertised": "", "proxied_protocols": ""}
    values |= {"registry_tls_port": 18443, "tls_cert": "/t/server.pem", "tls_key": "/t/server.key",
               "registry_basic_pattern": "azI6cHc=", "registry_token_pattern": "tok"}
    for parts in (("kafka", "server.properties"), ("kafka", "log4j2.xml"), ("nginx", "registry.conf")):
        text = render_file(packaged(*parts), values)
        assert "{{" not in text
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:19093" in render_file(
        packaged("kafka", "server.properties"), values)
    deploy = find_deploy_dir()
    assert deploy is not None, "deploy/prometheus/prometheus.yml.tmpl not found"
    ports = (("binance", 9091), ("kraken", 9093))
    prom = render_file(deploy / "prometheus" / "prometheus.yml.tmpl",
                       {"scrape_interval": "5s", "rule_files": "  - r/*.yml",
                        "stream_scrape_configs": stream_scrape_configs(ports), "consumer_metrics_port": 9094,
                        "prometheus_port": 9090})
    assert "127.0.0.1:9093" in prom and "scrape_interval: 5s" in prom
    assert "job_name: k2-stream-kraken" in prom and "exchange: kraken" in prom


def _kafka_properties(tmp_path: Path, pairs: tuple[tuple[int, int], ...]) -> str:
    from k2cli.stack.config import StackConfig
    from k2cli.stack.services import Kafka

    kafka = Kafka(StackConfig(home=tmp_path, kafka_proxied_listeners=pairs), StackPaths.for_home(tmp_path))
    values = {"kafka_version": "4.4.0", "kafka_port": 9092, "controller_port": 19093, "data_dir": "/d",
              "topic_partitions": 6, "log_file": "/l/kafka.log", **kafka._proxied_values()}
    return render_file(packaged("kafka", "server.properties"), values)


def test_kafka_proxied_listeners_are_advertised_as_the_proxy_and_absent_by_default(tmp_path):
    plain = _kafka_properties(tmp_path, ())
    assert "PROXIED" not in plain
    assert "\nadvertised.listeners=PLAINTEXT://127.0.0.1:9092\n" in plain
    text = _kafka_properties(tmp_path, ((19100, 29100), (19101, 29101)))
    assert ("listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:19093,PROXIED1://127.0.0.1:19100,"
            "PROXIED2://127.0.0.1:19101\n") in text
    assert ("advertised.listeners=PLAINTEXT://127.0.0.1:9092,PROXIED1://127.0.0.1:29100,"
            "PROXIED2://127.0.0.1:29101\n") in text
    assert "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED1:PLAINTEXT," \
           "PROXIED2:PLAINTEXT\n" in text
    assert "inter.broker.listener.name=PLAINTEXT\n" in text


def test_toxiproxy_is_reused_from_the_cache_and_needs_go_to_build(tmp_path, monkeypatch):
    from k2cli.stack.errors import InstallError
    from k2cli.stack.toxiproxy import ensure_toxiproxy, toxiproxy_binary

    paths = StackPaths.for_home(tmp_path / "home", tmp_path / "cache")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no go
    with pytest.raises(InstallError, match="built with Go, which is not installed"):
        ensure_toxiproxy(paths)
    binary = toxiproxy_binary(paths)
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert ensure_toxiproxy(paths) == binary  # cached: no build, no go needed


def test_port_in_use_names_port_and_service():
    message = str(PortInUse("kafka", 9092))
    assert "port 9092" in message and "kafka" in message and "\n" not in message


def _spawn_sleep(tmp_path: Path) -> proc.PidRecord:
    paths = StackPaths.for_home(tmp_path / "home", tmp_path / "cache")
    return proc.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], paths.log_file("sleeper"),
                      paths.pid_file("sleeper"))


def test_pid_file_tracks_our_process_and_stop_ends_it(tmp_path):
    record = _spawn_sleep(tmp_path)
    pid_file = StackPaths.for_home(tmp_path / "home", tmp_path / "cache").pid_file("sleeper")
    assert proc.owned_pid(pid_file) == record.pid
    assert proc.stop(pid_file, timeout=10) == "stopped"
    assert not proc.is_running(record.pid)
    assert not pid_file.exists()
    assert proc.stop(pid_file) == "not running"


def test_a_recycled_pid_is_never_signalled(tmp_path):
    record = _spawn_sleep(tmp_path)
    pid_file = StackPaths.for_home(tmp_path / "home", tmp_path / "cache").pid_file("sleeper")
    try:
        # Same pid, different start time: another process that happens to have our old pid.
        proc.write_pid_file(pid_file, proc.PidRecord("sleeper", record.pid, record.start_ticks + 1, record.cmd))
        assert proc.owned_pid(pid_file) is None
        assert proc.stop(pid_file, timeout=1) == "not running"
        assert proc.is_running(record.pid), "a process whose start time does not match was signalled"
    finally:
        os.kill(record.pid, signal.SIGKILL)
        proc.wait_exit(record.pid, record.start_ticks, 10)

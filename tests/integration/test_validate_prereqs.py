"""`k2 validate prereqs` against the real local stack: green, then red with the right step named."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from k2cli.exchanges import registry
from tests.conftest import require, run_k2

pytestmark = pytest.mark.integration

XSD = Path(__file__).resolve().parents[1] / "data" / "junit-10.xsd"
ALL_SERVICES = ("kafka", "schema-registry", "postgres", "prometheus")


def statuses(proc) -> dict[str, str]:
    report = json.loads(proc.stdout)
    return {step["id"]: step["status"] for step in report["steps"]}


def dead_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_prereqs_green_against_the_stack(k2_env):
    require(*ALL_SERVICES)
    proc = run_k2(["validate", "prereqs", "--format", "json"], env=k2_env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "PASS" and report["exit_code"] == 0
    steps = {s["id"]: s for s in report["steps"]}
    assert set(steps) == {"prereqs.broker", "prereqs.topics", "prereqs.registry", "prereqs.subjects",
                          "prereqs.catalog", "prereqs.table", "prereqs.warehouse", "prereqs.prometheus",
                          "prereqs.prometheus-k2", "prereqs.dependencies"}
    assert all(s["status"] == "PASS" for s in steps.values())
    assert steps["prereqs.broker"]["measured"] >= 1 and steps["prereqs.broker"]["threshold"] == "< 5000 ms"
    assert steps["prereqs.topics"]["measured"] == len(registry.names())  # one topic per registered exchange
    assert any("k2-consumer" in line for line in steps["prereqs.prometheus-k2"]["evidence"])


@pytest.mark.parametrize(("setting", "value", "failed", "skipped"), [
    ("K2_SCHEMA_REGISTRY_URL", "http://localhost:{port}", "prereqs.registry", ["prereqs.subjects"]),
    ("K2_KAFKA_BOOTSTRAP_SERVERS", "localhost:{port}", "prereqs.broker", ["prereqs.topics"]),
    ("K2_PROMETHEUS_URL", "http://localhost:{port}", "prereqs.prometheus", ["prereqs.prometheus-k2"]),
    ("K2_ICEBERG_CATALOG_URI", "postgresql+psycopg2://k2:k2@localhost:{port}/k2_catalog", "prereqs.catalog",
     ["prereqs.table"]),
])
def test_prereqs_red_when_a_service_is_unreachable(k2_env, setting, value, failed, skipped):
    require(*ALL_SERVICES)
    env = {**k2_env, setting: value.format(port=dead_port())}
    proc = run_k2(["validate", "prereqs", "--format", "json"], env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    result = statuses(proc)
    assert result[failed] == "FAIL"
    assert all(result[s] == "SKIP" for s in skipped)
    others = {k: v for k, v in result.items() if k != failed and k not in skipped}
    assert set(others.values()) == {"PASS"}, others
    step = next(s for s in json.loads(proc.stdout)["steps"] if s["id"] == failed)
    assert setting in step["summary"]  # the report names the setting to fix


def test_prereqs_red_when_a_threshold_is_tightened(k2_env, tmp_path):
    require(*ALL_SERVICES)
    config = tmp_path / "k2.toml"
    config.write_text("[thresholds]\nservice_latency_max_ms = 0.001\n")
    proc = run_k2(["--config", str(config), "validate", "prereqs", "--format", "json"], env=k2_env, timeout=120)
    assert proc.returncode == 2
    result = statuses(proc)
    for step in ("prereqs.broker", "prereqs.registry", "prereqs.catalog", "prereqs.prometheus"):
        assert result[step] == "FAIL", result
    step = next(s for s in json.loads(proc.stdout)["steps"] if s["id"] == "prereqs.registry")
    assert step["threshold"] == "< 0.001 ms" and step["measured"] > 0.001


def test_unknown_threshold_in_config_could_not_run(k2_env, tmp_path):
    config = tmp_path / "k2.toml"
    config.write_text("[thresholds]\nservice_latncy_max_ms = 10\n")
    proc = run_k2(["--config", str(config), "validate", "prereqs"], env=k2_env, timeout=60)
    assert proc.returncode == 3
    assert "unknown threshold 'service_latncy_max_ms'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_junit_report_file_of_a_real_run_validates(k2_env, tmp_path):
    require(*ALL_SERVICES)
    out = tmp_path / "reports" / "prereqs.xml"
    env = {**k2_env, "K2_SCHEMA_REGISTRY_URL": f"http://localhost:{dead_port()}"}
    proc = run_k2(["validate", "prereqs", "--format", "junit", "--output", str(out)], env=env, timeout=120)
    assert proc.returncode == 2
    assert "report written to" in proc.stdout and "prereqs.registry" in proc.stdout  # the rich summary
    doc = etree.parse(str(out))
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(doc)
    failures = doc.findall(".//testcase/failure")
    assert len(failures) == 1
    assert failures[0].getparent().get("name").startswith("prereqs.registry:")


class Forwarder:
    """A TCP forwarder, started late, from a fresh port to the real registry (the registry itself is real)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = dead_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.stopped = threading.Event()

    def start_after(self, delay: float) -> None:
        def serve() -> None:
            time.sleep(delay)
            self.sock.bind(("127.0.0.1", self.port))
            self.sock.listen(16)
            self.sock.settimeout(0.2)
            while not self.stopped.is_set():
                try:
                    client, _ = self.sock.accept()
                except OSError:
                    continue
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


def test_retry_timeout_reruns_the_failing_step_until_green(k2_env):
    require(*ALL_SERVICES)
    forwarder = Forwarder(("localhost", 8081))
    forwarder.start_after(4.0)  # the registry "comes up" 4 s into the run
    try:
        env = {**k2_env, "K2_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{forwarder.port}"}
        proc = run_k2(["validate", "prereqs", "--format", "json", "--retry-timeout", "30", "--retry-interval", "1"],
                      env=env, timeout=120)
    finally:
        forwarder.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["rounds"] >= 2
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["prereqs.registry"]["status"] == "PASS" and steps["prereqs.registry"]["attempts"] >= 2
    assert steps["prereqs.subjects"]["status"] == "PASS"
    assert steps["prereqs.broker"]["attempts"] == 1  # passing steps are not re-run

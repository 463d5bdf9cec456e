"""The local stack against the real services: broker metadata, registry round trips, the PostgreSQL
catalog database, Prometheus with our rules; `k2 stack up` is idempotent; `down` stops only ours.

A service that cannot be reached FAILS the test (never a skip). The shared stack other tests use is
never stopped here: the down/up test runs a second, throwaway stack on other ports in its own K2_HOME.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from k2cli.exchanges import registry
from tests.conftest import require, run_k2

pytestmark = pytest.mark.integration

BOOTSTRAP = "localhost:9092"
REGISTRY = "http://localhost:8081"
PROMETHEUS = "http://localhost:9090"
CONTRACT_TOPICS = ("market.crypto.trades.binance", "market.crypto.trades.kraken")
AVRO = "application/vnd.schemaregistry.v1+json"


def _schema(*fields: tuple[str, object]) -> str:
    return json.dumps({"type": "record", "name": "StackProbe", "namespace": "k2.test",
                       "fields": [{"name": n, "type": t} if not isinstance(t, tuple) else
                                  {"name": n, "type": t[0], "default": t[1]} for n, t in fields]})


def _shared_env() -> dict[str, str]:
    """The environment of the shared stack (the operator's K2_HOME and default ports)."""
    return dict(os.environ, PYTHONUNBUFFERED="1")


# ------------------------------------------------------------------------------------------ Kafka
def test_broker_metadata_and_contract_topics():
    require("kafka")
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(timeout=10)
    assert len(metadata.brokers) == 1, f"expected one KRaft broker, metadata shows {metadata.brokers}"
    for topic in CONTRACT_TOPICS:
        assert topic in metadata.topics, f"contract topic {topic} missing; `k2 stack up` creates it"
        assert len(metadata.topics[topic].partitions) == 6, f"{topic} should have 6 partitions"


def test_broker_produce_and_consume_round_trip():
    require("kafka")
    from confluent_kafka import Consumer, Producer

    topic = f"test.stack.{uuid.uuid4().hex[:10]}"  # auto-created (one partition)
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all"})
    producer.produce(topic, key=b"k", value=b"stack-probe")
    assert producer.flush(30) == 0, "message not delivered within 30s"
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"stack-test-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = None
    deadline = time.monotonic() + 60
    try:
        while got is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got = msg.value()
    finally:
        consumer.close()
    assert got == b"stack-probe", "the produced message was not consumed back within 60s"


# ------------------------------------------------------------------------------------------ registry
def test_registry_register_fetch_list_and_compatibility():
    require("schema-registry")
    import httpx

    subject = f"test.stack.{uuid.uuid4().hex[:10]}-value"
    v1 = _schema(("a", "string"))
    with httpx.Client(base_url=REGISTRY, headers={"Content-Type": AVRO}, timeout=10) as http:
        try:
            resp = http.post(f"/subjects/{subject}/versions", json={"schema": v1})
            assert resp.status_code == 200, resp.text
            schema_id = resp.json()["id"]
            assert isinstance(schema_id, int)

            # Registering the same schema again returns the same id (Confluent semantics).
            again = http.post(f"/subjects/{subject}/versions", json={"schema": v1})
            assert again.status_code == 200 and again.json()["id"] == schema_id

            fetched = http.get(f"/schemas/ids/{schema_id}")
            assert fetched.status_code == 200, fetched.text
            assert json.loads(fetched.json()["schema"]) == json.loads(v1)

            assert http.get(f"/subjects/{subject}/versions").json() == [1]  # /subjects itself pages at 1,000
            latest = http.get(f"/subjects/{subject}/versions/latest").json()
            assert latest["version"] == 1 and latest["id"] == schema_id

            # The global default is Confluent's BACKWARD; a per-subject level can be set and read.
            assert http.get("/config").json()["compatibilityLevel"] == "BACKWARD"
            put = http.put(f"/config/{subject}", json={"compatibility": "FULL"})
            assert put.status_code == 200, put.text
            assert http.get(f"/config/{subject}").json()["compatibilityLevel"] == "FULL"
            http.put(f"/config/{subject}", json={"compatibility": "BACKWARD"})

            # Adding a field with a default is backward compatible; renaming the only field is not.
            ok = http.post(f"/compatibility/subjects/{subject}/versions/latest",
                           json={"schema": _schema(("a", "string"), ("b", ("string", "x")))})
            assert ok.status_code == 200 and ok.json()["is_compatible"] is True, ok.text
            bad = http.post(f"/compatibility/subjects/{subject}/versions/latest",
                            json={"schema": _schema(("c", "string"))})
            assert bad.status_code == 200 and bad.json()["is_compatible"] is False, bad.text
            rejected = http.post(f"/subjects/{subject}/versions", json={"schema": _schema(("c", "string"))})
            assert rejected.status_code == 409, rejected.text

            missing = http.get("/schemas/ids/987654321")
            assert missing.status_code == 404
        finally:
            http.delete(f"/subjects/{subject}")
            http.delete(f"/subjects/{subject}", params={"permanent": "true"})


# ------------------------------------------------------------------------------------------ PostgreSQL
def test_postgres_catalog_database_accepts_k2_user():
    require("postgres")
    import psycopg2
    import sqlalchemy

    from k2cli.settings import load_settings

    conn = psycopg2.connect(host="localhost", port=5432, user="k2", password="k2", dbname="k2_catalog",
                            connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE stack_probe (id int)")
            cur.execute("INSERT INTO stack_probe VALUES (42)")
            cur.execute("SELECT id FROM stack_probe")
            assert cur.fetchone() == (42,)
            cur.execute("SELECT current_user, current_database()")
            assert cur.fetchone() == ("k2", "k2_catalog")
    finally:
        conn.close()
    # The URI in k2's settings (what pyiceberg's SQL catalog is given) works as is.
    engine = sqlalchemy.create_engine(load_settings().postgres_uri)
    try:
        with engine.connect() as c:
            assert c.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------ Prometheus
def test_prometheus_ready_with_k2_rules_and_targets():
    require("prometheus")
    import httpx

    with httpx.Client(base_url=PROMETHEUS, timeout=10) as http:
        assert http.get("/-/ready").status_code == 200
        groups = http.get("/api/v1/rules").json()["data"]["groups"]
        names = {g["name"] for g in groups}
        assert "k2-pipeline" in names, f"rule group k2-pipeline not loaded; groups: {sorted(names)}"
        rules_file = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "k2-alerts.yml"
        assert any(g["file"] == str(rules_file) for g in groups), "rules not loaded from deploy/prometheus/rules"
        deadline = time.monotonic() + 30  # a Prometheus that has just started lists its targets a few seconds later
        while not (targets := http.get("/api/v1/targets").json()["data"]["activeTargets"]):
            assert time.monotonic() < deadline, "Prometheus listed no active targets within 30 s of being ready"
            time.sleep(0.5)
        by_job: dict[str, set[str]] = {}
        for t in targets:
            by_job.setdefault(t["labels"]["job"], set()).add(t["scrapeUrl"])
        # a stream job scrapes its metrics port and the green port (port + 100) of a second collector
        assert by_job.get("k2-stream-binance") == {"http://127.0.0.1:9091/metrics", "http://127.0.0.1:9191/metrics"}
        assert by_job.get("k2-stream-kraken") == {"http://127.0.0.1:9093/metrics", "http://127.0.0.1:9193/metrics"}
        for d in registry.all():  # and every exchange registered since (coinbase :9095)
            port = d.default_metrics_port
            assert by_job.get(d.scrape_job) == {f"http://127.0.0.1:{p}/metrics" for p in (port, port + 100)}, d.name
        assert by_job.get("k2-consumer") == {"http://127.0.0.1:9094/metrics"}
        config = http.get("/api/v1/status/config").json()["data"]["yaml"]
        assert "scrape_interval: 5s" in config


# ------------------------------------------------------------------------------------------ k2 stack
def test_stack_up_is_idempotent_and_status_is_healthy():
    first = run_k2(["stack", "up", "--format", "json"], env=_shared_env(), timeout=900)
    assert first.returncode == 0, f"k2 stack up failed:\n{first.stdout}\n{first.stderr}"
    before = {s["name"]: s for s in json.loads(first.stdout)["services"]}
    core = {"postgres", "kafka", "apicurio", "schema-registry", "prometheus"}
    # `up` keeps the optional services (--with) it finds running: the test command starts s3 and rest-catalog
    assert core <= set(before) <= core | {"s3", "rest-catalog"}, sorted(before)

    second = run_k2(["stack", "up", "--format", "json"], env=_shared_env(), timeout=300)
    assert second.returncode == 0, f"second k2 stack up failed:\n{second.stdout}\n{second.stderr}"
    report = json.loads(second.stdout)
    assert report["healthy"] is True
    for svc in report["services"]:
        assert svc["action"] == "already running", f"{svc['name']}: {svc['action']}"
        assert svc["pid"] == before[svc["name"]]["pid"], f"{svc['name']} was restarted by a second up"

    status = run_k2(["stack", "status", "--format", "json"], env=_shared_env(), timeout=120)
    assert status.returncode == 0, f"k2 stack status is not healthy:\n{status.stdout}\n{status.stderr}"
    data = json.loads(status.stdout)
    assert data["healthy"] is True
    for svc in data["services"]:
        assert svc["healthy"] and svc["running"], f"{svc['name']}: {svc['detail']}"
        assert Path(svc["log"]).is_file(), f"{svc['name']} log missing: {svc['log']}"


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _isolated_env(home: Path) -> tuple[dict[str, str], dict[str, int]]:
    """An environment for a second stack: its own K2_HOME and ports, the shared download cache."""
    from k2cli.settings import load_settings

    shared_cache = os.environ.get("K2_CACHE_DIR") or str(load_settings().home / "cache")
    names = ("kafka", "controller", "apicurio", "apicurio_management", "registry", "postgres", "prometheus",
             "registry_tls", "kafka_sasl", "kafka_mtls")
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update({
        "K2_HOME": str(home),
        "K2_CACHE_DIR": shared_cache,
        "K2_KAFKA_BOOTSTRAP_SERVERS": f"localhost:{ports['kafka']}",
        "K2_STACK_KAFKA_CONTROLLER_PORT": str(ports["controller"]),
        "K2_STACK_KAFKA_SASL_PORT": str(ports["kafka_sasl"]),
        "K2_STACK_KAFKA_MTLS_PORT": str(ports["kafka_mtls"]),
        "K2_STACK_APICURIO_PORT": str(ports["apicurio"]),
        "K2_STACK_APICURIO_MANAGEMENT_PORT": str(ports["apicurio_management"]),
        "K2_SCHEMA_REGISTRY_URL": f"http://localhost:{ports['registry']}",
        "K2_STACK_REGISTRY_TLS_PORT": str(ports["registry_tls"]),
        "K2_POSTGRES_URI": f"postgresql+psycopg2://k2:k2@localhost:{ports['postgres']}/k2_catalog",
        "K2_PROMETHEUS_URL": f"http://localhost:{ports['prometheus']}",
        "K2_STACK_KAFKA_HEAP": "384m",
        "K2_STACK_APICURIO_HEAP": "320m",
        "PYTHONUNBUFFERED": "1",
    })
    return env, ports


def test_port_taken_by_a_stranger_is_one_clear_line(tmp_path):
    env, ports = _isolated_env(tmp_path / "k2home")
    stranger = socket.socket()
    stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    stranger.bind(("127.0.0.1", ports["kafka"]))
    stranger.listen(1)
    try:
        result = run_k2(["stack", "up"], env=env, timeout=120)
    finally:
        stranger.close()
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and f"port {ports['kafka']}" in lines[-1] and "kafka" in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "k2home" / "run").glob("*.pid")), "nothing may be started after a port clash"


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


def _session_members(sessions: set[int]) -> list[int]:
    """Pids of live processes in the given sessions (each service runs in its own session)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[3]) in sessions:
            members.append(int(entry.name))
    return members


def test_zz_isolated_stack_down_stops_ours_and_up_restarts_with_data(tmp_path):
    """Last in this module: a throwaway stack on other ports (the shared one is never touched)."""
    import httpx

    from k2cli.stack.config import StackConfig
    from k2cli.stack.paths import StackPaths
    from k2cli.stack.services import all_services, remove_service_data

    home = tmp_path / "k2home"
    env, ports = _isolated_env(home)
    registry = f"http://localhost:{ports['registry']}"
    subject = "market.crypto.trades.binance-value"
    try:
        up = run_k2(["stack", "up", "--format", "json"], env=env, timeout=900)
        assert up.returncode == 0, f"isolated k2 stack up failed:\n{up.stdout}\n{up.stderr}"
        first = json.loads(up.stdout)
        pids = [s["pid"] for s in first["services"]]
        assert all(s["action"] == "started" for s in first["services"])
        assert len(_session_members(set(pids))) > len(pids), "expected helper processes (workers, backends)"

        resp = httpx.post(f"{registry}/subjects/{subject}/versions", json={"schema": _schema(("a", "string"))},
                          headers={"Content-Type": AVRO}, timeout=10)
        assert resp.status_code == 200, resp.text
        schema_id = resp.json()["id"]

        down = run_k2(["stack", "down", "--format", "json"], env=env, timeout=300)
        assert down.returncode == 0, f"k2 stack down failed:\n{down.stdout}\n{down.stderr}"
        assert {s["action"] for s in json.loads(down.stdout)["services"]} <= {"stopped", "killed"}
        assert _pids_alive(pids) == [], "processes of the stopped stack are still running"
        # Nor any helper they forked (nginx workers, PostgreSQL backends): each service is a session.
        assert _session_members(set(pids)) == [], "child processes of the stopped stack are still running"
        assert not list((home / "run").glob("*.pid"))
        for name, port in ports.items():
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name} port {port} still open after down"

        status = run_k2(["stack", "status", "--format", "json"], env=env, timeout=120)
        assert status.returncode == 1 and json.loads(status.stdout)["healthy"] is False

        # The shared stack is untouched by the other K2_HOME's down.
        require("kafka", "schema-registry", "postgres", "prometheus")

        again = run_k2(["stack", "up", "--format", "json"], env=env, timeout=900)
        assert again.returncode == 0, f"second isolated up failed:\n{again.stdout}\n{again.stderr}"
        # Schemas live in PostgreSQL: the id registered before the restart still resolves.
        fetched = httpx.get(f"{registry}/schemas/ids/{schema_id}", timeout=10)
        assert fetched.status_code == 200, fetched.text
    finally:
        run_k2(["stack", "down"], env=env, timeout=300)
        # Remove the throwaway stack's data (its PostgreSQL cluster may live under /var/lib/k2).
        for svc in all_services(StackConfig(home=home), StackPaths.for_home(home, Path(env["K2_CACHE_DIR"]))):
            remove_service_data(svc)

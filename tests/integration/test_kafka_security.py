"""Stream and consume through the stack's SASL_SSL listener (SCRAM, TLS from the stack's CA), an admin read through
its mTLS listener, and one clear line with a non-zero exit for a wrong password, an untrusted CA, no client
certificate or a missing CA file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import require, run_k2
from tests.integration.consume_support import run_consume, table_rows
from tests.integration.stream_support import run_stream, self_signed_cert, simulator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def listener() -> dict[str, str]:
    """The stack's SASL_SSL listener: bootstrap, SCRAM user and password, the CA that signs its certificate."""
    from k2cli.stack.certs import stack_certs
    from k2cli.stack.config import load_stack_config
    from k2cli.stack.health import port_open
    from k2cli.stack.paths import StackPaths

    require("kafka", "schema-registry")
    cfg = load_stack_config()
    certs = stack_certs(StackPaths.for_home(cfg.home))
    for what, port in (("SASL_SSL", cfg.kafka_sasl_port), ("mTLS", cfg.kafka_mtls_port)):
        if not port_open(port) or not certs.ca.is_file():
            pytest.fail(f"the stack's Kafka has no {what} listener on 127.0.0.1:{port} (or no CA at {certs.ca}): "
                        "re-run `k2 stack up` (it restarts a broker running an older configuration)", pytrace=False)
    return {"bootstrap": f"localhost:{cfg.kafka_sasl_port}", "user": cfg.kafka_scram_user,
            "password": cfg.kafka_scram_password, "ca": str(certs.ca), "mtls": f"localhost:{cfg.kafka_mtls_port}",
            "cert": str(certs.cert), "key": str(certs.key)}


def _secure(env: dict[str, str], listener: dict[str, str], mechanism: str, **override: str) -> dict[str, str]:
    values = {"K2_KAFKA_BOOTSTRAP_SERVERS": listener["bootstrap"], "K2_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
              "K2_KAFKA_SASL_MECHANISM": mechanism, "K2_KAFKA_SASL_USERNAME": listener["user"],
              "K2_KAFKA_SASL_PASSWORD": listener["password"], "K2_KAFKA_SSL_CA_LOCATION": listener["ca"]}
    return {**env, **values, **override}


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and "Traceback" not in err, err
    return lines[-1]


def test_stream_consume_and_status_through_sasl_ssl_with_scram(tmp_path, k2_env, unique, listener):
    topic, group = f"test.kafkasec.{unique}", f"kafkasec-{unique}"
    env512 = _secure(k2_env, listener, "SCRAM-SHA-512")
    with simulator("binance", ["--symbols", "BTCUSDT", "--rate", "200"], k2_env, tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT", "--topic", topic,
                                                    "--max-messages", "20", "--no-backfill"], env512, timeout=60)
    assert code == 0, err
    assert summary["produced"] == 20

    env256 = _secure(k2_env, listener, "SCRAM-SHA-256")
    code, stats, err = run_consume(env256, "--topics", topic, "--group", group, "--max-messages", "20",
                                   "--batch-size", "20", timeout=60)
    assert code == 0, err
    assert stats["messages_consumed"] == 20
    rows = table_rows(env256)
    assert len(rows) == 20 and {r["symbol"] for r in rows} == {"BTCUSDT"}

    # an admin-level read through the same listener: the group's committed offsets and lag
    status = run_k2(["status", "--group", group, "--no-services", "--format", "json"], env256, timeout=60)
    assert "Traceback" not in status.stderr, status.stderr
    mine = [g for g in json.loads(status.stdout)["groups"] if g["name"] == group]
    assert mine and mine[0]["status"] != "ERROR" and mine[0]["partitions"], status.stdout
    assert mine[0]["lag"] == 0, status.stdout


def test_wrong_password_is_one_line_and_a_non_zero_exit(tmp_path, k2_env, unique, listener):
    env = _secure(k2_env, listener, "SCRAM-SHA-512", K2_KAFKA_SASL_PASSWORD="not-the-password")
    topic = f"test.kafkasec.{unique}"
    with simulator("binance", ["--symbols", "BTCUSDT"], k2_env, tmp_path) as url:
        code, _, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT", "--topic", topic,
                                              "--max-messages", "5", "--no-backfill"], env, timeout=60)
    assert code != 0
    line = _one_line(err)
    assert f"Kafka at {listener['bootstrap']} refused authentication: SASL SCRAM-SHA-512 as user" in line, err
    assert "K2_KAFKA_SASL_PASSWORD" in line and "not-the-password" not in err

    code, _, err = run_consume(env, "--topics", topic, "--group", f"kafkasec-{unique}", "--max-messages", "1",
                               timeout=60)
    assert code != 0
    assert "refused authentication: SASL SCRAM-SHA-512" in _one_line(err), err


def test_untrusted_ca_is_one_line_and_a_non_zero_exit(tmp_path, k2_env, unique, listener):
    other_ca, _ = self_signed_cert(tmp_path)  # a certificate that did not sign the broker's
    env = _secure(k2_env, listener, "SCRAM-SHA-256", K2_KAFKA_SSL_CA_LOCATION=str(other_ca))
    code, _, err = run_consume(env, "--topics", f"test.kafkasec.{unique}", "--group", f"kafkasec-{unique}",
                               "--max-messages", "1", timeout=60)
    assert code != 0
    line = _one_line(err)
    assert f"TLS handshake with Kafka at {listener['bootstrap']} failed" in line, err
    assert f"not signed by a CA in {other_ca}" in line

    missing = Path(tmp_path) / "no-such-ca.pem"
    code, _, err = run_consume(_secure(k2_env, listener, "SCRAM-SHA-256", K2_KAFKA_SSL_CA_LOCATION=str(missing)),
                               "--topics", "t", "--max-messages", "1", timeout=30)
    assert code == 2 and f"K2_KAFKA_SSL_CA_LOCATION={str(missing)!r}: no such file" in _one_line(err), err


def test_mtls_admin_read_with_a_client_certificate_and_one_line_without(k2_env, unique, listener):
    mtls = {**k2_env, "K2_KAFKA_BOOTSTRAP_SERVERS": listener["mtls"], "K2_KAFKA_SECURITY_PROTOCOL": "SSL",
            "K2_KAFKA_SSL_CA_LOCATION": listener["ca"]}
    with_cert = {**mtls, "K2_KAFKA_SSL_CERTIFICATE_LOCATION": listener["cert"],
                 "K2_KAFKA_SSL_KEY_LOCATION": listener["key"]}
    status = run_k2(["status", "--group", f"kafkasec-{unique}", "--no-services", "--format", "json"], with_cert,
                    timeout=60)
    group = json.loads(status.stdout)["groups"][0]
    assert group["status"] != "ERROR" and group["state"] in ("DEAD", "UNKNOWN", "EMPTY"), status.stdout

    code, _, err = run_consume(mtls, "--topics", f"test.kafkasec.{unique}", "--max-messages", "1", timeout=60)
    assert code != 0
    assert f"Kafka at {listener['mtls']} refused k2's client certificate (none configured)" in _one_line(err), err

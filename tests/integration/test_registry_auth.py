"""The stack's authenticated registry port (TLS with the stack CA, basic auth or bearer token): schemas registered
and read through it, `k2 stream` + `k2 consume` through it, and a wrong password, a wrong token or an untrusted
certificate failing in one line that names the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2cli.kafka.registry import RegistryClient
from k2cli.kafka.registry_access import RegistryAccess
from k2cli.stack.certs import stack_certs
from k2cli.stack.config import StackConfig, load_stack_config
from k2cli.stack.paths import StackPaths
from tests.conftest import port_open
from tests.integration.consume_support import run_consume, scratch_topic, table_rows
from tests.integration.stream_support import run_stream, simulator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> tuple[StackConfig, Path]:
    """The stack's config and CA; fails (never skips) when the TLS port is not served."""
    cfg = load_stack_config()
    ca = stack_certs(StackPaths.for_home(cfg.home)).ca
    if not port_open("localhost", cfg.registry_tls_port) or not ca.is_file():
        pytest.fail(f"the registry's TLS port {cfg.registry_tls_port} is not served (or {ca} is missing): re-run "
                    "`k2 stack up` (it reloads the schema-registry nginx with the TLS server)", pytrace=False)
    return cfg, ca


def _url(cfg: StackConfig) -> str:
    return f"https://localhost:{cfg.registry_tls_port}"


def _one_line_naming(err: str, setting: str) -> bool:
    lines = err.strip().splitlines()
    return "Traceback" not in err and bool(lines) and setting in lines[-1]


def test_schemas_register_and_read_through_tls_with_basic_auth_and_bearer_token(stack, unique):
    cfg, ca = stack
    subject = f"k2test.regauth.{unique}-value"
    schema = {"type": "record", "name": "Probe", "fields": [{"name": "n", "type": "long"}]}
    basic = RegistryClient(RegistryAccess.of(_url(cfg), f"{cfg.registry_user}:{cfg.registry_password}",
                                             ca_location=str(ca)))
    bearer = RegistryClient(RegistryAccess.of(_url(cfg), bearer_token=cfg.registry_token, ca_location=str(ca)))
    try:
        schema_id = basic.register(subject, schema)
        latest = bearer.latest(subject)
        assert latest is not None and latest["id"] == schema_id
        assert RegistryClient(RegistryAccess.of(_url(cfg), bearer_token=cfg.registry_token, ca_location=str(ca))
                              ).schema_by_id(schema_id) == schema
    finally:
        basic.delete_subject(subject)
        basic.delete_subject(subject, permanent=True)
        basic.close()
        bearer.close()


def test_stream_and_consume_through_the_authenticated_registry(stack, unique, k2_env, tmp_path):
    cfg, ca = stack
    secret = cfg.registry_password
    env = {**k2_env, "K2_SCHEMA_REGISTRY_CA_LOCATION": str(ca)}
    stream_env = {**env, "K2_SCHEMA_REGISTRY_URL": f"https://{cfg.registry_user}:{secret}@localhost:"
                                                   f"{cfg.registry_tls_port}/"}
    consume_env = {**env, "K2_SCHEMA_REGISTRY_URL": _url(cfg), "K2_CONSUMER_DECODE_WORKERS": "1",
                   "K2_SCHEMA_REGISTRY_BASIC_AUTH": f"{cfg.registry_user}:{secret}"}
    with scratch_topic("k2test.regauth", unique, partitions=1) as topic:
        with simulator("binance", ["--rate", "200", "--symbols", "BTCUSDT"], k2_env, tmp_path) as url:
            code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT", "--topic", topic,
                                                        "--duration", "2"], stream_env)
        assert code == 0, err
        produced = summary["produced"]
        assert produced > 0
        rc, stats, cerr = run_consume(consume_env, "--topics", topic, "--max-messages", str(produced),
                                      "--group", f"k2test-regauth-{unique}", "--batch-size", "500")
        assert rc == 0, cerr
    assert len(table_rows(consume_env)) == produced
    assert secret not in err + cerr + str(summary) + str(stats)


def test_wrong_password_wrong_token_and_untrusted_certificate_fail_in_one_line(stack, k2_env):
    cfg, ca = stack
    base = {**k2_env, "K2_SCHEMA_REGISTRY_URL": _url(cfg), "K2_SCHEMA_REGISTRY_CA_LOCATION": str(ca)}
    args = ["--url", "ws://127.0.0.1:9", "--symbols", "BTCUSDT", "--duration", "1"]
    wrong_password = {**base, "K2_SCHEMA_REGISTRY_BASIC_AUTH": f"{cfg.registry_user}:not-the-password"}
    code, _, err = run_stream("binance", args, wrong_password, timeout=60)
    assert code == 2 and _one_line_naming(err, "K2_SCHEMA_REGISTRY_BASIC_AUTH"), err
    assert "not-the-password" not in err
    code, _, err = run_stream("binance", args, {**base, "K2_SCHEMA_REGISTRY_BEARER_TOKEN": "not-the-token"},
                              timeout=60)
    assert code == 2 and _one_line_naming(err, "K2_SCHEMA_REGISTRY_BEARER_TOKEN"), err
    untrusted = {**base, "K2_SCHEMA_REGISTRY_CA_LOCATION": "",
                 "K2_SCHEMA_REGISTRY_BASIC_AUTH": f"{cfg.registry_user}:{cfg.registry_password}"}
    code, _, err = run_stream("binance", args, untrusted, timeout=60)
    assert code == 2 and _one_line_naming(err, "K2_SCHEMA_REGISTRY_CA_LOCATION"), err

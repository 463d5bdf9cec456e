"""Secrets never shown: which names are secrets, what `redact` hides in text, and the values registered at load."""

import io
import json
import logging

import pytest

from k2cli import redaction
from k2cli.errors import K2Error, described, first_line
from k2cli.redaction import MASK, is_secret_name, redact, redact_value, register, secret_values

pytestmark = pytest.mark.usefixtures("settings_env")

# the settings issue 15 adds on other branches, and librdkafka properties of a [kafka] table
SECRET_NAMES = ["kafka_sasl_password", "sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret",
                "ssl.keystore.password", "ssl.key.pem", "schema_registry_basic_auth", "schema_registry_bearer_token",
                "iceberg_catalog_credential", "iceberg_catalog_token", "s3_secret_key", "s3_access_key",
                "binance_rest_api_key", "K2_KAFKA_SASL_PASSWORD", "basic.auth.user.info", "token", "sig", "apikey"]
PLAIN_NAMES = ["kafka_ssl_key_location", "kafka_ssl_ca_location", "kafka_ssl_certificate_location",
               "kafka_sasl_username", "kafka_sasl_mechanism", "kafka_security_protocol", "schema_registry_url",
               "iceberg_catalog_uri", "kafka_properties", "ssl.certificate.pem", "sasl.kerberos.keytab_file",
               "consumer_group", "thresholds", "s3_endpoint", "PASS", "batch_size"]


@pytest.fixture(autouse=True)
def _no_registered_values():
    redaction.clear()
    yield
    redaction.clear()


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_names_that_are_not_secrets(name):
    assert not is_secret_name(name)


@pytest.mark.parametrize(("text", "shown"), [
    ("catalog at postgresql+psycopg2://k2:hunter22@localhost:5432/k2_catalog is unreachable",
     "catalog at postgresql+psycopg2://k2:***@localhost:5432/k2_catalog is unreachable"),
    ("https://reg:p@ss:w0rd@registry:8443/subjects", "https://reg:***@registry:8443/subjects"),
    ("https://h/v1/config?warehouse=w&token=abc123&sig=xyz#frag",
     "https://h/v1/config?warehouse=w&token=***&sig=***#frag"),
    ("K2_KAFKA_SASL_PASSWORD='pa ss' is refused", "K2_KAFKA_SASL_PASSWORD='***' is refused"),
    ("Invalid value for sasl.password=abc, ssl.key.location=/k.pem",
     "Invalid value for sasl.password=***, ssl.key.location=/k.pem"),
    ('{"s3_secret_key": "abc def", "PASS": 1, "token": null}', '{"s3_secret_key": "***", "PASS": 1, "token": null}'),
    ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer ***"),
    ("sent Bearer abcdefghijklmnopqrstuvwxyz", "sent Bearer ***"),
])
def test_redact_hides_secrets_by_shape(text, shown):
    assert redact(text) == shown


@pytest.mark.parametrize("text", [
    "http://localhost:8081/subjects", "https://user@host/path", "basic auth over TLS, Bearer tokens",
    "e2e_errors_max=0, lag=5", "kafka_ssl_key_location=/etc/k2/client.key", "market.crypto.trades.binance",
    '{"PASS": 3, "FAIL": 0}', "",
])
def test_redact_leaves_ordinary_text_alone(text):
    assert redact(text) == text


def test_registered_values_are_scrubbed_in_every_spelling():
    register(["s3cr3t-value", 'we"ird|pa&ss<', "short"])
    assert redact("library said: bad password s3cr3t-value") == f"library said: bad password {MASK}"
    odd = 'we"ird|pa&ss<'
    assert MASK in redact(json.dumps({"m": odd})) and "ird" not in redact(json.dumps({"m": odd}))
    assert redact("we&quot;ird|pa&amp;ss&lt;") == MASK  # XML-escaped (JUnit reports)
    assert redact("we%22ird%7Cpa%26ss%3C") == MASK  # percent-encoded (URLs)
    assert redact("short") == "short"  # under MIN_SCRUBBED: too likely an ordinary word


def test_secret_values_of_settings():
    assert secret_values("kafka_sasl_password", "hunter22") == ["hunter22"]
    assert secret_values("schema_registry_basic_auth", "reg:pw123456") == ["reg:pw123456", "pw123456"]
    assert secret_values("schema_registry_url", "https://reg:pw123456@h:8443") == ["pw123456"]
    assert secret_values("iceberg_catalog_uri", "https://h/catalog?token=tok123456") == ["tok123456"]
    assert secret_values("kafka_properties", {"sasl.password": "pp123456", "client.id": "k2-client"}) == ["pp123456"]
    assert secret_values("kafka_ssl_key_location", "/etc/k2/client.key") == []
    assert secret_values("s3_secret_key", "") == []


def test_redact_value_masks_by_name_and_keeps_the_rest():
    assert redact_value("kafka_sasl_password", "hunter22") == MASK
    assert redact_value("kafka_sasl_password", "") == ""
    assert redact_value("kafka_properties", {"sasl.password": "x", "client.id": "k2"}) == \
        {"sasl.password": MASK, "client.id": "k2"}
    assert redact_value("postgres_uri", "postgresql://k2:k2@db/c") == f"postgresql://k2:{MASK}@db/c"
    assert redact_value("batch_size", 500) == 500


def test_load_settings_registers_the_secrets_in_force(monkeypatch, tmp_path):
    from k2cli.settings import load_settings

    (tmp_path / "k2.toml").write_text('s3_secret_key = "toml-s3-secret"\n')
    monkeypatch.setenv("K2_ICEBERG_CATALOG_URI", "postgresql+psycopg2://k2:env-pg-secret@localhost:5432/c")
    monkeypatch.setenv("K2_KAFKA_SASL_PASSWORD", "env-sasl-secret")  # a setting on another branch: by rule
    load_settings()
    leaked = "errors: toml-s3-secret, env-pg-secret (password of a URL no longer in view), env-sasl-secret"
    assert redact(leaked) == f"errors: {MASK}, {MASK} (password of a URL no longer in view), {MASK}"


def test_errors_are_redacted():
    register(["lib-leaked-secret"])
    exc = RuntimeError("connect failed for postgresql://k2:pw123@h/c with lib-leaked-secret\nmore")
    assert first_line(exc) == f"connect failed for postgresql://k2:{MASK}@h/c with {MASK}"
    assert "lib-leaked-secret" not in described(exc)
    assert str(K2Error("K2_S3_SECRET_KEY='lib-leaked-secret' rejected")) == f"K2_S3_SECRET_KEY='{MASK}' rejected"


def test_log_lines_are_redacted():
    from k2cli.cli.logs import JsonFormatter, UtcFormatter
    from k2cli.kafka.rdlog import CollapseRepeats

    register(['log-se"cret'])
    record = logging.LogRecord("k2.kafka", logging.WARNING, __file__, 1, "auth failed: %s at %s", ('log-se"cret',
                               "https://u:pw@h"), None)
    assert CollapseRepeats().filter(record) and record.getMessage() == f"auth failed: {MASK} at https://u:{MASK}@h"
    record = logging.LogRecord("k2", logging.ERROR, __file__, 1, 'token=%s', ('log-se"cret',), None)
    assert json.loads(JsonFormatter().format(record))["message"] == f"token={MASK}"
    assert UtcFormatter().format(record).endswith(f"token={MASK}")


def test_redacting_stream_writes_redacted_text():
    register(["stream-secret"])
    buf = io.StringIO()
    stream = redaction.redacting(buf)
    print("a stream-secret b", file=stream)
    stream.writelines(["x https://u:p4ss@h\n"])
    assert buf.getvalue() == f"a {MASK} b\nx https://u:{MASK}@h\n"
    assert redaction.redacting(stream) is stream


def test_reports_are_redacted():
    from k2cli.checks import report_json, report_junit, report_markdown
    from tests.unit.test_checks_reports import sample_report

    report = sample_report(exchange="kraken")
    register(["Grafana is not reachable"])  # text the sample report carries, standing in for a leaked secret
    for render in (report_json.render, report_junit.render, report_markdown.render):
        text = render(report)
        assert "Grafana is not reachable" not in text and MASK in text


def test_soak_report_files_are_redacted(tmp_path):
    from k2cli.soak.criteria import thresholds_from
    from k2cli.soak.profile import COMPLETED, MB, RunRecord, Sample
    from k2cli.soak.report import write_outputs

    url = "wss://feed.example/ws?token=soak-token-123"
    record = RunRecord(exchange="kraken", url=url, planned_duration_s=20.0, sample_interval_s=10.0, warmup_s=0.0,
                       thresholds=thresholds_from({}), started_at=1.7e9, ended_at=1.7e9 + 20, status=COMPLETED,
                       stream_command=["k2", "stream", "kraken", "--url", url])
    samples = [Sample(timestamp=1.7e9 + 10 * k, elapsed_s=10.0 * k, rss_bytes=90 * MB, vms_bytes=270 * MB,
                      rss_mb=90.0, vms_mb=270.0, messages=200.0 * k, rate_msg_s=20.0, reconnects={}, drops=0.0,
                      rotations=0.0, pings=k, pong_timeouts=0, integrity_errors=0) for k in (1, 2)]
    _, text = write_outputs(tmp_path, record, samples)
    assert "token=***" in text  # the stream's command line, shown in the report
    assert not [p.name for p in tmp_path.iterdir() if "soak-token-123" in p.read_text()]


def test_usage_errors_are_redacted():
    from typer.testing import CliRunner

    from k2cli.cli.app import app

    result = CliRunner().invoke(app, ["status", "--window", "https://u:usage-pw-123@h/?token=tok-123456"])
    assert result.exit_code == 2 and result.stderr.startswith("k2: error: ")
    assert "usage-pw-123" not in result.stderr and "tok-123456" not in result.stderr


def test_a_report_field_named_key_is_not_a_secret() -> None:
    text = '{"key": "memory", "status": "PASS", "detail": "rss 40 MB"}'
    assert redact(text) == text

"""The one Kafka client configuration builder: protocols, mechanisms, precedence, refusals; and no other module
building a client configuration by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from k2cli.errors import ConfigError
from k2cli.kafka.client_config import client_config
from k2cli.kafka.refusals import KafkaRefused, refusal
from k2cli.settings import load_settings

PACKAGE = Path(__file__).resolve().parents[2] / "k2cli"
# the builder itself, and the stack, which talks to its own broker's PLAINTEXT listener whatever k2's settings say
BUILDS_CONFIGS = {"kafka/client_config.py", "stack/services.py"}


@pytest.fixture(autouse=True)
def _no_k2_env(monkeypatch, tmp_path):
    import os

    for name in [n for n in os.environ if n.startswith("K2_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _conf(**settings: object) -> dict:
    return client_config(load_settings(**settings))


def test_plaintext_by_default_without_sasl_or_ssl_properties():
    conf = _conf()
    assert conf == {"bootstrap.servers": "localhost:9092", "security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_protocols_carry_the_mechanism_and_credentials(protocol, mechanism):
    conf = _conf(kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism, kafka_sasl_username="u",
                 kafka_sasl_password="p")
    assert conf["security.protocol"] == protocol and conf["sasl.mechanism"] == mechanism
    assert (conf["sasl.username"], conf["sasl.password"]) == ("u", "p")


def test_ssl_carries_the_ca_and_client_certificate(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    conf = _conf(kafka_security_protocol="SSL", kafka_ssl_ca_location=str(tmp_path / "ca.pem"),
                 kafka_ssl_certificate_location=str(tmp_path / "client.pem"),
                 kafka_ssl_key_location=str(tmp_path / "client.key"), kafka_ssl_key_password="kp")
    assert conf["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert conf["ssl.certificate.location"] == str(tmp_path / "client.pem")
    assert (conf["ssl.key.location"], conf["ssl.key.password"]) == (str(tmp_path / "client.key"), "kp")
    assert "sasl.mechanism" not in conf


def test_oauthbearer_needs_no_user_or_password():
    conf = _conf(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="OAUTHBEARER")
    assert conf["sasl.mechanism"] == "OAUTHBEARER" and "sasl.username" not in conf


def test_protocol_and_mechanism_are_case_insensitive_and_a_bad_one_names_its_variable(monkeypatch):
    monkeypatch.setenv("K2_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("K2_KAFKA_SASL_MECHANISM", "scram-sha-512")
    settings = load_settings()
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    monkeypatch.setenv("K2_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError) as bad:
        load_settings()
    assert str(bad.value).startswith("K2_KAFKA_SECURITY_PROTOCOL: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT")
    assert "\n" not in str(bad.value)


def test_sasl_without_mechanism_or_password_is_one_line_naming_the_setting():
    with pytest.raises(ConfigError, match="needs K2_KAFKA_SASL_MECHANISM"):
        _conf(kafka_security_protocol="SASL_SSL")
    with pytest.raises(ConfigError, match="SASL SCRAM-SHA-256 needs K2_KAFKA_SASL_PASSWORD"):
        _conf(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256", kafka_sasl_username="u")


def test_a_missing_ca_file_is_one_line_naming_the_setting(tmp_path):
    missing = tmp_path / "nowhere" / "ca.pem"
    with pytest.raises(ConfigError) as bad:
        _conf(kafka_security_protocol="SSL", kafka_ssl_ca_location=str(missing))
    assert str(bad.value) == f"K2_KAFKA_SSL_CA_LOCATION={str(missing)!r}: no such file"


def test_a_certificate_without_its_key_is_refused(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(ConfigError, match="needs both"):
        _conf(kafka_security_protocol="SSL", kafka_ssl_certificate_location=str(tmp_path / "c.pem"))


def test_kafka_table_splits_settings_from_passed_through_properties(tmp_path):
    toml = tmp_path / "k2.toml"
    toml.write_text('[kafka]\nbootstrap_servers = "b:1"\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n'
                    'sasl_username = "u"\nsasl_password = "p"\n"client.id" = "mine"\n'
                    '"socket.keepalive.enable" = true\n"linger.ms" = 7\n')
    settings = load_settings(str(toml))
    assert settings.kafka_bootstrap_servers == "b:1" and settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_properties == {"client.id": "mine", "socket.keepalive.enable": "true", "linger.ms": "7"}
    conf = client_config(settings, {"client.id": "k2-default", "linger.ms": 20}, {"group.id": "g"})
    assert conf["client.id"] == "mine" and conf["linger.ms"] == "7"  # [kafka] over k2's defaults
    assert conf["socket.keepalive.enable"] == "true" and conf["group.id"] == "g"
    assert conf["sasl.username"] == "u"


def test_environment_properties_add_to_the_table(tmp_path, monkeypatch):
    toml = tmp_path / "k2.toml"
    toml.write_text('[kafka]\n"client.id" = "toml"\n"socket.nagle.disable" = true\n')
    monkeypatch.setenv("K2_KAFKA_PROPERTIES", "client.id=env")
    assert load_settings(str(toml)).kafka_properties == {"client.id": "env", "socket.nagle.disable": "true"}


def test_settings_win_over_the_table_and_controlled_properties_are_refused():
    with pytest.raises(ConfigError) as by_setting:
        _conf(kafka_properties={"security.protocol": "SSL"})
    assert "kafka_security_protocol (K2_KAFKA_SECURITY_PROTOCOL)" in str(by_setting.value)
    for name in ("enable.auto.commit", "enable.idempotence", "isolation.level", "group.id", "acks"):
        with pytest.raises(ConfigError) as controlled:
            _conf(kafka_properties={name: "x"})
        assert f"[kafka] {name!r} is controlled by k2" in str(controlled.value)
        assert "\n" not in str(controlled.value)


def test_a_property_librdkafka_does_not_know_or_a_bad_value_is_one_line():
    with pytest.raises(ConfigError) as unknown:
        _conf(kafka_properties={"client.idd": "x"})
    assert str(unknown.value).startswith("[kafka] pass-through properties: "
                                         'No such configuration property: "client.idd"')
    with pytest.raises(ConfigError, match='Expected bool value for "socket.keepalive.enable"'):
        _conf(kafka_properties={"socket.keepalive.enable": "maybe"})
    assert _conf(kafka_properties={"fetch.min.bytes": "5"})["fetch.min.bytes"] == "5"  # a consumer's, accepted


def test_refusals_name_the_broker_mechanism_user_and_settings():
    conf = {"bootstrap.servers": "localhost:19094", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "k2",
            "ssl.ca.location": "/ca.pem"}
    auth = refusal(conf, "_AUTHENTICATION", "sasl_ssl://localhost:19094/bootstrap: SASL authentication error: "
                   "Authentication failed during authentication due to invalid credentials with SASL mechanism "
                   "SCRAM-SHA-512 (after 332ms in state AUTH_REQ)")
    assert isinstance(auth, KafkaRefused)
    assert str(auth).startswith("Kafka at localhost:19094 refused authentication: SASL SCRAM-SHA-512 as user 'k2': "
                                "Authentication failed")
    assert "(after" not in str(auth) and "K2_KAFKA_SASL_PASSWORD" in str(auth)
    tls = refusal(conf, "_SSL", "ssl://h:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
                  "certificate verify failed: broker certificate could not be verified (after 3ms in state X)")
    assert tls is not None and "not signed by a CA in /ca.pem" in str(tls) and "K2_KAFKA_SSL_CA_LOCATION" in str(tls)
    cert = refusal(conf, "_TRANSPORT", "ssl://h:1/bootstrap: Receive failed: error:0A000412:SSL routines::ssl/tls "
                   "alert bad certificate: SSL alert number 42 (after 7ms in state APIVERSION_QUERY)")
    assert cert is not None and str(cert).startswith("Kafka at localhost:19094 refused k2's client certificate "
                                                     "(none configured): ssl/tls alert bad certificate")
    assert refusal(conf, "_TRANSPORT", "Connection refused") is None
    assert refusal(conf, "_ALL_BROKERS_DOWN", "1/1 brokers are down") is None


def test_no_module_builds_a_kafka_client_configuration_by_hand():
    by_hand = re.compile(r"""["']bootstrap\.servers["']\s*:""")
    found = [f"{path.relative_to(PACKAGE)}:{number}" for path in sorted(PACKAGE.rglob("*.py"))
             if str(path.relative_to(PACKAGE)) not in BUILDS_CONFIGS
             for number, line in enumerate(path.read_text().splitlines(), 1) if by_hand.search(line)]
    assert not found, ("build Kafka client configurations with k2cli.kafka.client_config.client_config(settings, "
                       f"defaults, controlled), not by hand: {found}")


class _Err:
    """A librdkafka error as error_cb receives it: its code name and text."""

    def __init__(self, name: str, text: str) -> None:
        self._name, self._text = name, text

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._text


def test_refusal_watch_keeps_the_first_refusal_and_passes_on_only_what_came_before():
    from k2cli.kafka.refusals import RefusalWatch

    passed: list[str] = []
    watch = RefusalWatch({"bootstrap.servers": "b:1", "sasl.mechanism": "PLAIN", "sasl.username": "u",
                          "sasl.password": "secret"}, then=lambda err: passed.append(err.name()))
    watch(_Err("_TRANSPORT", "Connection refused"))
    watch.raise_if_refused()  # nothing refused yet
    watch(_Err("_AUTHENTICATION", "b:1/bootstrap: SASL authentication error: Authentication failed"))
    watch(_Err("_ALL_BROKERS_DOWN", "1/1 brokers are down"))
    assert passed == ["_TRANSPORT"]
    with pytest.raises(KafkaRefused, match="Kafka at b:1 refused authentication: SASL PLAIN as user 'u'"):
        watch.raise_if_refused()
    assert "secret" not in str(watch.refused) and "password" not in watch.conf

"""The one builder of librdkafka client configurations: every Kafka client k2 makes starts from `client_config`.

Precedence, lowest first: the client's own defaults (`defaults`: client.id, linger.ms, timeouts) < k2.toml's
`[kafka]` pass-through properties (`kafka_properties`) < the connection settings (`K2_KAFKA_BOOTSTRAP_SERVERS`,
`K2_KAFKA_SECURITY_PROTOCOL`, `K2_KAFKA_SASL_*`, `K2_KAFKA_SSL_*`) < what the client must control for
correctness (`controlled`: group.id, enable.auto.commit, enable.idempotence, acks, ...). A pass-through property
that a setting or k2 itself controls is refused with one line naming what to use instead.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from k2cli.errors import ConfigError
from k2cli.settings import Settings

SETTING = "K2_KAFKA_PROPERTIES"
# properties a k2 setting sets (the pass-through table would be overridden by it)
BY_SETTING: dict[str, str] = {
    "bootstrap.servers": "kafka_bootstrap_servers",
    "metadata.broker.list": "kafka_bootstrap_servers",
    "security.protocol": "kafka_security_protocol",
    "sasl.mechanism": "kafka_sasl_mechanism",
    "sasl.mechanisms": "kafka_sasl_mechanism",
    "sasl.username": "kafka_sasl_username",
    "sasl.password": "kafka_sasl_password",
    "ssl.ca.location": "kafka_ssl_ca_location",
    "ssl.certificate.location": "kafka_ssl_certificate_location",
    "ssl.key.location": "kafka_ssl_key_location",
    "ssl.key.password": "kafka_ssl_key_password",
    "queue.buffering.max.messages": "producer_buffer_max_messages",
}
# properties k2's delivery and exactly-once accounting depend on
K2_CONTROLLED = frozenset({
    "group.id", "group.instance.id", "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset",
    "isolation.level", "enable.idempotence", "acks", "request.required.acks", "transactional.id",
    "message.timeout.ms", "delivery.timeout.ms", "enable.partition.eof",
})


def check_properties(properties: Mapping[str, str]) -> None:
    """Refuse a pass-through property that a k2 setting or k2 itself controls (one line naming it)."""
    for name in properties:
        if name in BY_SETTING:
            setting = BY_SETTING[name]
            raise ConfigError(f"[kafka] {name!r} is set by {setting} (K2_{setting.upper()}); use that instead",
                              setting=SETTING)
        if name in K2_CONTROLLED:
            raise ConfigError(f"[kafka] {name!r} is controlled by k2 (its delivery and exactly-once accounting "
                              "depend on it) and cannot be passed through", setting=SETTING)


@functools.cache
def _known_to_librdkafka(properties: tuple[tuple[str, str], ...]) -> None:
    """Refuse a property librdkafka does not know, or a value it cannot take (one line, before any client)."""
    from confluent_kafka import KafkaException, Producer

    try:
        Producer({**dict(properties), "log_level": 0})  # no brokers: nothing connects; consumer-only names pass
    except KafkaException as exc:
        text = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise ConfigError(f"[kafka] pass-through properties: {text}", setting=SETTING) from None


def _file(settings: Settings, name: str) -> str:
    """A file-valued setting, checked to exist (one line naming the setting when it does not)."""
    value = str(getattr(settings, name))
    if value and not Path(value).expanduser().is_file():
        env = f"K2_{name.upper()}"
        raise ConfigError(f"{env}={value!r}: no such file", setting=env)
    return str(Path(value).expanduser()) if value else ""


def security(settings: Settings) -> dict[str, str]:
    """The connection's security properties (security.protocol, sasl.*, ssl.*) from the K2_KAFKA_* settings."""
    protocol = settings.kafka_security_protocol
    conf: dict[str, str] = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        mechanism = settings.kafka_sasl_mechanism
        if not mechanism:
            raise ConfigError(f"K2_KAFKA_SECURITY_PROTOCOL={protocol} needs K2_KAFKA_SASL_MECHANISM "
                              "(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)", setting="K2_KAFKA_SASL_MECHANISM")
        conf["sasl.mechanism"] = mechanism
        if mechanism != "OAUTHBEARER":  # OAUTHBEARER's sasl.oauthbearer.* come through [kafka]
            for key in ("username", "password"):
                value = getattr(settings, f"kafka_sasl_{key}")
                if not value:
                    raise ConfigError(f"SASL {mechanism} needs K2_KAFKA_SASL_{key.upper()}",
                                      setting=f"K2_KAFKA_SASL_{key.upper()}")
                conf[f"sasl.{key}"] = value
    if protocol in ("SSL", "SASL_SSL"):
        for prop, name in (("ssl.ca.location", "kafka_ssl_ca_location"),
                           ("ssl.certificate.location", "kafka_ssl_certificate_location"),
                           ("ssl.key.location", "kafka_ssl_key_location")):
            path = _file(settings, name)
            if path:
                conf[prop] = path
        if bool(conf.get("ssl.certificate.location")) != bool(conf.get("ssl.key.location")):
            raise ConfigError("a client certificate needs both K2_KAFKA_SSL_CERTIFICATE_LOCATION and "
                              "K2_KAFKA_SSL_KEY_LOCATION", setting="K2_KAFKA_SSL_KEY_LOCATION")
        if settings.kafka_ssl_key_password:
            conf["ssl.key.password"] = settings.kafka_ssl_key_password
    return conf


def client_config(settings: Settings, defaults: Mapping[str, Any] | None = None,
                  controlled: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A librdkafka configuration: defaults < [kafka] properties < connection settings < controlled."""
    check_properties(settings.kafka_properties)
    if settings.kafka_properties:
        _known_to_librdkafka(tuple(sorted(settings.kafka_properties.items())))
    return {**(defaults or {}), **settings.kafka_properties, "bootstrap.servers": settings.kafka_bootstrap_servers,
            **security(settings), **(controlled or {})}

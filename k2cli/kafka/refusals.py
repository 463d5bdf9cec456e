"""Kafka refusing k2's credentials or TLS: one clear line naming the setting, fatal instead of retried forever.

librdkafka reports a wrong SASL password (`_AUTHENTICATION`, `SASL_AUTHENTICATION_FAILED`) and a failed TLS
handshake (`_SSL`, or `_TRANSPORT` saying "SSL handshake failed") as ordinary errors and keeps reconnecting;
`RefusalWatch` is an error_cb that recognises them so the client's owner can stop with the line."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from k2cli.errors import ConfigError

_AUTH = frozenset({"_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED"})
_TLS = frozenset({"_SSL"})
# the broker's TLS alerts when it requires a client certificate (mTLS) and gets none, or one it does not trust
_CLIENT_CERT_ALERTS = ("alert bad certificate", "alert certificate required", "alert unknown ca")
_AFTER = re.compile(r"\s*\(after \d+ms in state [A-Z_]+\)\s*$")


class KafkaRefused(ConfigError):
    """Kafka refused k2's SASL credentials or its TLS handshake failed: a setting is wrong, retrying cannot help."""


def _reason(text: str, marker: str) -> str:
    """librdkafka's reason after `marker`, without the broker prefix and the '(after Nms in state X)' tail."""
    tail = text.split(marker, 1)[1] if marker in text else text.split(": ", 1)[-1]
    return _AFTER.sub("", tail).strip(" :")


def refusal(conf: Mapping[str, Any], name: str, text: str) -> KafkaRefused | None:
    """The fatal error an error (its code name and text) stands for, or None when it may pass by itself."""
    where = f"Kafka at {conf.get('bootstrap.servers', '?')}"
    if name in _AUTH:
        mechanism = conf.get("sasl.mechanism", "?")
        user = conf.get("sasl.username", "")
        reason = _reason(text, "SASL authentication error: ")
        return KafkaRefused(f"{where} refused authentication: SASL {mechanism} as user {user!r}: {reason} "
                            "(K2_KAFKA_SASL_USERNAME, K2_KAFKA_SASL_PASSWORD)", setting="K2_KAFKA_SASL_PASSWORD")
    if any(alert in text for alert in _CLIENT_CERT_ALERTS):  # arrives as _TRANSPORT, after the handshake
        cert = conf.get("ssl.certificate.location") or "none configured"
        return KafkaRefused(f"{where} refused k2's client certificate ({cert}): {_reason(text, 'SSL routines::')} "
                            "(K2_KAFKA_SSL_CERTIFICATE_LOCATION, K2_KAFKA_SSL_KEY_LOCATION)",
                            setting="K2_KAFKA_SSL_CERTIFICATE_LOCATION")
    if name in _TLS or "SSL handshake failed" in text:
        ca = conf.get("ssl.ca.location") or "the system's CA store"
        if "certificate verify failed" in text:
            reason = f"the broker's certificate is not signed by a CA in {ca}"
        else:
            reason = _reason(text, "SSL handshake failed: ")
        return KafkaRefused(f"TLS handshake with {where} failed: {reason} (K2_KAFKA_SSL_CA_LOCATION, "
                            "K2_KAFKA_SSL_CERTIFICATE_LOCATION, K2_KAFKA_SECURITY_PROTOCOL)",
                            setting="K2_KAFKA_SSL_CA_LOCATION")
    return None


def of_error(conf: Mapping[str, Any], err: Any) -> KafkaRefused | None:
    """`refusal` of a confluent_kafka KafkaError."""
    return refusal(conf, err.name(), err.str())


class RefusalWatch:
    """An error_cb that keeps the first refusal and hands the errors before it on to `then`, if given (after it,
    the owner is stopping with its line: the rest is its echo)."""

    def __init__(self, conf: Mapping[str, Any], then: Callable[[Any], None] | None = None) -> None:
        self.conf = {k: v for k, v in conf.items() if k in ("bootstrap.servers", "sasl.mechanism", "sasl.username",
                                                            "ssl.ca.location", "ssl.certificate.location")}
        self.refused: KafkaRefused | None = None
        self._then = then

    def __call__(self, err: Any) -> None:
        if self.refused is None:
            self.refused = of_error(self.conf, err)
            if self.refused is None and self._then is not None:
                self._then(err)

    def raise_if_refused(self, client: Any = None) -> None:
        """Serve the client's pending callbacks (poll 0), then raise the refusal if one was seen."""
        if client is not None and self.refused is None:
            client.poll(0)
        if self.refused is not None:
            raise self.refused

"""The error hierarchy: every operator-facing failure is a K2Error with one clear line."""

from __future__ import annotations

from k2cli.redaction import redact


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (secrets redacted), or its class name when the message is empty."""
    text = redact(str(exc)).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def described(exc: BaseException) -> str:
    """The exception's class and the first line of its message (secrets redacted, cut at 200 characters)."""
    name = exc.__class__.__name__
    return f"{name}: {first_line(exc)[:200]}" if str(exc).strip() else name


class K2Error(Exception):
    """Base of every error k2 reports to an operator; `setting` names the setting at fault, if any."""

    exit_code = 1

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting

    def __str__(self) -> str:
        base = redact(super().__str__())
        if self.setting and self.setting not in base:
            return f"{base} (setting {self.setting})"
        return base


class ConfigError(K2Error):
    """A setting has a value k2 cannot use."""

    exit_code = 2


class ServiceUnavailable(K2Error):
    """A service k2 needs (broker, registry, catalog, exchange) cannot be reached."""

    exit_code = 3


class InvalidTrade(K2Error, ValueError):
    """A trade value does not fit the v2 record; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

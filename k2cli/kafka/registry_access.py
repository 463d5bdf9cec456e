"""Where the Schema Registry is and how k2 proves who it is: URL, credentials, CA (no HTTP here, so it is cheap to
import and to pickle into decode workers)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

BASIC_AUTH_SETTING = "K2_SCHEMA_REGISTRY_BASIC_AUTH"
BEARER_TOKEN_SETTING = "K2_SCHEMA_REGISTRY_BEARER_TOKEN"
CA_SETTING = "K2_SCHEMA_REGISTRY_CA_LOCATION"

Credential = Literal["basic", "bearer", "none"]


def split_userinfo(url: str) -> tuple[str, str]:
    """A URL without its user-info, and that user-info as `user:pass` (percent-decoded; empty when absent)."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, ""
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, f"{unquote(user)}{colon}{unquote(password)}"


def without_userinfo(url: str) -> str:
    """The URL as it may be printed: any `user:pass@` removed."""
    return split_userinfo(url)[0]


@dataclass(frozen=True)
class RegistryAccess:
    """The registry's URL (never with user-info), basic auth `user:pass`, a bearer token and a CA bundle path."""

    url: str
    basic_auth: str = field(default="", repr=False)
    bearer_token: str = field(default="", repr=False)
    ca_location: str = ""

    @classmethod
    def of(cls, url: str, basic_auth: str = "", bearer_token: str = "", ca_location: str = "") -> RegistryAccess:
        """Access from a URL that may carry user-info; an explicit `basic_auth` wins over the URL's."""
        clean, userinfo = split_userinfo(url)
        return cls(clean.rstrip("/"), basic_auth or userinfo, bearer_token, ca_location)

    @classmethod
    def from_settings(cls, settings: Any) -> RegistryAccess:
        """Access from the K2_SCHEMA_REGISTRY_* settings."""
        return cls.of(settings.schema_registry_url, settings.schema_registry_basic_auth,
                      settings.schema_registry_bearer_token, settings.schema_registry_ca_location)

    @property
    def credential(self) -> Credential:
        """Which credential is sent: a bearer token wins over basic auth."""
        return "bearer" if self.bearer_token else "basic" if self.basic_auth else "none"

    @property
    def credential_setting(self) -> str:
        """The setting an operator fixes when the registry refuses the credential sent."""
        return BEARER_TOKEN_SETTING if self.credential == "bearer" else BASIC_AUTH_SETTING

    def headers(self) -> dict[str, str]:
        """The Authorization header for the credential (none when there is none)."""
        if self.bearer_token:
            return {"Authorization": f"Bearer {self.bearer_token}"}
        if self.basic_auth:
            token = base64.b64encode(self.basic_auth.encode()).decode("ascii")
            return {"Authorization": f"Basic {token}"}
        return {}

"""Registry access: user-info split from the URL, the Authorization header, settings checks, refused/untrusted lines."""

from __future__ import annotations

import base64
import pickle
import ssl

import pytest

from k2cli.errors import ConfigError
from k2cli.kafka.registry import RegistryClient, RegistryRefused, _untrusted
from k2cli.kafka.registry_access import RegistryAccess, split_userinfo, without_userinfo
from k2cli.settings import load_settings


def test_split_userinfo_takes_user_and_password_out_of_the_url() -> None:
    assert split_userinfo("https://alice:s%40cret@reg.example:8443/apis/ccompat/v7") == (
        "https://reg.example:8443/apis/ccompat/v7", "alice:s@cret")
    assert split_userinfo("http://localhost:8081") == ("http://localhost:8081", "")
    assert without_userinfo("https://bob:pw@[::1]:18443/") == "https://[::1]:18443/"


def test_explicit_basic_auth_wins_over_the_urls_user_info() -> None:
    access = RegistryAccess.of("https://url:user@host/", basic_auth="set:ting")
    assert (access.url, access.basic_auth) == ("https://host", "set:ting")
    assert RegistryAccess.of("https://url:user@host/").basic_auth == "url:user"


def test_headers_basic_bearer_and_none() -> None:
    basic = RegistryAccess.of("https://host", basic_auth="k2:pw")
    assert basic.headers() == {"Authorization": "Basic " + base64.b64encode(b"k2:pw").decode()}
    assert basic.credential_setting == "K2_SCHEMA_REGISTRY_BASIC_AUTH"
    bearer = RegistryAccess.of("https://host", basic_auth="k2:pw", bearer_token="tok")
    assert bearer.headers() == {"Authorization": "Bearer tok"}
    assert bearer.credential_setting == "K2_SCHEMA_REGISTRY_BEARER_TOKEN"
    assert RegistryAccess.of("http://host").headers() == {}


def test_access_pickles_and_never_shows_secrets_in_its_repr() -> None:
    access = RegistryAccess.of("https://k2:hunter2@host", bearer_token="tok123", ca_location="/ca.pem")
    assert pickle.loads(pickle.dumps(access)) == access
    assert "hunter2" not in repr(access) and "tok123" not in repr(access)


def test_client_url_carries_no_user_info() -> None:
    client = RegistryClient("https://k2:hunter2@localhost:18443/")
    try:
        assert client.url == "https://localhost:18443"
        assert client.access.basic_auth == "k2:hunter2"
    finally:
        client.close()


def test_unreadable_ca_bundle_is_one_line_naming_the_setting() -> None:
    with pytest.raises(RegistryRefused) as info:
        RegistryClient(RegistryAccess.of("https://localhost:1", ca_location="/nonexistent/ca.pem"))
    assert info.value.exit_code == 2
    assert "K2_SCHEMA_REGISTRY_CA_LOCATION" in str(info.value) and "\n" not in str(info.value)


def test_untrusted_finds_the_verification_failure_in_the_cause_chain() -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "unable to get local issuer certificate"
    outer = OSError("connect failed")
    outer.__cause__ = cause
    assert _untrusted(outer) == "unable to get local issuer certificate"
    assert _untrusted(OSError("connection refused")) is None


def test_settings_reject_basic_auth_without_a_colon_and_never_print_the_urls_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K2_SCHEMA_REGISTRY_BASIC_AUTH", "justauser")
    with pytest.raises(ConfigError, match="K2_SCHEMA_REGISTRY_BASIC_AUTH must be user:password"):
        load_settings()
    monkeypatch.delenv("K2_SCHEMA_REGISTRY_BASIC_AUTH")
    monkeypatch.setenv("K2_SCHEMA_REGISTRY_URL", "ftp://k2:hunter2@host/")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value) and "ftp://host/" in str(info.value)


def test_stack_takes_the_tls_port_from_an_https_registry_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from k2cli.stack.config import _registry_ports

    monkeypatch.delenv("K2_STACK_REGISTRY_TLS_PORT", raising=False)
    assert _registry_ports("https://k2:pw@localhost:28443") == (8081, 28443)
    assert _registry_ports("http://localhost:28081") == (28081, 18443)

"""Per-exchange REST settings: the URL backfill reads and Binance's optional API key."""

import pytest

from k2cli.errors import ConfigError
from k2cli.exchanges import registry
from k2cli.settings import exchange_keys, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    import os

    for key in list(os.environ):
        if key.startswith("K2_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("K2_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def test_defaults_follow_the_contract():
    s = load_settings()
    assert s.exchange("binance").rest_url == "https://api.binance.com"
    assert s.exchange("kraken").rest_url == "https://api.kraken.com"
    assert s.exchange("coinbase").rest_url == "https://api.exchange.coinbase.com"
    assert s.exchange("binance").rest_api_key == ""
    assert s.binance_rest_url == "https://api.binance.com"  # the flat name, as K2_BINANCE_REST_URL spells it


def test_only_binance_has_an_api_key_setting():
    keys = {d.name: exchange_keys(d) for d in registry.all()}
    assert "rest_api_key" in keys["binance"] and "rest_url" in keys["binance"]
    assert "rest_api_key" not in keys["kraken"] and "rest_api_key" not in keys["coinbase"]
    assert all("rest_url" in k for k in keys.values())


def test_env_and_toml_set_them(tmp_path, monkeypatch):
    (tmp_path / "k2.toml").write_text('[kraken]\nrest_url = "http://127.0.0.1:8765"\n')
    monkeypatch.setenv("K2_BINANCE_REST_URL", "http://localhost:9000")
    monkeypatch.setenv("K2_BINANCE_REST_API_KEY", "abc")
    s = load_settings()
    assert s.exchange("kraken").rest_url == "http://127.0.0.1:8765"
    assert s.exchange("binance").rest_url == "http://localhost:9000"
    assert s.exchange("binance").rest_api_key == "abc"
    assert load_settings(coinbase_rest_url="http://sim:1").exchange("coinbase").rest_url == "http://sim:1"


def test_a_rest_url_must_be_http(monkeypatch):
    monkeypatch.setenv("K2_KRAKEN_REST_URL", "ws://localhost:1")
    with pytest.raises(ConfigError, match="K2_KRAKEN_REST_URL"):
        load_settings()


def test_an_api_key_for_an_exchange_without_one_is_unknown(tmp_path):
    (tmp_path / "k2.toml").write_text('[kraken]\nrest_api_key = "x"\n')
    with pytest.raises(ConfigError, match="kraken_rest_api_key"):
        load_settings()

"""Settings: defaults < k2.toml < K2_* environment < flags, and errors that name the setting."""

from pathlib import Path

import pytest

from k2cli.errors import ConfigError
from k2cli.settings import ensure_writable_dir, load_settings

pytestmark = pytest.mark.usefixtures("settings_env")


def test_defaults_follow_the_contract():
    s = load_settings()
    assert s.kafka_bootstrap_servers == "localhost:9092"
    assert s.schema_registry_url == "http://localhost:8081"
    assert s.consumer_group == "k2-iceberg-writer-crypto-v2"
    assert s.table == "market_data.trades_v2"
    assert s.consumer_topics == ("market.crypto.trades.binance", "market.crypto.trades.kraken",
                                 "market.crypto.trades.coinbase")
    assert s.catalog_uri.startswith("sqlite:///") and s.warehouse.startswith("file://")
    assert s.ping_interval == 180 and s.pong_timeout == 10 and s.idle_timeout == 30
    assert s.rotation_interval == 4 * 3600 and s.serializer_cache_max_size == 10


def test_precedence_toml_then_env_then_flags(tmp_path, monkeypatch):
    (tmp_path / "k2.toml").write_text('batch_size = 100\n[kafka]\nbootstrap_servers = "toml:1"\n'
                                      '[thresholds]\nconsumer_throughput_min = 250\n')
    s = load_settings()
    assert s.batch_size == 100 and s.kafka_bootstrap_servers == "toml:1"
    assert s.threshold("consumer_throughput_min", 100) == 250
    monkeypatch.setenv("K2_KAFKA_BOOTSTRAP_SERVERS", "env:2")
    monkeypatch.setenv("K2_BATCH_SIZE", "200")
    s = load_settings()
    assert s.kafka_bootstrap_servers == "env:2" and s.batch_size == 200
    s = load_settings(batch_size=300, kafka_bootstrap_servers=None)
    assert s.batch_size == 300 and s.kafka_bootstrap_servers == "env:2"


def test_lists_and_bools_from_env(monkeypatch):
    monkeypatch.setenv("K2_BINANCE_SYMBOLS", "BTCUSDT, ETHUSDT,SOLUSDT")
    monkeypatch.setenv("K2_SSL_VERIFY", "false")
    s = load_settings()
    assert s.exchange("binance").symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT") and s.ssl_verify is False
    assert s.binance_symbols == s.exchange("binance").symbols  # the flat name still reads


def test_per_exchange_settings_come_from_the_registry():
    from k2cli.exchanges import registry

    s = load_settings()
    assert tuple(s.exchanges) == registry.names()
    for d in registry.all():
        es = s.exchange(d.name)
        assert (es.url, es.failover_urls, es.symbols, es.topic, es.metrics_port) == (
            d.default_url, d.default_failover_urls, d.default_symbols, d.default_topic, d.default_metrics_port)
    assert s.consumer_topics == tuple(d.default_topic for d in registry.all())
    with pytest.raises(ConfigError, match="known: binance, kraken"):
        s.exchange("nasdaq")


def test_every_per_exchange_variable_still_works(monkeypatch):
    monkeypatch.setenv("K2_BINANCE_URL", "ws://127.0.0.1:1/stream")
    monkeypatch.setenv("K2_BINANCE_FAILOVER_URLS", "ws://a:1/stream,ws://b:2/stream")
    monkeypatch.setenv("K2_KRAKEN_SYMBOLS", "XBT/USD")
    monkeypatch.setenv("K2_KRAKEN_TOPIC", "t.kraken")
    monkeypatch.setenv("K2_KRAKEN_METRICS_PORT", "0")
    s = load_settings()
    assert s.exchange("binance").url == "ws://127.0.0.1:1/stream"
    assert s.exchange("binance").failover_urls == ("ws://a:1/stream", "ws://b:2/stream")
    kraken = s.exchange("kraken")
    assert (kraken.symbols, kraken.topic, kraken.metrics_port) == (("XBT/USD",), "t.kraken", 0)
    assert s.exchange_url("binance") == "ws://127.0.0.1:1/stream" and s.exchange_topic("kraken") == "t.kraken"


def test_exchange_settings_in_toml_top_level_or_as_sections(tmp_path, monkeypatch):
    (tmp_path / "k2.toml").write_text('binance_url = "ws://top:1/stream"\n[kraken]\nurl = "ws://section:2/v2"\n'
                                      'symbols = ["ETH/USD"]\nmetrics_port = 9193\n')
    s = load_settings()
    assert s.exchange("binance").url == "ws://top:1/stream"
    assert s.exchange("kraken").url == "ws://section:2/v2" and s.exchange("kraken").symbols == ("ETH/USD",)
    assert s.exchange("kraken").metrics_port == 9193
    monkeypatch.setenv("K2_KRAKEN_URL", "ws://env:3")  # the environment still wins over k2.toml
    assert load_settings().exchange("kraken").url == "ws://env:3"


@pytest.mark.parametrize("toml,setting", [
    ('[kraken]\nmetrics_port = 70000\n', "K2_KRAKEN_METRICS_PORT"),
    ('[binance]\nfailover_urls = ["http://x"]\n', "K2_BINANCE_FAILOVER_URLS"),
    ('[binance]\nmetrics_port = "lots"\n', "K2_BINANCE_METRICS_PORT"),
    ('[kraken]\nurll = "ws://x"\n', "kraken_urll"),
])
def test_bad_exchange_settings_name_the_variable(tmp_path, toml, setting):
    (tmp_path / "k2.toml").write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.setting == setting


@pytest.mark.parametrize("env,value,setting", [
    ("K2_SCHEMA_REGISTRY_URL", "localhost:8081", "K2_SCHEMA_REGISTRY_URL"),
    ("K2_KAFKA_BOOTSTRAP_SERVERS", "no-port", "K2_KAFKA_BOOTSTRAP_SERVERS"),
    ("K2_BINANCE_URL", "http://x", "K2_BINANCE_URL"),
    ("K2_BATCH_SIZE", "lots", "K2_BATCH_SIZE"),
    ("K2_BATCH_SIZE", "0", "K2_BATCH_SIZE"),
    ("K2_SSL_VERIFY", "maybe", "K2_SSL_VERIFY"),
    ("K2_ICEBERG_CATALOG_URI", "mysql://x", "K2_ICEBERG_CATALOG_URI"),
])
def test_bad_values_name_the_setting(monkeypatch, env, value, setting):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.setting == setting and setting in str(err.value)


def test_unknown_toml_key_is_an_error(tmp_path):
    (tmp_path / "k2.toml").write_text("bacth_size = 5\n")
    with pytest.raises(ConfigError, match="bacth_size"):
        load_settings()


def test_unwritable_dir_names_setting(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="K2_DATA_DIR"):
        ensure_writable_dir(blocker / "sub", "K2_DATA_DIR")
    assert ensure_writable_dir(tmp_path / "ok", "K2_DATA_DIR") == Path(tmp_path / "ok")


def test_thresholds_from_env_add_to_the_toml_table(tmp_path, monkeypatch):
    (tmp_path / "k2.toml").write_text("[thresholds]\npost_lag_max_messages = 500\nprod_window_days = 3\n")
    monkeypatch.setenv("K2_THRESHOLDS", "prod_window_days=0.5, post_error_window_s=120")
    s = load_settings()
    assert s.thresholds == {"post_lag_max_messages": 500.0, "prod_window_days": 0.5, "post_error_window_s": 120.0}


@pytest.mark.parametrize("raw", ["prod_window_days", "prod_window_days=soon"])
def test_bad_thresholds_in_env_name_the_variable(monkeypatch, raw):
    monkeypatch.setenv("K2_THRESHOLDS", raw)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "K2_THRESHOLDS" in str(info.value)

"""Symbol splitting (Binance quote assets) and Kraken legacy-name normalisation."""

import pytest

from k2cli.errors import ConfigError
from k2cli.exchanges.symbols import (
    UnknownSymbol,
    check_binance_symbols,
    check_kraken_symbols,
    kraken_symbol,
    kraken_v1_pair,
    normalise_kraken_asset,
    split_binance_symbol,
    split_kraken_pair,
)


@pytest.mark.parametrize(("symbol", "base", "quote"), [
    ("BTCUSDT", "BTC", "USDT"),
    ("ETHBTC", "ETH", "BTC"),
    ("BNBFDUSD", "BNB", "FDUSD"),
    ("SOLUSDC", "SOL", "USDC"),
    ("BTCEUR", "BTC", "EUR"),
    ("BTCTRY", "BTC", "TRY"),
    ("WBTCBTC", "WBTC", "BTC"),
    ("DOGEUSDT", "DOGE", "USDT"),
    ("ADABNB", "ADA", "BNB"),
])
def test_binance_split_uses_longest_known_quote(symbol, base, quote):
    assert split_binance_symbol(symbol) == (base, quote)


@pytest.mark.parametrize("symbol", ["BTCXYZ", "USDT", "btc-usdt", "", "BTC/USDT"])
def test_binance_unknown_symbol_is_refused(symbol):
    with pytest.raises(UnknownSymbol):
        split_binance_symbol(symbol)


def test_binance_startup_check_uppercases_dedups_and_names_the_setting():
    assert check_binance_symbols(["btcusdt", "ETHUSDT", "BTCUSDT"]) == ("BTCUSDT", "ETHUSDT")
    with pytest.raises(ConfigError) as err:
        check_binance_symbols(["BTCUSDT", "FOOBAR"])
    assert "FOOBAR" in str(err.value) and err.value.setting == "K2_BINANCE_SYMBOLS"
    with pytest.raises(ConfigError):
        check_binance_symbols([])


@pytest.mark.parametrize(("asset", "common"), [
    ("XBT", "BTC"), ("XXBT", "BTC"), ("XDG", "DOGE"), ("XXDG", "DOGE"), ("ZUSD", "USD"), ("ZEUR", "EUR"),
    ("XETH", "ETH"), ("ETH", "ETH"), ("XRP", "XRP"), ("XTZ", "XTZ"), ("USD", "USD"),
])
def test_kraken_legacy_assets(asset, common):
    assert normalise_kraken_asset(asset) == common


def test_kraken_pairs_normalise_and_denormalise():
    assert split_kraken_pair("XBT/USD") == ("BTC", "USD")
    assert kraken_symbol("XDG/EUR") == "DOGEEUR"
    assert kraken_symbol("ETH/XBT") == "ETHBTC"
    assert kraken_v1_pair("BTC/USD") == "XBT/USD"
    assert kraken_v1_pair("DOGE/USD") == "XDG/USD"
    assert kraken_v1_pair("ETH/USD") == "ETH/USD"
    assert check_kraken_symbols(["xbt/usd", "BTC/USD", "eth/eur"]) == ("BTC/USD", "ETH/EUR")
    with pytest.raises(ConfigError):
        check_kraken_symbols(["BTCUSD"])

"""Pure helpers of the checklists: v2 trade rules per exchange, sequence gaps, version specifiers."""

import datetime as dt
from decimal import Decimal

from k2cli.checks.checklists import common, v2check
from k2cli.trade import new_trade


def binance_trade(**overrides):
    record = new_trade(trade_id="BINANCE-42", symbol="BTCUSDT", exchange="BINANCE", timestamp_us=1_700_000_000_000_000,
                       price="16500.12345678", quantity="0.001", currency="USDT", side="BUY",
                       ingestion_timestamp_us=1_700_000_000_050_000, source_sequence=42,
                       vendor_data={"base_asset": "BTC", "quote_asset": "USDT", "is_buyer_maker": "false",
                                    "event_type": "trade"})
    record.update(overrides)
    return record


def kraken_trade(**overrides):
    record = new_trade(trade_id="KRAKEN-1534614057321597-abcdef", symbol="BTCUSD", exchange="KRAKEN",
                       timestamp_us=1_534_614_057_321_597, price="5541.2", quantity="0.15850568", currency="USD",
                       side="SELL", ingestion_timestamp_us=1_534_614_057_400_000,
                       vendor_data={"pair": "XBT/USD", "base_asset": "BTC", "quote_asset": "USD", "order_type": "l"})
    record.update(overrides)
    return record


def test_compliant_trades_have_no_problems():
    assert v2check.problems(binance_trade(), "binance") == []
    assert v2check.problems(kraken_trade(), "kraken") == []


def test_exchange_rules_are_enforced():
    assert any("separator" in p for p in v2check.problems(binance_trade(symbol="BTC-USDT"), "binance"))
    assert any("does not start with BINANCE-" in p for p in v2check.problems(binance_trade(trade_id="42"), "binance"))
    assert any("vendor_data lacks" in p for p in v2check.problems(binance_trade(vendor_data={}), "binance"))
    assert any("exchange 'BINANCE'" in p for p in v2check.problems(binance_trade(), "kraken"))
    xbt = kraken_trade(symbol="XBTUSD", vendor_data={"pair": "XBT/USD", "base_asset": "XBT", "quote_asset": "USD",
                                                     "order_type": "l"})
    assert any("XBT not normalised" in p for p in v2check.problems(xbt, "kraken"))


def test_schema_violations_are_reported_by_field():
    assert v2check.problems(binance_trade(price=Decimal("-1")), "binance") == ["price: -1 is not positive"]
    assert v2check.problems(binance_trade(side="HOLD"), "binance")[0].startswith("side:")
    missing = binance_trade()
    del missing["currency"]
    assert v2check.problems(missing, "binance") == ["currency: missing"]


def test_decoded_datetimes_become_exact_microseconds():
    stamp = dt.datetime(2026, 1, 13, 15, 30, 45, 123456, tzinfo=dt.UTC)
    record = binance_trade(timestamp=stamp, ingestion_timestamp=stamp + dt.timedelta(microseconds=7))
    norm = v2check.normalize(record)
    assert norm["timestamp"] == 1768318245123456
    assert norm["ingestion_timestamp"] - norm["timestamp"] == 7
    assert v2check.problems(record, "binance") == []


def test_sequence_gaps():
    assert v2check.sequence_gaps([1, 2, 3]) == 0
    assert v2check.sequence_gaps([3, 1, 2, 7, 8, 10]) == 2
    assert v2check.sequence_gaps([5, 5, 6]) == 0
    assert v2check.sequence_gaps([]) == 0


def test_version_specifiers():
    assert common.satisfies("5.9.0", ">=5.9")
    assert common.satisfies("7.2.2", ">=5.9,<8")
    assert not common.satisfies("5.8.1", ">=5.9")
    assert common.satisfies("2026.5.20", ">=2024.0.0")
    assert not common.satisfies("2023.11.17", ">=2024.0.0")
    assert common.satisfies("1.4.2", "~=1.4")
    assert not common.satisfies("2.0", "~=1.4")
    assert common.satisfies("0.29.2", "")


def test_requirements_come_from_the_package_metadata():
    names = dict(common.requirements())
    assert names["psutil"] == ">=5.9" and names["certifi"] == ">=2024.0.0"
    assert "pytest" not in names  # dev extras are not runtime requirements

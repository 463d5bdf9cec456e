"""The v2 trade: one definition, three derived schemas, exact values."""

from decimal import Decimal

import fastavro
import pytest

from k2cli import trade
from k2cli.errors import InvalidTrade


def _trade(**over):
    base = dict(trade_id="BINANCE-12345", symbol="BTCUSDT", exchange="BINANCE", timestamp_us=1673356800123000,
                price="16500.12345678", quantity="0.00001234", currency="USDT", side="SELL",
                ingestion_timestamp_us=1673356800200000, source_sequence=12345,
                vendor_data={"base_asset": "BTC"})
    base.update(over)
    return trade.new_trade(**base)


def test_avro_schema_matches_seed_record():
    schema = trade.avro_schema()
    assert schema["name"] == "TradeV2" and schema["namespace"] == "com.k2.marketdata"
    names = [f["name"] for f in schema["fields"]]
    assert names == ["message_id", "trade_id", "symbol", "exchange", "asset_class", "timestamp", "price",
                     "quantity", "currency", "side", "trade_conditions", "source_sequence",
                     "ingestion_timestamp", "platform_sequence", "vendor_data"]
    price = schema["fields"][6]["type"]
    assert price == {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 8}
    assert schema["fields"][5]["type"]["logicalType"] == "timestamp-micros"
    assert schema["fields"][11]["type"] == ["null", "long"] and schema["fields"][11]["default"] is None
    fastavro.parse_schema(schema)


def test_all_three_schemas_share_field_order():
    names = list(trade.FIELD_NAMES)
    assert trade.arrow_schema().names == names
    assert [f.name for f in trade.iceberg_schema().fields] == names


def test_arrow_and_iceberg_types_are_exact():
    import pyarrow as pa
    from pyiceberg.types import DecimalType, TimestamptzType

    arrow = trade.arrow_schema()
    assert arrow.field("price").type == pa.decimal128(18, 8)
    assert arrow.field("timestamp").type == pa.timestamp("us", tz="UTC")
    ice = trade.iceberg_schema()
    assert ice.find_field("quantity").field_type == DecimalType(18, 8)
    assert ice.find_field("ingestion_timestamp").field_type == TimestamptzType()
    assert not ice.find_field("source_sequence").required


def test_new_trade_keeps_decimals_exact():
    t = _trade()
    assert t["price"] == Decimal("16500.12345678") and t["quantity"] == Decimal("0.00001234")
    assert len(t["message_id"]) == 36 and t["asset_class"] == "crypto" and t["trade_conditions"] == []


@pytest.mark.parametrize("value,needle", [
    ("1.123456789", "more than 8 decimal places"),
    ("10000000000", "< 10^10"),
    ("0", "not positive"),
    ("-2.5", "not positive"),
    ("abc", "not a decimal"),
    ("NaN", "finite"),
])
def test_price_that_does_not_fit_is_rejected_naming_the_field(value, needle):
    with pytest.raises(InvalidTrade) as err:
        _trade(price=value)
    assert err.value.field == "price" and needle in str(err.value)


def test_trailing_zeros_beyond_scale_are_not_rounding():
    assert _trade(quantity="1.1000000000")["quantity"] == Decimal("1.1")


def test_float_is_refused():
    with pytest.raises(InvalidTrade, match="floats"):
        _trade(price=0.1)


@pytest.mark.parametrize("field,value", [("side", "HOLD"), ("message_id", "not-a-uuid"),
                                         ("asset_class", "stocks")])
def test_bad_enum_and_uuid_rejected(field, value):
    kwargs = {field: value}
    with pytest.raises(InvalidTrade) as err:
        _trade(**kwargs)
    assert err.value.field == field


def test_unscaled_round_trip():
    for text in ("0.00000001", "9999999999.99999999", "16500.5"):
        d = Decimal(text)
        assert trade.from_unscaled(trade.unscaled(d)) == d


def test_avro_round_trip_is_exact():
    import io

    t = _trade()
    buf = io.BytesIO()
    parsed = fastavro.parse_schema(trade.avro_schema())
    fastavro.schemaless_writer(buf, parsed, t)
    buf.seek(0)
    back = fastavro.schemaless_reader(buf, parsed, None)
    assert back["price"] == t["price"] and back["quantity"] == t["quantity"]
    assert back["vendor_data"] == {"base_asset": "BTC"} and back["source_sequence"] == 12345

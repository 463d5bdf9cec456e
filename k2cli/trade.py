"""The v2 trade, defined once; the Avro, Arrow and Iceberg schemas are derived from FIELDS."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from k2cli.errors import InvalidTrade
from k2cli.exchanges.schema_doc import EXCHANGE_FIELD_DOC

NAMESPACE = "com.k2.marketdata"
RECORD_NAME = "TradeV2"
PRECISION = 18
SCALE = 8
DECIMAL_LIMIT = Decimal(10) ** (PRECISION - SCALE)  # values must be < 10^10
ASSET_CLASSES = ("equities", "crypto", "futures", "options")
SIDES = ("BUY", "SELL", "SELL_SHORT", "UNKNOWN")


@dataclass(frozen=True)
class FieldSpec:
    """One field of the v2 trade: its name, logical kind, whether null is allowed, and a doc line."""

    name: str
    kind: str  # string | uuid | asset_class | side | timestamp_us | decimal | strings | long | string_map
    nullable: bool
    doc: str


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("message_id", "uuid", False, "UUID assigned at ingestion, for deduplication"),
    FieldSpec("trade_id", "string", False, "Exchange trade id as {EXCHANGE}-{id}"),
    FieldSpec("symbol", "string", False, "Normalised symbol without separator, e.g. BTCUSDT"),
    FieldSpec("exchange", "string", False, EXCHANGE_FIELD_DOC),
    FieldSpec("asset_class", "asset_class", False, "Asset class"),
    FieldSpec("timestamp", "timestamp_us", False, "Exchange trade time, UTC microseconds"),
    FieldSpec("price", "decimal", False, "Trade price, decimal(18,8)"),
    FieldSpec("quantity", "decimal", False, "Trade quantity, decimal(18,8)"),
    FieldSpec("currency", "string", False, "Quote currency"),
    FieldSpec("side", "side", False, "Aggressor (taker) side"),
    FieldSpec("trade_conditions", "strings", False, "Trade condition codes (empty for crypto)"),
    FieldSpec("source_sequence", "long", True, "Exchange sequence used for gap tracking"),
    FieldSpec("ingestion_timestamp", "timestamp_us", False, "Platform ingest time, UTC microseconds"),
    FieldSpec("platform_sequence", "long", True, "Platform-assigned sequence"),
    FieldSpec("vendor_data", "string_map", True, "Exchange-specific fields as strings"),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
DECIMAL_FIELDS = tuple(f.name for f in FIELDS if f.kind == "decimal")
TIMESTAMP_FIELDS = tuple(f.name for f in FIELDS if f.kind == "timestamp_us")


# ---------------------------------------------------------------- Avro


def _avro_type(spec: FieldSpec, logical: bool, seen: set[str]) -> Any:
    kind = spec.kind
    if kind in ("string", "uuid"):
        base: Any = "string"
    elif kind in ("asset_class", "side"):
        name, symbols = ("AssetClass", ASSET_CLASSES) if kind == "asset_class" else ("TradeSide", SIDES)
        base = name if name in seen else {"type": "enum", "name": name, "namespace": NAMESPACE,
                                          "symbols": list(symbols)}
        seen.add(name)
    elif kind == "timestamp_us":
        base = {"type": "long", "logicalType": "timestamp-micros"} if logical else "long"
    elif kind == "decimal":
        base = ({"type": "bytes", "logicalType": "decimal", "precision": PRECISION, "scale": SCALE}
                if logical else "bytes")
    elif kind == "strings":
        base = {"type": "array", "items": "string"}
    elif kind == "long":
        base = "long"
    elif kind == "string_map":
        base = {"type": "map", "values": "string"}
    else:  # pragma: no cover - FIELDS is fixed
        raise AssertionError(kind)
    return ["null", base] if spec.nullable else base


def avro_schema(logical: bool = True) -> dict[str, Any]:
    """The v2 Avro schema; logical=False gives the same wire format with plain longs and bytes."""
    seen: set[str] = set()
    fields = []
    for spec in FIELDS:
        entry: dict[str, Any] = {"name": spec.name, "type": _avro_type(spec, logical, seen), "doc": spec.doc}
        if spec.nullable:
            entry["default"] = None
        fields.append(entry)
    return {"type": "record", "name": RECORD_NAME, "namespace": NAMESPACE,
            "doc": "Normalised market trade, v2", "fields": fields}


# ---------------------------------------------------------------- Arrow


def arrow_schema():  # -> pyarrow.Schema
    """The v2 Arrow schema (timestamps as UTC µs, decimals decimal128(18,8))."""
    import pyarrow as pa

    types = {
        "string": pa.string(), "uuid": pa.string(), "asset_class": pa.string(), "side": pa.string(),
        "timestamp_us": pa.timestamp("us", tz="UTC"), "decimal": pa.decimal128(PRECISION, SCALE),
        "strings": pa.list_(pa.field("element", pa.string(), nullable=False)),
        "long": pa.int64(), "string_map": pa.map_(pa.string(), pa.string()),
    }
    return pa.schema([pa.field(f.name, types[f.kind], nullable=f.nullable) for f in FIELDS])


# ---------------------------------------------------------------- Iceberg


def iceberg_schema():  # -> pyiceberg.schema.Schema
    """The v2 Iceberg schema with stable field ids (1..15 top level, 100+ nested)."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        DecimalType,
        IcebergType,
        ListType,
        LongType,
        MapType,
        NestedField,
        StringType,
        TimestamptzType,
    )

    nested_ids = iter(range(100, 200))

    def typ(kind: str) -> IcebergType:
        if kind in ("string", "uuid", "asset_class", "side"):
            return StringType()
        if kind == "timestamp_us":
            return TimestamptzType()
        if kind == "decimal":
            return DecimalType(PRECISION, SCALE)
        if kind == "strings":
            return ListType(element_id=next(nested_ids), element_type=StringType(), element_required=True)
        if kind == "long":
            return LongType()
        if kind == "string_map":
            return MapType(key_id=next(nested_ids), key_type=StringType(), value_id=next(nested_ids),
                           value_type=StringType(), value_required=False)
        raise AssertionError(kind)

    return Schema(*[
        NestedField(field_id=i, name=f.name, field_type=typ(f.kind), required=not f.nullable, doc=f.doc)
        for i, f in enumerate(FIELDS, start=1)
    ])


# ---------------------------------------------------------------- values


def to_decimal(field: str, value: object) -> Decimal:
    """Parse a price or quantity exactly and check it fits decimal(18,8) and is positive."""
    if isinstance(value, float):
        raise InvalidTrade(field, f"floats are not accepted ({value!r}); pass the exact string")
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidTrade(field, f"{value!r} is not a decimal number") from None
    if not dec.is_finite():
        raise InvalidTrade(field, f"{value!r} is not a finite number")
    if dec <= 0:
        raise InvalidTrade(field, f"{value} is not positive")
    if dec >= DECIMAL_LIMIT:
        raise InvalidTrade(field, f"{value} does not fit decimal({PRECISION},{SCALE}) (must be < 10^10)")
    exponent = dec.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -SCALE:
        normalized = dec.normalize()
        exp = normalized.as_tuple().exponent
        if isinstance(exp, int) and exp < -SCALE:
            raise InvalidTrade(field, f"{value} has more than {SCALE} decimal places; k2 never rounds")
        dec = normalized
    return dec


def unscaled(dec: Decimal) -> int:
    """The unscaled integer of a decimal(18,8) value (exact)."""
    return int(dec.scaleb(SCALE))


def from_unscaled(value: int) -> Decimal:
    """The Decimal of an unscaled decimal(18,8) integer."""
    return Decimal(value).scaleb(-SCALE)


def _check_uuid(value: object) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, AttributeError, TypeError):
        raise InvalidTrade("message_id", f"{value!r} is not a UUID") from None


def validate_trade(record: dict[str, Any]) -> dict[str, Any]:
    """Check a v2 record field by field; return it with exact Decimals, or raise InvalidTrade naming the field."""
    missing = [name for name in FIELD_NAMES if name not in record]
    if missing:
        raise InvalidTrade(missing[0], "missing")
    extra = [name for name in record if name not in FIELD_NAMES]
    if extra:
        raise InvalidTrade(extra[0], "is not a v2 trade field")
    out = dict(record)
    out["message_id"] = _check_uuid(record["message_id"])
    for name in ("trade_id", "symbol", "exchange", "currency"):
        value = record[name]
        if not isinstance(value, str) or not value:
            raise InvalidTrade(name, f"must be a non-empty string, got {value!r}")
    if record["asset_class"] not in ASSET_CLASSES:
        raise InvalidTrade("asset_class", f"{record['asset_class']!r} is not one of {', '.join(ASSET_CLASSES)}")
    if record["side"] not in SIDES:
        raise InvalidTrade("side", f"{record['side']!r} is not one of {', '.join(SIDES)}")
    for name in TIMESTAMP_FIELDS:
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidTrade(name, f"must be a positive integer of microseconds, got {value!r}")
    for name in DECIMAL_FIELDS:
        out[name] = to_decimal(name, record[name])
    conditions = record["trade_conditions"]
    if not isinstance(conditions, list | tuple) or not all(isinstance(c, str) for c in conditions):
        raise InvalidTrade("trade_conditions", "must be a list of strings")
    out["trade_conditions"] = list(conditions)
    for name in ("source_sequence", "platform_sequence"):
        value = record[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidTrade(name, f"must be an integer or null, got {value!r}")
    vendor = record["vendor_data"]
    if vendor is not None and (not isinstance(vendor, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in vendor.items()
    )):
        raise InvalidTrade("vendor_data", "must be a map of strings to strings")
    return out


def new_trade(
    *,
    trade_id: str,
    symbol: str,
    exchange: str,
    timestamp_us: int,
    price: object,
    quantity: object,
    currency: str,
    side: str,
    ingestion_timestamp_us: int,
    source_sequence: int | None = None,
    vendor_data: dict[str, str] | None = None,
    message_id: str | None = None,
    asset_class: str = "crypto",
    trade_conditions: list[str] | None = None,
    platform_sequence: int | None = None,
) -> dict[str, Any]:
    """Build and validate one v2 trade record (a dict in field order)."""
    record = {
        "message_id": message_id or str(uuid.uuid4()),
        "trade_id": trade_id,
        "symbol": symbol,
        "exchange": exchange,
        "asset_class": asset_class,
        "timestamp": timestamp_us,
        "price": price,
        "quantity": quantity,
        "currency": currency,
        "side": side,
        "trade_conditions": trade_conditions or [],
        "source_sequence": source_sequence,
        "ingestion_timestamp": ingestion_timestamp_us,
        "platform_sequence": platform_sequence,
        "vendor_data": vendor_data,
    }
    return validate_trade(record)

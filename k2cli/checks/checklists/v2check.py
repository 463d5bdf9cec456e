"""Pure checks of decoded trades against the v2 requirements and the seeds' exchange-specific rules."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from k2cli.errors import InvalidTrade
from k2cli.exchanges import registry

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SYMBOL = re.compile(r"^[A-Z0-9]+$")
# seed 000, "Exchange-Specific Validation": each descriptor's vendor_fields and check_record


def to_micros(value: Any) -> Any:
    """A datetime as integer microseconds since the epoch (exact); other values unchanged."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (aware - _EPOCH) // dt.timedelta(microseconds=1)
    return value


def normalize(record: dict[str, Any]) -> dict[str, Any]:
    """A decoded Avro record with timestamps as integer microseconds, as k2 defines the v2 trade."""
    from k2cli.trade import TIMESTAMP_FIELDS

    return {k: to_micros(v) if k in TIMESTAMP_FIELDS else v for k, v in record.items()}


def problems(record: dict[str, Any], exchange: str) -> list[str]:
    """Everything wrong with one trade against the v2 schema and the seeds' exchange rules ([] = compliant)."""
    from k2cli.trade import validate_trade

    rec = normalize(record)
    found: list[str] = []
    try:
        validate_trade(rec)
    except InvalidTrade as exc:
        found.append(str(exc))
        return found
    desc = registry.get(exchange) if exchange in registry.names() else None
    code = desc.code if desc is not None else exchange.upper()
    if len(str(rec["message_id"])) != 36:
        found.append(f"message_id {rec['message_id']!r} is not a 36-character UUID")
    if rec["exchange"] != code:
        found.append(f"exchange {rec['exchange']!r}, expected {code!r}")
    if rec["asset_class"] != "crypto":
        found.append(f"asset_class {rec['asset_class']!r}, expected 'crypto'")
    if rec["side"] not in ("BUY", "SELL"):
        found.append(f"side {rec['side']!r}, expected BUY or SELL")
    if not _SYMBOL.match(rec["symbol"]):
        found.append(f"symbol {rec['symbol']!r} has a separator or lower case (expected e.g. BTCUSDT)")
    if not str(rec["trade_id"]).startswith(f"{code}-"):
        found.append(f"trade_id {rec['trade_id']!r} does not start with {code}-")
    vendor = rec.get("vendor_data") or {}
    missing = [k for k in (desc.vendor_fields if desc is not None else ()) if k not in vendor]
    if missing:
        found.append(f"vendor_data lacks {', '.join(missing)}")
    if desc is not None:
        found += desc.check_record(rec)
    return found


def sequence_gaps(sequences: list[int]) -> int:
    """How many holes a run of sequence numbers has (after sorting; duplicates ignored)."""
    ordered = sorted(set(sequences))
    return sum(1 for a, b in zip(ordered, ordered[1:], strict=False) if b - a > 1)

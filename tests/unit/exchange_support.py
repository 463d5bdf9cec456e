"""Helpers for the exchange parser unit tests."""

import uuid
from typing import Any

from k2cli.exchanges.base import TRADES
from k2cli.trade import FIELD_NAMES


def only_record(parser: Any, raw: str, ingest_us: int) -> dict[str, Any]:
    """The one v2 record a frame holds, fields in schema order, without its (checked, UUID4) message_id."""
    parsed = parser.parse(raw, ingest_us)
    assert parsed.kind == TRADES and len(parsed.trades) == 1
    rec = parsed.trades[0]
    assert list(rec) == list(FIELD_NAMES)
    assert uuid.UUID(rec.pop("message_id")).version == 4
    return rec

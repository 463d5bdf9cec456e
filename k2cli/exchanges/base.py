"""What the exchange parsers share: the parse result, the frame error, JSON frames, message ids, instrument
names, exact decimals."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Generic, TypeVar

from k2cli.errors import InvalidTrade
from k2cli.exchanges.symbols import UnknownSymbol
from k2cli.trade import FIELD_NAMES, to_decimal

# Parsed.kind values
TRADES = "trades"  # trades: the v2 records of the frame
CONTROL = "control"  # heartbeat, status, subscription ack, pong: nothing to produce
SHUTDOWN = "shutdown"  # the exchange announced it will close this connection (Binance serverShutdown)
SUBSCRIBE_ERROR = "subscribe_error"  # the exchange refused a subscription (info says why)

# error_type labels of bad frames (a closed set, so metric labels stay bounded)
ERROR_TYPES = ("invalid_json", "missing_field", "invalid_value", "unknown_event", "unknown_symbol", "exchange_error")


class FrameError(Exception):
    """A frame that cannot be turned into trades; `error_type` is one of ERROR_TYPES."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


# A row is a trade as a tuple in k2cli.trade.FIELDS order, with trade_conditions a tuple and vendor_data a
# tuple of (key, value) pairs: the hot path (parse -> dedup -> encode) never builds dicts. Index constants:
ROW_TRADE_ID, ROW_SYMBOL, ROW_TIMESTAMP, ROW_SOURCE_SEQUENCE = 1, 2, 5, 11
Row = tuple[Any, ...]
T = TypeVar("T")


def row_to_record(row: Row) -> dict[str, Any]:
    """The v2 record (a dict in field order) of a row."""
    record = dict(zip(FIELD_NAMES, row, strict=True))
    record["trade_conditions"] = list(row[10])
    if row[14] is not None:
        record["vendor_data"] = dict(row[14])
    return record


class Parsed(Generic[T]):
    """The meaning of one frame: its kind, its trades (kind TRADES: rows or records) and a short note."""

    __slots__ = ("kind", "trades", "info")

    def __init__(self, kind: str, trades: list[T] | None = None, info: str = "") -> None:
        self.kind = kind
        self.trades: list[T] = trades if trades is not None else []
        self.info = info

    def as_records(self: Parsed[Row]) -> Parsed[dict[str, Any]]:
        """The same result with its rows as v2 records (dicts)."""
        return Parsed(self.kind, [row_to_record(row) for row in self.trades], self.info)


CONTROL_FRAME: Parsed[Any] = Parsed(CONTROL)


class MessageIds:
    """UUID4 strings from os.urandom drawn in blocks (about 3x cheaper than str(uuid.uuid4()))."""

    _BLOCK = 512

    def __init__(self) -> None:
        self._hex = ""
        self._pos = 0

    def next(self) -> str:
        """A fresh random UUID version 4 in canonical form."""
        pos = self._pos
        if pos >= len(self._hex):
            self._hex = os.urandom(16 * self._BLOCK).hex()
            pos = 0
        h = self._hex[pos:pos + 32]
        self._pos = pos + 32
        variant = "89ab"[int(h[16], 16) & 3]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


def load_frame(raw: str | bytes) -> Any:
    """The JSON value of a frame, or FrameError("invalid_json")."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError("invalid_json", f"not JSON: {exc}") from None


def load_object(raw: str | bytes) -> dict[str, Any]:
    """The JSON object of a frame, or FrameError ("invalid_json", or "unknown_event" for another JSON value)."""
    try:
        msg = json.loads(raw)  # not load_frame: one call less per frame on the hot path
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError("invalid_json", f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise FrameError("unknown_event", f"expected a JSON object, got {type(msg).__name__}")
    return msg


class FrameParser:
    """What every exchange parser shares: its message ids, and `parse` as records over its `parse_rows`."""

    def __init__(self) -> None:
        self._ids = MessageIds()

    def parse(self, raw: str | bytes, ingest_us: int) -> Parsed[dict[str, Any]]:
        """Parse one frame received at `ingest_us` (µs); trades as v2 records (dicts)."""
        return self.parse_rows(raw, ingest_us).as_records()

    def parse_rows(self, raw: str | bytes, ingest_us: int) -> Parsed[Row]:  # pragma: no cover - abstract
        """Parse one frame received at `ingest_us` (µs); trades as rows (the stream's hot path)."""
        raise NotImplementedError


class Instruments:
    """(symbol, base, quote) of instrument names as the exchange sends them, split once per name."""

    __slots__ = ("_split", "_what", "_known")

    _MAX = 10_000  # names kept; past that a name is split on every trade (a feed of garbage names stays bounded)

    def __init__(self, split: Callable[[str], tuple[str, str]], what: str) -> None:
        self._split = split  # raises UnknownSymbol for a name that is not an instrument
        self._what = what
        self._known: dict[str, tuple[str, str, str]] = {}

    def get(self, name: object) -> tuple[str, str, str]:
        """(symbol, base, quote) of a name as sent; FrameError if it is not a string or not an instrument."""
        if type(name) is not str:
            raise FrameError("invalid_value", f"{self._what} {name!r} is not a string")
        info = self._known.get(name)
        if info is None:
            try:
                base, quote = self._split(name)
            except UnknownSymbol as exc:
                raise FrameError("unknown_symbol", str(exc)) from None
            info = (base + quote, base, quote)
            if len(self._known) < self._MAX:
                self._known[name] = info
        return info


def now_us() -> int:
    """Wall-clock time in integer microseconds."""
    return time.time_ns() // 1000


_LIMIT = Decimal(10) ** 10


_checked: dict[str, Decimal] = {}  # price strings already checked (prices repeat); Decimals are immutable


def exact_decimal(field: str, value: object) -> Decimal:
    """A positive decimal(18,8) from an exchange string or Decimal, or a FrameError (never a float)."""
    if type(value) is str:
        d = _checked.get(value) if field == "price" else None
        if d is not None:
            return d
        if 0 < len(value) <= 20 and value.isascii():
            whole, dot, frac = value.partition(".")
            if whole.isdigit() and (not dot or (frac.isdigit() and len(frac) <= 8)):
                d = Decimal(value)  # plain digits, at most 8 decimals: exact, finite, not negative
                if 0 < d < _LIMIT:
                    if field == "price":  # prices repeat; quantities mostly do not (caching them would thrash)
                        if len(_checked) >= 16_384:
                            _checked.clear()
                        _checked[value] = d
                    return d
    # a JSON number read as Decimal (Kraken v2): to_decimal's checks (a finite Decimal's exponent is an int)
    elif (type(value) is Decimal and value.is_finite() and 0 < value < _LIMIT
          and type(exponent := value.as_tuple().exponent) is int and exponent >= -8):
        return value
    try:
        return to_decimal(field, value)
    except InvalidTrade as exc:
        raise FrameError("invalid_value", str(exc)) from None

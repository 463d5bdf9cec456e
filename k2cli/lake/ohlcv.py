"""OHLCV bars from trades, exact: DuckDB sums decimals, Python divides for the VWAP.

A bar covers [interval_start, interval_start + interval) in UTC, aligned to the epoch; only intervals
with trades appear. Open and close are the first and last trade by (timestamp, source_sequence, trade_id);
volume is the sum of quantities, notional the sum of price × quantity, both exact; vwap = notional / volume
rounded half-even to 8 decimal places, the scale of v2 prices.
"""

from __future__ import annotations

import decimal
from typing import Any

from k2cli.timespec import from_micros

INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
VWAP_QUANTUM = decimal.Decimal("1e-8")
COLUMNS = ("interval_start", "interval_end", "exchange", "symbol", "open", "high", "low", "close", "volume",
           "vwap", "notional", "trade_count")


def interval_micros(interval: str) -> int:
    """The width of an interval name in microseconds."""
    from k2cli.lake.plan import BadQuery

    if interval not in INTERVALS:
        raise BadQuery(f"--interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    return INTERVALS[interval] * 1_000_000


def bars_sql(source: str, where: str) -> str:
    """The aggregation; parameters in order: width, width, then the source's and the filter's."""
    key = '("timestamp", "source_sequence", "trade_id")'
    return (
        'SELECT "exchange", "symbol", (epoch_us("timestamp") // ?) * ? AS bucket_us, '
        f'arg_min("price", {key}) AS open, max("price") AS high, min("price") AS low, '
        f'arg_max("price", {key}) AS close, sum("quantity") AS volume, '
        'sum(CAST("price" AS DECIMAL(38, 8)) * CAST("quantity" AS DECIMAL(38, 8))) AS notional, '
        "count(*) AS trade_count "
        f"FROM {source}{where} GROUP BY ALL ORDER BY bucket_us, 1, 2"
    )


def vwap(notional: decimal.Decimal, volume: decimal.Decimal) -> decimal.Decimal | None:
    """notional / volume, rounded half-even to 8 places (None for zero volume)."""
    if not volume:
        return None
    with decimal.localcontext() as ctx:
        ctx.prec = 80
        return (notional / volume).quantize(VWAP_QUANTUM, rounding=decimal.ROUND_HALF_EVEN)


def bar(exchange: str, symbol: str, bucket_us: int, width_us: int, open_: Any, high: Any, low: Any, close: Any,
        volume: Any, notional: Any, count: int) -> dict[str, Any]:
    """One OHLCV bar as a dict in COLUMNS order."""
    return {
        "interval_start": from_micros(bucket_us), "interval_end": from_micros(bucket_us + width_us),
        "exchange": exchange, "symbol": symbol, "open": open_, "high": high, "low": low, "close": close,
        "volume": volume, "vwap": vwap(notional, volume), "notional": notional, "trade_count": count,
    }


def arrow_schema() -> Any:  # -> pyarrow.Schema
    """The Arrow schema of OHLCV bars."""
    import pyarrow as pa

    price = pa.decimal128(18, 8)
    return pa.schema([
        ("interval_start", pa.timestamp("us", tz="UTC")), ("interval_end", pa.timestamp("us", tz="UTC")),
        ("exchange", pa.string()), ("symbol", pa.string()), ("open", price), ("high", price), ("low", price),
        ("close", price), ("volume", pa.decimal128(38, 8)), ("vwap", price), ("notional", pa.decimal128(38, 16)),
        ("trade_count", pa.int64()),
    ])

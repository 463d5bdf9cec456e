"""What a query asks of the table (TradeFilter) and which files answer it (ScanPlan); no heavy imports here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k2cli.errors import K2Error
from k2cli.timespec import from_micros, iso

DAY_US = 86_400_000_000


class BadQuery(K2Error):
    """A query flag has a value k2 cannot use."""

    exit_code = 2


@dataclass(frozen=True)
class TradeFilter:
    """Which trades to read: symbol/exchange equality, since inclusive, until exclusive (UTC µs)."""

    symbol: str | None = None
    exchange: str | None = None
    since_us: int | None = None
    until_us: int | None = None

    def __post_init__(self) -> None:
        if self.since_us is not None and self.until_us is not None and self.since_us >= self.until_us:
            raise BadQuery(f"--since ({iso(from_micros(self.since_us))}) must be before "
                           f"--until ({iso(from_micros(self.until_us))})")

    def iceberg_expression(self) -> Any:
        """The pyiceberg row filter used for file pruning."""
        from pyiceberg import expressions

        ex: Any = expressions  # its pydantic-typed predicates take (term, literal) positionally at run time
        AlwaysTrue, And, EqualTo = ex.AlwaysTrue, ex.And, ex.EqualTo
        GreaterThanOrEqual, LessThan = ex.GreaterThanOrEqual, ex.LessThan
        expr: Any = AlwaysTrue()
        if self.symbol is not None:
            expr = And(expr, EqualTo("symbol", self.symbol))
        if self.exchange is not None:
            expr = And(expr, EqualTo("exchange", self.exchange))
        if self.since_us is not None:
            expr = And(expr, GreaterThanOrEqual("timestamp", self.since_us))
        if self.until_us is not None:
            expr = And(expr, LessThan("timestamp", self.until_us))
        return expr

    def sql_where(self) -> tuple[str, list[Any]]:
        """The same filter as a WHERE clause with bound parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.symbol is not None:
            clauses.append('"symbol" = ?')
            params.append(self.symbol)
        if self.exchange is not None:
            clauses.append('"exchange" = ?')
            params.append(self.exchange)
        if self.since_us is not None:
            clauses.append('"timestamp" >= CAST(? AS TIMESTAMPTZ)')
            params.append(iso(from_micros(self.since_us)))
        if self.until_us is not None:
            clauses.append('"timestamp" < CAST(? AS TIMESTAMPTZ)')
            params.append(iso(from_micros(self.until_us)))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def day_range(self) -> tuple[int | None, int | None]:
        """The first and last day (days since the epoch) the filter can match."""
        first = self.since_us // DAY_US if self.since_us is not None else None
        last = (self.until_us - 1) // DAY_US if self.until_us is not None else None
        return first, last


@dataclass(frozen=True)
class DataFile:
    """One planned Parquet file with the timestamp bounds from its Iceberg column statistics."""

    path: str
    record_count: int
    size_bytes: int
    lower_ts: int | None
    upper_ts: int | None


@dataclass
class ScanPlan:
    """The files a filter needs, out of the current snapshot's files."""

    snapshot_id: int | None
    files: list[DataFile]
    total_files: int
    plan_ms: float = 0.0
    planner: str = ""

    @property
    def paths(self) -> list[str]:
        """Local paths of the planned files."""
        return [f.path for f in self.files]


@dataclass(frozen=True)
class SnapshotInfo:
    """One table snapshot as the query commands show it."""

    snapshot_id: int
    parent_id: int | None
    timestamp_ms: int
    sequence_number: int
    summary: dict[str, str]

"""Missing and duplicated trade ids per (exchange, symbol) in the trades table, computed by DuckDB.

A row has a sequential id when its ``trade_id`` ends with ``-<source_sequence>`` (as `k2 consume`'s dedup
decides); between the lowest and highest such id of a symbol in the window, every id absent is missing. A trade
id present on more than one row is duplicated (every row counts here, sequential or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from k2cli.exchanges import registry
from k2cli.lake.plan import ScanPlan

_SEQUENTIAL = ("\"source_sequence\" IS NOT NULL AND "
               "ends_with(\"trade_id\", '-' || CAST(\"source_sequence\" AS VARCHAR))")


def symbol_candidates(symbol: str) -> list[str]:
    """The stored forms an operator's symbol may have: as typed, as each exchange stores it, without separators."""
    typed = symbol.strip().upper()
    out = [typed]
    for desc in registry.all():
        try:
            stored = desc.stored_symbol(desc.check_symbols([symbol.strip()])[0])
        except Exception:  # not a symbol of this exchange
            continue
        out.append(stored)
    out.append("".join(ch for ch in typed if ch not in "/-_:"))
    return list(dict.fromkeys(out))


def summary_sql(source: str, where: str) -> str:
    """Per (exchange, symbol): rows, distinct trade ids, lowest and highest sequential id, distinct sequential ids."""
    seq = f'"source_sequence") FILTER (WHERE {_SEQUENTIAL})'
    return (f'SELECT "exchange", "symbol", count(*), count(DISTINCT "trade_id"), '
            f"min({seq}, max({seq}, count(DISTINCT {seq} "
            f"FROM {source}{where} GROUP BY ALL ORDER BY 1, 2")


def missing_sql(source: str, where: str) -> str:
    """Missing ranges (first, last inclusive) between consecutive sequential ids present."""
    clause = f"{where} AND {_SEQUENTIAL}" if where else f" WHERE {_SEQUENTIAL}"
    return ('SELECT "exchange", "symbol", prev + 1, id - 1 FROM ('
            'SELECT "exchange", "symbol", id, lag(id) OVER (PARTITION BY "exchange", "symbol" ORDER BY id) AS prev '
            f'FROM (SELECT DISTINCT "exchange", "symbol", "source_sequence" AS id FROM {source}{clause})) '
            "WHERE id - prev > 1 ORDER BY 1, 2, 3")


def duplicates_sql(source: str, where: str) -> str:
    """Trade ids on more than one row, with how many rows."""
    return (f'SELECT "exchange", "symbol", "trade_id", count(*) FROM {source}{where} GROUP BY ALL '
            'HAVING count(*) > 1 ORDER BY 1, 2, 3')


@dataclass
class SymbolGaps:
    """What one (exchange, symbol) holds in the window: its id span, what is missing and what is duplicated."""

    exchange: str
    symbol: str
    rows: int
    trades: int
    first_id: int | None  # lowest sequential id (None: no sequential ids)
    last_id: int | None
    ids: int  # distinct sequential ids present
    missing: list[tuple[int, int]] = field(default_factory=list)
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # (trade_id, rows)

    @property
    def missing_ids(self) -> int:
        """How many ids are missing."""
        return sum(b - a + 1 for a, b in self.missing)

    @property
    def clean(self) -> bool:
        """Nothing missing, nothing duplicated."""
        return not self.missing and not self.duplicates

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {"exchange": self.exchange, "symbol": self.symbol, "rows": self.rows, "trades": self.trades,
                "first_id": self.first_id, "last_id": self.last_id, "ids": self.ids,
                "missing_ids": self.missing_ids, "missing": [[a, b] for a, b in self.missing],
                "duplicate_trades": len(self.duplicates), "duplicate_rows": sum(n - 1 for _, n in self.duplicates),
                "duplicates": [{"trade_id": t, "rows": n} for t, n in self.duplicates], "ok": self.clean}


@dataclass
class GapReport:
    """Every (exchange, symbol) of the window."""

    symbols: list[SymbolGaps]
    plan: ScanPlan | None = None
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """No id missing or duplicated anywhere."""
        return all(s.clean for s in self.symbols)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {"ok": self.ok, "symbols": [s.to_dict() for s in self.symbols],
                "missing_ids": sum(s.missing_ids for s in self.symbols),
                "duplicate_trades": sum(len(s.duplicates) for s in self.symbols),
                "files_read": len(self.plan.files) if self.plan is not None else 0,
                "elapsed_ms": round(self.elapsed_ms, 1)}


def report(con: Any, source: str, where: str, params: list[Any]) -> list[SymbolGaps]:
    """Run the three queries over `source` filtered by `where` (params: the source's, then the filter's)."""
    found: dict[tuple[str, str], SymbolGaps] = {}
    for ex, sym, rows, trades, first, last, ids in con.sql(summary_sql(source, where), params=params).fetchall():
        found[(ex, sym)] = SymbolGaps(ex, sym, rows, trades, first, last, ids)
    for ex, sym, a, b in con.sql(missing_sql(source, where), params=params).fetchall():
        found[(ex, sym)].missing.append((int(a), int(b)))
    for ex, sym, tid, n in con.sql(duplicates_sql(source, where), params=params).fetchall():
        found[(ex, sym)].duplicates.append((tid, int(n)))
    return list(found.values())

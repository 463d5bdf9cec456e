"""The fault suite's independent count: what was produced, or what the simulator sent, against what Iceberg holds.

Pure functions of plain values (tests/unit/test_fault_oracle.py covers them); nothing here trusts k2's counters.
The tape oracle takes its expected set from the simulator's --record tape, per configured symbol, up to the moment
the stream was stopped; what Iceberg happens to hold never shrinks it, so loss at the end of a stream or a symbol
with no rows at all is counted.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

# Trades the simulator generated in the last GRACE_US before the stream's stop may still have been on the wire when
# the stop came: they are not required, but when Iceberg holds them they must match the tape and appear once.
GRACE_US = 1_000_000

Tape = dict[str, list[dict[str, Any]]]


@dataclass
class Count:
    """An independent count: what was produced against what Iceberg holds."""

    produced: int
    rows: int
    lost: int
    duplicates: int
    unexpected: int  # rows that were never produced (or whose values differ from what was produced)
    detail: list[str] = field(default_factory=list)
    missing_symbols: list[str] = field(default_factory=list)  # configured, but the simulator sent none of them

    @property
    def exact(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.unexpected == 0 and self.rows == self.produced
                and not self.missing_symbols)


def count_ids(produced_ids: list[str], iceberg_ids: list[str]) -> Count:
    """Compare produced message ids with the message ids of the Iceberg rows."""
    want, got = Counter(produced_ids), Counter(iceberg_ids)
    lost = sum(1 for k in want if k not in got)
    dups = sum(n - 1 for n in got.values() if n > 1)
    unexpected = sum(n for k, n in got.items() if k not in want)
    detail = [f"first lost: {sorted(k for k in want if k not in got)[:3]}"] if lost else []
    return Count(len(produced_ids), len(iceberg_ids), lost, dups, unexpected, detail)


def table_symbol(symbol: str) -> str:
    """A symbol as the stream writes it to the table (Kraken pairs without the slash)."""
    return symbol.replace("/", "")


def tape_by_symbol(path: Path) -> Tape:
    """The simulator's recorded trades (`k2 simulate --record`) per symbol, in the table's spelling."""
    tape: Tape = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.strip():
            t = json.loads(line)
            tape[table_symbol(t["symbol"])].append(t)
    return dict(tape)


def _same_trade(row: dict[str, Any], trade: dict[str, Any]) -> bool:
    return (Decimal(str(row["price"])) == Decimal(trade["price"]) and Decimal(str(row["quantity"])) ==
            Decimal(trade["qty"]) and str(row.get("side") or "").upper() == trade["side"].upper())


def count_against_tape(tape: Tape, rows: list[dict[str, Any]], *, symbols: list[str] | tuple[str, ...],
                       until_us: int, grace_us: int = GRACE_US) -> Count:
    """Rows (symbol, source_sequence, price, quantity, side) against the tape the simulator sent.

    Expected: per symbol (every configured one, and any other the tape holds), every trade generated up to
    `until_us` - `grace_us`, `until_us` being the wall-clock time (µs) the stream was stopped. Each must be in
    Iceberg once with the tape's values. Trades of the grace window (and after it) count as produced when Iceberg
    holds them. A configured symbol the tape lacks before the cut-off is reported in `missing_symbols`."""
    if until_us <= 0:
        raise ValueError("until_us: the wall-clock time (µs) the stream was stopped is required")
    cutoff = until_us - grace_us
    by_symbol: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_symbol[r["symbol"]].append(r)
    wanted = [table_symbol(s) for s in symbols]
    missing_symbols = [s for s in wanted if not any(t["ts_us"] <= cutoff for t in tape.get(s, ()))]
    produced = lost = dups = unexpected = 0
    detail = [f"{s}: configured, but the simulator sent no trade before the stop" for s in missing_symbols]
    for symbol in dict.fromkeys([*wanted, *tape]):
        trades = {t["seq"]: t for t in tape.get(symbol, ())}
        got = by_symbol.get(symbol, [])
        seqs = Counter(r["source_sequence"] for r in got)
        dups += sum(n - 1 for n in seqs.values() if n > 1)
        unexpected += sum(1 for r in got if r["source_sequence"] not in trades
                          or not _same_trade(r, trades[r["source_sequence"]]))
        required = [s for s, t in trades.items() if t["ts_us"] <= cutoff]
        late = [s for s, t in trades.items() if t["ts_us"] > cutoff and s in seqs]
        produced += len(required) + len(late)
        missing = sorted(s for s in required if s not in seqs)
        lost += len(missing)
        if missing:
            detail.append(f"{symbol}: {len(missing)} of {len(required)} lost, first {missing[:5]}, last {missing[-1]}")
    for symbol in set(by_symbol) - set(tape) - set(wanted):
        unexpected += len(by_symbol[symbol])
        detail.append(f"{symbol}: {len(by_symbol[symbol])} rows of a symbol the simulator never sent")
    return Count(produced, len(rows), lost, dups, unexpected, detail, missing_symbols)


def tape_gaps(tape: Tape, rows: list[dict[str, Any]]) -> int:
    """Sequence gaps (skipped ids) in the part of the tape the rows cover."""
    last: dict[str, int] = defaultdict(int)
    for r in rows:
        last[r["symbol"]] = max(last[r["symbol"]], r["source_sequence"])
    gaps = 0
    for symbol, trades in tape.items():
        seqs = [t["seq"] for t in trades if t["seq"] <= last.get(symbol, -1)]
        gaps += sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b > a + 1)
    return gaps

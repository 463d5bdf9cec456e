"""Gaps in a symbol's trade ids and what the backfill does about them. Pure: plain values in, decisions out.

A gap opens when a trade's id is above the symbol's highest id + 1 (the dedup's bitmap notices it on the
rare branch where ids jump, so the hot path pays nothing), or when the first live trade after a restart is
above the last id already in the topic + 1 (`resume_gap`). A gap is judged after a short grace (a rotation's
old connection may still deliver the ids), then fetched in id order, gaps of one symbol close together in one
fetch (`plan_fetches`); one wider than the per-gap limit is reported unfilled, never fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GRACE_SECONDS = 0.5  # a gap is judged this long after it opened: live ids may still close it
COALESCE_IDS = 1_000  # gaps of one symbol this close (one exchange page) are fetched together

Result = Literal["filled", "unfilled"]


@dataclass(frozen=True)
class Gap:
    """Missing ids first..last (inclusive) of one symbol (exchange form), opened at `opened` (monotonic s)."""

    symbol: str
    first: int
    last: int
    opened: float = 0.0
    after_us: int | None = None  # a time (µs) before its first trade, for exchanges that page by time

    @property
    def size(self) -> int:
        """How many ids it spans."""
        return self.last - self.first + 1


@dataclass(frozen=True)
class Fetch:
    """One fetch: ids first..last of a symbol, covering `gaps` (ids already seen in between are dropped)."""

    symbol: str
    first: int
    last: int
    gaps: tuple[Gap, ...]

    @property
    def after_us(self) -> int | None:
        """The earliest time cursor of its gaps (None if one has none)."""
        times = [g.after_us for g in self.gaps]
        return None if None in times else min(t for t in times if t is not None)

    @property
    def missing(self) -> int:
        """Ids of its gaps, i.e. the most trades it can add."""
        return sum(g.size for g in self.gaps)


def resume_gap(last_in_topic: int | None, first_live: int) -> tuple[int, int] | None:
    """The ids (first, last) between the topic's last id of a symbol and this run's first live id, if any.

    A first id at or below the topic's last is an overlap (a restart within seconds, a replayed snapshot) or a
    sequence restarted by the exchange: either way nothing is missing that this run could name."""
    if last_in_topic is None or first_live <= last_in_topic + 1:
        return None
    return last_in_topic + 1, first_live - 1


def due(gaps: list[Gap], now: float, grace: float = GRACE_SECONDS) -> tuple[list[Gap], list[Gap]]:
    """(gaps old enough to judge, in opening order; gaps still in their grace)."""
    ready = [g for g in gaps if now - g.opened >= grace]
    return ready, [g for g in gaps if now - g.opened < grace]


def plan_fetches(gaps: list[Gap], max_trades: int,
                 coalesce: int = COALESCE_IDS) -> tuple[list[Fetch], list[Gap]]:
    """(fetches in order, gaps too wide to fill): each gap wider than `max_trades` ids is left unfilled; the
    others are fetched in the order they opened, a symbol's gaps within `coalesce` ids of each other in one fetch
    (never one spanning more than `max_trades` ids)."""
    too_wide = [g for g in gaps if g.size > max_trades]
    fetches: list[Fetch] = []
    open_by_symbol: dict[str, int] = {}  # symbol -> index in fetches of its fetch that may still grow
    for gap in (g for g in gaps if g.size <= max_trades):
        i = open_by_symbol.get(gap.symbol)
        if i is not None:
            f = fetches[i]
            first, last = min(f.first, gap.first), max(f.last, gap.last)
            near = gap.first - f.last - 1 <= coalesce and f.first - gap.last - 1 <= coalesce
            if near and last - first + 1 <= max_trades:
                fetches[i] = Fetch(f.symbol, first, last, (*f.gaps, gap))
                continue
        open_by_symbol[gap.symbol] = len(fetches)
        fetches.append(Fetch(gap.symbol, gap.first, gap.last, (gap,)))
    return fetches, too_wide


def narrow(gap: Gap, still_missing: list[tuple[int, int]]) -> list[Gap]:
    """The gap cut down to the runs still missing once its grace is over (live ids may have closed parts)."""
    return [Gap(gap.symbol, a, b, gap.opened, gap.after_us) for a, b in still_missing]


def fill_command(exchange: str, symbol: str, gap: Gap) -> str:
    """The command an operator runs to fill a gap the stream left unfilled (symbol as --symbols takes it)."""
    return f"k2 backfill {exchange} --symbol {symbol} --from-id {gap.first} --to-id {gap.last}"

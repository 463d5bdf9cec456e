"""The market's trade history per symbol, compact, for the REST endpoints: every trade the tape printed.

Trades are kept in flat integer arrays (no Python object per trade: millions stay cheap and out of the GC).
Each symbol keeps its last `limit` trades; older ones are forgotten, as if the exchange's history began at
the oldest trade kept (a REST request for earlier ids or times starts there). Ids rise per symbol (with the
tape's skipped ids absent: REST never invents an id the tape did not print); times never go back.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right

from k2cli.simulator.tape import TapeTrade

_BUY, _MARKET = 1 << 62, 1 << 61  # flags packed above the quantity (quantities stay far below 2**61)
_QTY = _MARKET - 1


class SymbolHistory:
    """One symbol's trades: parallel arrays of ids, µs times, prices and packed quantity+flags."""

    __slots__ = ("symbol", "limit", "start", "ids", "times", "prices", "qtys", "forgotten")

    def __init__(self, symbol: str, limit: int) -> None:
        self.symbol = symbol
        self.limit = limit
        self.start = 0  # index of the oldest kept trade (the arrays are trimmed in chunks)
        self.ids, self.times, self.prices, self.qtys = array("q"), array("q"), array("q"), array("q")
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self.ids) - self.start

    def add(self, t: TapeTrade) -> None:
        """Append a printed trade (the hot path: four appends)."""
        self.ids.append(t.seq)
        self.times.append(t.ts_us)
        self.prices.append(t.price)
        self.qtys.append(t.qty | (_BUY if t.buy else 0) | (_MARKET if t.market else 0))
        if len(self.ids) - self.start > self.limit:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        self.start += 1
        self.forgotten += 1
        if self.start >= max(1024, self.limit // 4):  # trim in chunks: amortised O(1) per trade
            for arr in (self.ids, self.times, self.prices, self.qtys):
                del arr[:self.start]
            self.start = 0

    def trade(self, i: int) -> TapeTrade:
        """The trade at absolute array index i."""
        packed = self.qtys[i]
        return TapeTrade(self.symbol, self.ids[i], self.times[i], self.prices[i], packed & _QTY,
                         bool(packed & _BUY), bool(packed & _MARKET))

    def slice(self, lo: int, hi: int) -> list[TapeTrade]:
        """Trades at absolute indices lo..hi-1, oldest first (clipped to what is kept)."""
        return [self.trade(i) for i in range(max(lo, self.start), min(hi, len(self.ids)))]

    def from_id(self, trade_id: int, limit: int) -> list[TapeTrade]:
        """Up to `limit` trades with id >= trade_id, oldest first."""
        lo = bisect_left(self.ids, trade_id, self.start)
        return self.slice(lo, lo + limit)

    def before_id(self, trade_id: int, limit: int) -> list[TapeTrade]:
        """The `limit` trades with the largest ids < trade_id, oldest first."""
        hi = bisect_left(self.ids, trade_id, self.start)
        return self.slice(hi - limit, hi)

    def after_id(self, trade_id: int, limit: int) -> list[TapeTrade]:
        """Up to `limit` trades with id > trade_id, oldest first."""
        lo = bisect_right(self.ids, trade_id, self.start)
        return self.slice(lo, lo + limit)

    def latest(self, limit: int) -> list[TapeTrade]:
        """The last `limit` trades, oldest first."""
        return self.slice(len(self.ids) - limit, len(self.ids))

    def index_after_time(self, ts_us: int) -> int:
        """Absolute index of the first trade with time > ts_us."""
        return bisect_right(self.times, ts_us, self.start)

    def index_from_time(self, ts_us: int) -> int:
        """Absolute index of the first trade with time >= ts_us."""
        return bisect_left(self.times, ts_us, self.start)

    @property
    def end(self) -> int:
        """Absolute index just past the newest trade."""
        return len(self.ids)


class TradeHistory:
    """Every served symbol's history, each bounded to `limit` trades (0: nothing is kept)."""

    def __init__(self, symbols: tuple[str, ...], limit: int) -> None:
        self.limit = limit
        self.symbols = {s: SymbolHistory(s, limit) for s in symbols}

    def add(self, trades: list[TapeTrade]) -> None:
        """Append the trades of one tape event."""
        if self.limit:
            symbols = self.symbols
            for t in trades:
                symbols[t.symbol].add(t)

    def get(self, symbol: str) -> SymbolHistory | None:
        """A served symbol's history, None for a symbol not served."""
        return self.symbols.get(symbol)

    @property
    def forgotten(self) -> int:
        """Trades dropped past the bound, over all symbols."""
        return sum(h.forgotten for h in self.symbols.values())

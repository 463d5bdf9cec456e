"""The simulator's tape: a deterministic stream of trades (or the frames of a recorded file), and each event's
frames, rendered once per dialect and cached.

A generated tape is reproducible from its seed: per symbol, trade ids count up from a start id (with a
gap every `skip_ids_every` trades when that fault is on), prices walk in ticks of 0.01 and quantities
are whole multiples of 1e-8. Only the trade times come from the clock; per symbol they rise by at least 1 µs
from trade to trade (except the identical trades below), so a symbol's history pages by time. On a
multi-trade tape (a venue whose frames carry several trades) an event holds 1..3 trades of one symbol, and
now and then two identical trades in the same microsecond; otherwise one trade.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

_BASE_PRICES = {"BTC": 65_000, "ETH": 3_500, "BNB": 600, "SOL": 150, "XRP": 1, "DOGE": 1, "ADA": 1, "LTC": 80}
TICK = 1_000_000  # 0.01 in units of 1e-8


class TapeTrade:
    """One trade: ids and amounts as integers (price and qty in units of 1e-8)."""

    __slots__ = ("symbol", "seq", "ts_us", "price", "qty", "buy", "market")

    def __init__(self, symbol: str, seq: int, ts_us: int, price: int, qty: int, buy: bool, market: bool) -> None:
        self.symbol = symbol
        self.seq = seq
        self.ts_us = ts_us
        self.price = price
        self.qty = qty
        self.buy = buy
        self.market = market

    def record(self) -> dict[str, object]:
        """The protocol-neutral form written by `k2 simulate --record`."""
        return {"symbol": self.symbol, "seq": self.seq, "ts_us": self.ts_us, "price": units(self.price, 8),
                "qty": units(self.qty, 8), "side": "buy" if self.buy else "sell",
                "order_type": "market" if self.market else "limit"}


class Event:
    """What one frame carries: trades of one symbol, or a raw frame from a recorded file (symbol None)."""

    __slots__ = ("symbol", "trades", "raw", "at", "_text", "_frame")

    def __init__(self, symbol: str | None, trades: list[TapeTrade], raw: str | None = None) -> None:
        self.symbol = symbol
        self.trades = trades
        self.raw = raw
        self.at = 0.0  # monotonic time the market published it
        self._text: dict[str, str] = {}  # by dialect key: str keys and values keep these dicts out of the GC
        self._frame: dict[str, bytes] = {}

    def text(self, dialect: Renderer) -> str:
        """The frame's text in a dialect, rendered once (a recorded frame is sent as it is)."""
        return self._rendered(dialect.key, dialect)

    def frame(self, dialect: Renderer) -> bytes:
        """The complete WebSocket text frame (server to client: unmasked, FIN) of `text(dialect)`."""
        key = dialect.key
        cached = self._frame.get(key)
        if cached is None:
            cached = self._frame[key] = ws_text_frame(self._rendered(key, dialect))
        return cached

    def _rendered(self, key: str, dialect: Renderer) -> str:
        if self.raw is not None:
            return self.raw
        cached = self._text.get(key)
        if cached is None:
            cached = self._text[key] = dialect.render(self)
        return cached


class Renderer(Protocol):
    """What writes a tape event as a frame's text (a venue's dialect), and the key its frames are cached under."""

    key: str

    def render(self, event: Event) -> str:
        """The text of the data frame that carries `event`."""
        ...


def ws_text_frame(text: str) -> bytes:
    """An unmasked, unfragmented RFC 6455 text frame (what a server sends)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def units(value: int, places: int) -> str:
    """An integer amount in units of 1e-8 as a decimal string with `places` fractional digits."""
    whole, frac = divmod(value, 10**8)
    digits = f"{frac:08d}"[:places] if places <= 8 else f"{frac:08d}" + "0" * (places - 8)
    return f"{whole}.{digits}" if places else str(whole)


def json_number(value: int) -> str:
    """An amount in units of 1e-8 as a JSON number without trailing zeros."""
    text = units(value, 8).rstrip("0")
    return text[:-1] if text.endswith(".") else text


def rfc3339(ts_us: int) -> str:
    """RFC 3339 UTC text of a µs timestamp, with 6 fractional digits."""
    dt = datetime.fromtimestamp(ts_us // 1_000_000, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ts_us % 1_000_000:06d}Z"


class GeneratedTape:
    """Deterministic trades for the symbols (in the venue's form: BTCUSDT, BTC/USD, BTC-USD ...)."""

    def __init__(self, symbols: tuple[str, ...], seed: int = 1, skip_ids_every: int = 0, start_id: int = 1_000_000,
                 *, multi: bool = False) -> None:
        self.symbols = symbols
        self._rng = random.Random(seed)
        self._skip_every = skip_ids_every
        self._count = 0
        self._next_id = {s: start_id + i * 10_000_000 for i, s in enumerate(symbols)}
        self._price = {s: _BASE_PRICES.get(_base_asset(s), 100) * 10**8 for s in symbols}
        self._last_us = dict.fromkeys(symbols, 0)
        self._multi = multi

    def next_event(self, now_us: int) -> Event:
        """The next frame's trades, stamped `now_us`."""
        rng = self._rng
        bits = rng.getrandbits(64)  # one draw per event: symbol, size, then 16 bits per trade
        symbol = self.symbols[bits % len(self.symbols)]
        n = (1, 1, 2, 3)[(bits >> 8) & 3] if self._multi else 1
        bits >>= 10
        trades: list[TapeTrade] = []
        for i in range(n):
            self._count += 1
            seq = self._next_id[symbol]
            if self._skip_every and self._count % self._skip_every == 0:
                seq += 1  # the exchange skips an id: a gap for sequence tracking
            self._next_id[symbol] = seq + 1
            price = max(TICK, self._price[symbol] + ((bits & 7) % 7 - 3) * TICK)
            self._price[symbol] = price
            if i > 0 and (bits >> 3) % 10 < 3:
                prev = trades[-1]  # an identical trade in the same µs (without trade ids, indistinguishable)
                trades.append(TapeTrade(symbol, seq, prev.ts_us, prev.price, prev.qty, prev.buy, prev.market))
            else:
                qty = rng.getrandbits(22) % 5_000_000 + 1
                ts_us = max(now_us + i, self._last_us[symbol] + 1)  # a symbol's times rise (REST pages by time)
                self._last_us[symbol] = ts_us
                trades.append(TapeTrade(symbol, seq, ts_us, price, qty, bool(bits & 0x80), (bits >> 8) % 5 == 0))
            bits >>= 16
        return Event(symbol, trades)


def _base_asset(symbol: str) -> str:
    """The base asset of a symbol written with a separator (BTC/USD, BTC-USD) or without one (BTCUSDT)."""
    for sep in "/-":
        if sep in symbol:
            return symbol.split(sep)[0]
    return next((b for b in _BASE_PRICES if symbol.startswith(b)), "")


def read_tape_file(path: Path) -> Iterator[Event]:
    """The frames of a recorded file, one raw frame per non-empty line (sent as they are)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line.strip():
                yield Event(None, [], raw=line)


def record_line(trade: TapeTrade) -> str:
    """The JSONL line of a trade for `--record`."""
    return json.dumps(trade.record(), separators=(",", ":"))

"""Gaps of a feed without trade ids (its ids hash the fields), by time window. Pure: plain values in, windows out.

Without ids a gap cannot be seen inside a connection, only where the stream was not listening: between the last
trade of a symbol a closed connection delivered (or the newest one already in the topic, at a restart) and the
first trade of that symbol a connection delivers afterwards. That window is fetched by time with both edge times
included; the dedup's set of recent hashed ids drops every trade of it the stream already delivered (the edge
trades too). A later connection whose first trade is at or before the last one seen (it overlapped: a rotation,
a replayed snapshot) leaves no window.
"""

from __future__ import annotations

from dataclasses import dataclass

from k2cli.timespec import from_micros, iso

COALESCE_US = 5_000_000  # windows of one symbol this close are fetched in one go


@dataclass(frozen=True)
class Window:
    """Trades of `symbol` (record form) from since_us to until_us, both included, that the stream may lack."""

    symbol: str
    since_us: int  # the last trade seen before the break
    until_us: int  # the first trade seen after it (or the stop)


class WindowTracker:
    """Turns connection breaks into windows: `closed` at each break, `first_trades` as later connections deliver."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}  # symbol -> newest trade time delivered by a closed connection (or in topic)
        self.pending: dict[str, int] = {}  # symbol -> start of a window whose first trade after is still to come
        self.ready: list[Window] = []

    def resumed(self, newest: dict[str, int]) -> None:
        """The newest trade time per symbol already in the topic: this run's first trade of each ends a window."""
        for symbol, t in newest.items():
            self.last[symbol] = max(self.last.get(symbol, t), t)
            self.pending.setdefault(symbol, t)

    def closed(self, edges: dict[str, tuple[int, int]], others_first: dict[str, int], opens: bool = True) -> None:
        """A connection closed. edges: symbol -> (its first, its last trade time); others_first: symbol -> the
        earliest first trade time of the connections still open; opens: False when the stream is stopping (no
        new window, but one it closes still counts)."""
        self.first_trades({s: first for s, (first, _) in edges.items()})
        for symbol, (_, last) in edges.items():
            lo = self.last[symbol] = max(self.last.get(symbol, last), last)
            if not opens:
                continue
            hi = others_first.get(symbol)
            if hi is None:
                self.pending[symbol] = lo
            elif hi > lo:
                self.ready.append(Window(symbol, lo, hi))

    def first_trades(self, firsts: dict[str, int]) -> None:
        """The first trade time per symbol of connections opened after a break: the windows it ends are ready."""
        for symbol in [s for s in self.pending if s in firsts]:
            lo, hi = self.pending.pop(symbol), firsts[symbol]
            if hi > lo:
                self.ready.append(Window(symbol, lo, hi))

    def stop(self, now_us: int) -> None:
        """The stream stops: a window still waiting for its first trade after ends now."""
        for symbol, lo in self.pending.items():
            if now_us > lo:
                self.ready.append(Window(symbol, lo, now_us))
        self.pending.clear()

    def take(self) -> list[Window]:
        """The ready windows, a symbol's close ones merged (COALESCE_US), in the order they became ready."""
        ready, self.ready = self.ready, []
        return merge(ready)


def merge(windows: list[Window], coalesce_us: int = COALESCE_US) -> list[Window]:
    """Windows of one symbol that overlap or lie within coalesce_us of each other as one, first ones first."""
    out: list[Window] = []
    for w in windows:
        for i, o in enumerate(out):
            if o.symbol == w.symbol and w.since_us - o.until_us <= coalesce_us \
                    and o.since_us - w.until_us <= coalesce_us:
                out[i] = Window(w.symbol, min(o.since_us, w.since_us), max(o.until_us, w.until_us))
                break
        else:
            out.append(w)
    return out


def iso_us(us: int) -> str:
    """A µs time as ISO 8601 UTC with six decimals and a Z (what `k2 backfill --since/--until` take)."""
    return iso(from_micros(us)).replace("+00:00", "Z")


def window_command(exchange: str, symbol: str, w: Window) -> str:
    """The command an operator runs to fill a window the stream left unfilled (--until excluded, so one µs on)."""
    return f"k2 backfill {exchange} --symbol {symbol} --since {iso_us(w.since_us)} --until {iso_us(w.until_us + 1)}"

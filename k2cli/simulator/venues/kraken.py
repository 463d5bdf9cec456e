"""Kraken's WebSocket API, simulated: v1 and v2 (/v2 always serves v2; other paths serve --kraken-version).

A connection is greeted with the system status and delivers nothing until it subscribes to trade pairs;
each subscription is answered, then (unless v2's `snapshot` is false) followed by a snapshot of the pair's
last trades. Frames carry 1..3 trades of one pair. Idle connections get heartbeats; pings get pongs.

REST: GET /0/public/Trades?pair=P[&since=NS][&count=N] answers {"error":[],"result":{NAME:[[price, volume,
time, side, order type, misc, trade_id], ...],"last":"NS"}}: trades strictly after `since` (ns since the epoch;
a value of 11 digits or fewer counts as seconds), ascending, count 1..1000 (default 1000, clipped); without
`since` the most recent. Trade times have µs precision; within one µs (the tape's identical trades) the k-th
trade of a pair counts as k ns later, so a `last` cursor never splits such a group. P may be any of Kraken's
spellings (BTC/USD, XBT/USD, XBTUSD, XXBTZUSD); NAME is the REST one. Errors in the "error" array.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from k2cli.errors import ConfigError
from k2cli.exchanges.symbols import (
    KRAKEN_LEGACY_ASSETS,
    KRAKEN_V1_NAMES,
    UnknownSymbol,
    kraken_v1_pair,
    split_kraken_pair,
)
from k2cli.simulator.tape import Event, TapeTrade, json_number, rfc3339, units
from k2cli.simulator.venues.base import Dialect, Link, RestAnswer, RestApi, Route, Venue, VenueOption, option

if TYPE_CHECKING:
    from k2cli.simulator.config import SimulatorConfig
    from k2cli.simulator.history import SymbolHistory, TradeHistory

CHANNEL_ID = 337
VERSION = VenueOption("kraken_version", "--kraken-version", 1,
                      "Kraken: WS API version served on paths other than /v2 (/v2 always serves v2).")


def _now_rfc() -> str:
    return rfc3339(time.time_ns() // 1000)


class _Kraken(Dialect):
    """The subscribe handshake both versions share: replies per pair, then snapshots, then delivery."""

    async def subscribe(self, link: Link, pairs: list[str], req_id: Any, snapshot: bool = True) -> None:
        """Answer a subscribe request for `pairs` and start delivering the known ones."""
        cursor = link.anchor()
        replies, snapshots = [], []
        for pair in pairs:
            try:
                base, quote = split_kraken_pair(pair.upper())
                known = f"{base}/{quote}" in link.served
            except UnknownSymbol:
                known = False
            if not known:
                replies.append(self.refused(pair, req_id))
                continue
            normal = f"{base}/{quote}"
            replies.append(self.subscribed(pair, normal, req_id, snapshot))
            link.subscribe(normal)
            if snapshot:
                trades = link.recent_trades(normal, cursor)
                if trades:
                    snapshots.append(self.snapshot_frame(normal, trades))
        await link.send(replies + snapshots)
        link.start()

    @abstractmethod
    def subscribed(self, pair: str, normal: str, req_id: Any, snapshot: bool) -> str:
        """The reply to a pair that is served."""

    @abstractmethod
    def refused(self, pair: str, req_id: Any) -> str:
        """The reply to a pair that is not served."""

    @abstractmethod
    def snapshot_frame(self, symbol: str, trades: list[TapeTrade]) -> str:
        """The snapshot of a pair's last trades, sent after the subscribe reply."""


def _v1_rows(trades: list[TapeTrade]) -> str:
    return ",".join(
        f'["{units(t.price, 5)}","{units(t.qty, 8)}","{t.ts_us // 1_000_000}.{t.ts_us % 1_000_000:06d}",'
        f'"{"b" if t.buy else "s"}","{"m" if t.market else "l"}",""]' for t in trades)


class WsV1(_Kraken):
    """WS API v1: array frames on channel 337, pairs as XBT/USD."""

    heartbeat = '{"event":"heartbeat"}'

    def render(self, event: Event) -> str:
        return f'[{CHANNEL_ID},[{_v1_rows(event.trades)}],"trade","{kraken_v1_pair(event.symbol or "")}"]'

    def garbage(self, n: int) -> str:
        return ('[337,[["1.0","1.0"',
                '[337,[["1.0","1.0","1.5"]],"trade","XBT/USD"]',
                '{"event":"surprise"}',
                '[337,[["0.00000","1.0","1700000000.000001","b","l",""]],"trade","XBT/USD"]')[n % 4]

    async def open(self, link: Link) -> None:
        await link.send([json.dumps({"connectionID": link.conn_id, "event": "systemStatus", "status": "online",
                                     "version": "1.9.1"})])

    async def on_message(self, link: Link, msg: dict[str, Any]) -> None:
        if msg.get("event") == "ping":
            await link.send([json.dumps({"event": "pong", "reqid": msg.get("reqid")})])
        elif msg.get("event") == "subscribe":
            await self.subscribe(link, [str(p) for p in msg.get("pair") or []], msg.get("reqid"))

    def subscribed(self, pair: str, normal: str, req_id: Any, snapshot: bool) -> str:
        return json.dumps({"channelID": CHANNEL_ID, "channelName": "trade", "event": "subscriptionStatus",
                           "pair": pair, "status": "subscribed", "subscription": {"name": "trade"}, "reqid": req_id})

    def refused(self, pair: str, req_id: Any) -> str:
        return json.dumps({"errorMessage": f"Currency pair not supported {pair}", "event": "subscriptionStatus",
                           "pair": pair, "status": "error", "subscription": {"name": "trade"}, "reqid": req_id})

    def snapshot_frame(self, symbol: str, trades: list[TapeTrade]) -> str:
        return self.render(Event(symbol, trades))


def _v2_trade(t: TapeTrade) -> str:
    return (f'{{"symbol":"{t.symbol}","side":"{"buy" if t.buy else "sell"}","price":{json_number(t.price)},'
            f'"qty":{json_number(t.qty)},"ord_type":"{"market" if t.market else "limit"}","trade_id":{t.seq},'
            f'"timestamp":"{rfc3339(t.ts_us)}"}}')


class WsV2(_Kraken):
    """WS API v2: JSON objects on the trade channel, pairs as BTC/USD, trade ids."""

    heartbeat = '{"channel":"heartbeat"}'

    def render(self, event: Event) -> str:
        return f'{{"channel":"trade","type":"update","data":[{",".join(_v2_trade(t) for t in event.trades)}]}}'

    def garbage(self, n: int) -> str:
        return ('{"channel":"trade","data":[{"symbol"',
                '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy"}]}',
                '{"channel":"book","type":"update","data":[]}',
                '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":0,"qty":1,'
                '"ord_type":"limit","trade_id":1,"timestamp":"2024-01-01T00:00:00.000000Z"}]}')[n % 4]

    async def open(self, link: Link) -> None:
        await link.send([json.dumps({"channel": "status", "type": "update", "data": [{
            "api_version": "v2", "connection_id": link.conn_id, "system": "online", "version": "2.0.0"}]})])

    async def on_message(self, link: Link, msg: dict[str, Any]) -> None:
        if msg.get("method") == "ping":
            await link.send([json.dumps({"method": "pong", "req_id": msg.get("req_id"), "time_in": _now_rfc(),
                                         "time_out": _now_rfc()})])
        elif msg.get("method") == "subscribe":
            params = msg.get("params") or {}
            await self.subscribe(link, [str(p) for p in params.get("symbol") or []], msg.get("req_id"),
                                 snapshot=params.get("snapshot", True) is not False)

    def subscribed(self, pair: str, normal: str, req_id: Any, snapshot: bool) -> str:
        return json.dumps({"method": "subscribe", "req_id": req_id, "success": True,
                           "result": {"channel": "trade", "snapshot": snapshot, "symbol": normal},
                           "time_in": _now_rfc(), "time_out": _now_rfc()})

    def refused(self, pair: str, req_id: Any) -> str:
        return json.dumps({"error": f"Currency pair not supported {pair}", "method": "subscribe", "req_id": req_id,
                           "success": False, "symbol": pair, "time_in": _now_rfc(), "time_out": _now_rfc()})

    def snapshot_frame(self, symbol: str, trades: list[TapeTrade]) -> str:
        return f'{{"channel":"trade","type":"snapshot","data":[{",".join(_v2_trade(t) for t in trades)}]}}'


V1, V2 = WsV1(), WsV2()


TRADES = "/0/public/Trades"
_ERRORS = {400: "EGeneral:Invalid arguments", 404: "EGeneral:Unknown method", 429: "EGeneral:Too many requests",
           500: "EGeneral:Internal error", 503: "EService:Unavailable"}


def rest_pair_name(pair: str) -> str:
    """The REST name of a pair: X/Z-prefixed when both assets have legacy codes (XXBTZUSD), else the altname."""
    base, quote = (KRAKEN_V1_NAMES.get(a, a) for a in split_kraken_pair(pair))
    prefixed = [next((p + a for p in "XZ" if p + a in KRAKEN_LEGACY_ASSETS), None) for a in (base, quote)]
    return "".join(p for p in prefixed if p) if all(prefixed) else base + quote


def _spellings(pair: str) -> list[str]:
    v1 = kraken_v1_pair(pair)
    return [pair, v1, pair.replace("/", ""), v1.replace("/", ""), rest_pair_name(pair)]


def _rest_trade(t: TapeTrade, trade_id: int) -> str:
    return (f'["{units(t.price, 5)}","{units(t.qty, 8)}",{t.ts_us // 1_000_000}.{t.ts_us % 1_000_000:06d},'
            f'"{"b" if t.buy else "s"}","{"m" if t.market else "l"}","",{trade_id}]')


def _cursor_index(trades: SymbolHistory, since_ns: int) -> int:
    """Index of the first trade strictly after a ns cursor (the k-th trade of a µs counting k ns later)."""
    us, k = divmod(since_ns, 1000)
    return min(trades.index_from_time(us) + k + 1, trades.index_after_time(us))


def _cursor_of(trades: SymbolHistory, i: int) -> int:
    """The ns cursor of the trade at index i."""
    us = trades.times[i]
    return us * 1000 + i - trades.index_from_time(us)


class PublicTrades(RestApi):
    """GET /0/public/Trades."""

    def __init__(self, served: tuple[str, ...]) -> None:
        self.pairs = {name.upper(): pair for pair in served for name in _spellings(pair)}

    def answer(self, path: str, query: Mapping[str, str], history: TradeHistory) -> RestAnswer | None:
        if path.rstrip("/") != TRADES:
            return None
        pair = self.pairs.get(query.get("pair", "").upper())
        trades = history.get(pair) if pair else None
        if pair is None or trades is None:
            return self._error(400, "EQuery:Unknown asset pair")
        since, count = query.get("since", ""), query.get("count", "")
        if not (since.isdigit() or not since) or not (count.isdigit() or not count):
            return self._error(400, "EGeneral:Invalid arguments")
        limit = min(1000, max(1, int(count or 1000)))
        since_ns = int(since) * (10**9 if len(since) <= 11 else 1) if since else None
        lo = trades.end - limit if since_ns is None else _cursor_index(trades, since_ns)
        page = trades.slice(lo, lo + limit)
        lo = max(lo, trades.start)
        last = _cursor_of(trades, lo + len(page) - 1) if page else (since_ns or 0)
        rows = ",".join(_rest_trade(t, t.seq) for t in page)
        return RestAnswer(200, f'{{"error":[],"result":{{"{rest_pair_name(pair)}":[{rows}],"last":"{last}"}}}}')

    def error(self, status: int, message: str) -> RestAnswer:
        return self._error(status, _ERRORS.get(status, "EGeneral:Internal error" if status >= 500 else message))

    def _error(self, status: int, message: str) -> RestAnswer:
        return RestAnswer(status, json.dumps({"error": [message]}))


class Kraken(Venue):
    """The Kraken venue."""

    name = "kraken"
    summary = "WS v1 at /, v2 at /v2"
    multi_trade_events = True
    options = (VERSION,)

    def normalise_symbol(self, raw: str) -> str:
        base, quote = split_kraken_pair(raw.strip().upper())
        return f"{base}/{quote}"

    def check(self, cfg: SimulatorConfig) -> None:
        if option(cfg.options, VERSION) not in (1, 2):
            raise ConfigError("--kraken-version must be 1 or 2")

    def route(self, path: str, cfg: SimulatorConfig) -> Route | None:
        if urlsplit(path).path.rstrip("/").endswith("/v2") or option(cfg.options, VERSION) == 2:
            return Route(V2)
        return Route(V1)

    def rest_api(self, cfg: SimulatorConfig) -> RestApi:
        return PublicTrades(cfg.symbols)


VENUE = Kraken()

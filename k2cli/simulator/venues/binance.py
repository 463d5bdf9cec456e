"""Binance's trade streams, simulated: combined streams at /stream?streams=..., raw streams at /ws/<stream>;
and its old-trade lookup, GET /api/v3/historicalTrades?symbol=S[&fromId=N][&limit=L].

The subscription is in the URL: the connection delivers at once, one trade per frame. A SUBSCRIBE,
UNSUBSCRIBE or LIST_SUBSCRIPTIONS request gets the usual `{"result": null, "id": ...}` and changes nothing.
REST: trades with id >= fromId ascending (without fromId the most recent), limit 1..1000 (default 500; outside
that range it is clipped), every answer with X-MBX-USED-WEIGHT-1M (25 per call in the current minute, reported,
not enforced: --rest-rate-limit is the limit); errors as {"code":..,"msg":..}; after a 429, a request within its
Retry-After gets 418 (banned).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from k2cli.exchanges.symbols import split_binance_symbol
from k2cli.simulator.tape import Event, TapeTrade, units
from k2cli.simulator.venues.base import Dialect, Link, RestAnswer, RestApi, Route, Venue

if TYPE_CHECKING:
    from k2cli.simulator.config import SimulatorConfig
    from k2cli.simulator.history import TradeHistory


def _payload(t: TapeTrade) -> str:
    ms = t.ts_us // 1000
    return (f'{{"e":"trade","E":{ms + 1},"s":"{t.symbol}","t":{t.seq},"p":"{units(t.price, 8)}",'
            f'"q":"{units(t.qty, 8)}","T":{ms},"m":{"false" if t.buy else "true"},"M":true}}')


_GARBAGE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTC',
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"q":"1.0","T":1,"m":true}}',
    '{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT"}}',
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"0.00000000",'
    '"q":"1.0","T":1,"m":true,"M":true}}',
)


class _Streams(Dialect):
    """What both stream forms share: the handshake-free start, the request replies, the garbage."""

    def garbage(self, n: int) -> str:
        return _GARBAGE[n % 4]

    async def on_message(self, link: Link, msg: dict[str, Any]) -> None:
        if msg.get("method") in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS"):
            await link.send([json.dumps({"result": None, "id": msg.get("id")})])


class Combined(_Streams):
    """/stream?streams=a@trade/b@trade: each payload wrapped with its stream name."""

    def render(self, event: Event) -> str:
        t = event.trades[0]
        return f'{{"stream":"{t.symbol.lower()}@trade","data":{_payload(t)}}}'

    def shutdown_frame(self, ms: int) -> str:
        return f'{{"stream":"!serverShutdown","data":{{"e":"serverShutdown","E":{ms}}}}}'


class Raw(_Streams):
    """/ws/a@trade: bare payloads."""

    def render(self, event: Event) -> str:
        return _payload(event.trades[0])

    def shutdown_frame(self, ms: int) -> str:
        return f'{{"e":"serverShutdown","E":{ms}}}'


COMBINED, RAW = Combined(), Raw()


HISTORICAL_TRADES = "/api/v3/historicalTrades"
WEIGHT = 25  # of one historicalTrades call
_CODES = {400: -1100, 404: -1000, 418: -1003, 429: -1003}


def _quote_qty(t: TapeTrade) -> str:
    """price * qty, exact, without trailing zeros."""
    whole, frac = divmod(t.price * t.qty, 10**16)
    digits = f"{frac:016d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def rest_trade(t: TapeTrade) -> str:
    """One trade of a historicalTrades answer (the WebSocket's t, p, q, T, m, M)."""
    return (f'{{"id":{t.seq},"price":"{units(t.price, 8)}","qty":"{units(t.qty, 8)}","quoteQty":"{_quote_qty(t)}",'
            f'"time":{t.ts_us // 1000},"isBuyerMaker":{"false" if t.buy else "true"},"isBestMatch":true}}')


class HistoricalTrades(RestApi):
    """GET /api/v3/historicalTrades, with the used-weight header of the current minute."""

    ban_status = 418

    def __init__(self) -> None:
        self.minute, self.used = -1, 0

    def answer(self, path: str, query: Mapping[str, str], history: TradeHistory) -> RestAnswer | None:
        if path.rstrip("/") != HISTORICAL_TRADES:
            return None
        symbol = query.get("symbol", "")
        if not symbol:
            return self._error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        trades = history.get(symbol.upper())
        if trades is None:
            return self._error(400, -1121, "Invalid symbol.")
        numbers = {}
        for name, default in (("limit", 500), ("fromId", -1)):
            raw = query.get(name, "")
            if raw and not raw.isdigit():
                return self._error(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                               "'^[0-9]{1,20}$'.")
            numbers[name] = int(raw) if raw else default
        limit = min(1000, max(1, numbers["limit"]))
        page = trades.latest(limit) if numbers["fromId"] < 0 else trades.from_id(numbers["fromId"], limit)
        return RestAnswer(200, f"[{','.join(rest_trade(t) for t in page)}]")

    def error(self, status: int, message: str) -> RestAnswer:
        if status >= 500:
            return self._error(status, -1001, "Internal error; unable to process your request. Please try again.")
        return self._error(status, _CODES.get(status, -1000), message)

    def _error(self, status: int, code: int, message: str) -> RestAnswer:
        return RestAnswer(status, json.dumps({"code": code, "msg": message}))

    def finish(self, answer: RestAnswer, now: float) -> RestAnswer:
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0
        self.used += WEIGHT
        return answer._replace(headers=(*answer.headers, ("X-MBX-USED-WEIGHT-1M", str(self.used))))


class Binance(Venue):
    """The Binance venue."""

    name = "binance"
    summary = "combined @trade streams at /stream"
    url_path = "/stream"
    shutdown_notice = "serverShutdown"

    def normalise_symbol(self, raw: str) -> str:
        symbol = raw.strip().upper()
        split_binance_symbol(symbol)
        return symbol

    def route(self, path: str, cfg: SimulatorConfig) -> Route | None:
        parts = urlsplit(path)
        dialect: Dialect
        if parts.path.startswith("/ws/"):
            streams, dialect = [parts.path[4:]], RAW
        elif parts.path.rstrip("/") == "/stream":
            streams, dialect = "/".join(parse_qs(parts.query).get("streams", [""])).split("/"), COMBINED
        else:
            return None
        symbols = []
        for stream in streams:
            name, _, kind = stream.partition("@")
            if kind != "trade" or name.upper() not in cfg.symbols:
                return None
            symbols.append(name.upper())
        return Route(dialect, tuple(symbols))

    def rest_api(self, cfg: SimulatorConfig) -> RestApi:
        return HistoricalTrades()


VENUE = Binance()

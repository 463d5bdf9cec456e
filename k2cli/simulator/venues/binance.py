"""Binance's trade streams, simulated: combined streams at /stream?streams=..., raw streams at /ws/<stream>.

The subscription is in the URL: the connection delivers at once, one trade per frame. A SUBSCRIBE,
UNSUBSCRIBE or LIST_SUBSCRIPTIONS request gets the usual `{"result": null, "id": ...}` and changes nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from k2cli.exchanges.symbols import split_binance_symbol
from k2cli.simulator.tape import Event, TapeTrade, units
from k2cli.simulator.venues.base import Dialect, Link, Route, Venue

if TYPE_CHECKING:
    from k2cli.simulator.config import SimulatorConfig


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


VENUE = Binance()

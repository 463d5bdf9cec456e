"""Binance spot `<symbol>@trade` frames (combined-stream endpoint) -> v2 trade records. Pure: no I/O."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from k2cli.exchanges.base import (
    CONTROL_FRAME,
    SHUTDOWN,
    TRADES,
    FrameError,
    MessageIds,
    Parsed,
    Row,
    exact_decimal,
)
from k2cli.exchanges.binance_rest import BinanceRest
from k2cli.exchanges.descriptor import ConnectionPlan, ExchangeDescriptor, StreamExpectation
from k2cli.exchanges.symbols import UnknownSymbol, check_binance_symbols, split_binance_symbol

EXCHANGE = "BINANCE"
REQUIRED = ("e", "E", "s", "t", "p", "q", "T", "m")
_BEST_MATCH = (("is_best_match", "true"),)
_NOT_BEST_MATCH = (("is_best_match", "false"),)


def stream_url(base_url: str, symbols: tuple[str, ...] | list[str]) -> str:
    """The combined-stream URL for the symbols' trade streams (`/stream?streams=btcusdt@trade/...`)."""
    parts = urlsplit(base_url)
    path = parts.path if parts.path not in ("", "/") else "/stream"
    streams = "/".join(f"{s.lower()}@trade" for s in symbols)
    query = f"{parts.query}&streams={streams}" if parts.query else f"streams={streams}"
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


class BinanceParser:
    """Turns one Binance frame into a Parsed result; raises FrameError for a frame that is not usable."""

    def __init__(self) -> None:
        self._ids = MessageIds()
        self._assets: dict[str, tuple[Row, Row]] = {}  # symbol -> its vendor_data heads

    def _split(self, symbol: str) -> tuple[Row, Row]:
        """The vendor_data entries a symbol's trades start with: (for m=false, for m=true)."""
        heads = self._assets.get(symbol)
        if heads is None:
            try:
                base, quote = split_binance_symbol(symbol)
            except UnknownSymbol as exc:
                raise FrameError("unknown_symbol", str(exc)) from None
            taker_buys, taker_sells = ((("base_asset", base), ("quote_asset", quote), ("is_buyer_maker", flag),
                                        ("event_type", "trade")) for flag in ("false", "true"))
            heads = (taker_buys, taker_sells)
            if len(self._assets) < 10_000:
                self._assets[symbol] = heads
        return heads

    def parse(self, raw: str | bytes, ingest_us: int) -> Parsed[dict[str, Any]]:
        """Parse one frame received at `ingest_us` (µs); trades as v2 records (dicts)."""
        return self.parse_rows(raw, ingest_us).as_records()

    def parse_rows(self, raw: str | bytes, ingest_us: int) -> Parsed[Row]:
        """Parse one frame received at `ingest_us` (µs); trades as rows (the stream's hot path)."""
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FrameError("invalid_json", f"not JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise FrameError("unknown_event", f"expected a JSON object, got {type(msg).__name__}")
        data = msg.get("data", msg) if "stream" in msg else msg
        if not isinstance(data, dict):
            raise FrameError("unknown_event", "combined-stream frame whose data is not an object")
        event = data.get("e")
        if event == "trade":
            return Parsed(TRADES, [self.trade_row(data, ingest_us)])
        if event == "serverShutdown" or msg.get("stream") == "!serverShutdown":
            return Parsed(SHUTDOWN, info="serverShutdown")
        if event is None and "id" in msg and "result" in msg:
            return CONTROL_FRAME  # reply to a SUBSCRIBE / LIST_SUBSCRIPTIONS request
        if event is None and "code" in msg and "msg" in msg:
            raise FrameError("exchange_error", f"exchange error {msg.get('code')}: {msg.get('msg')}")
        raise FrameError("unknown_event", f"unknown event {event!r}")

    def trade_row(self, d: dict[str, Any], ingest_us: int) -> Row:
        """The row of one trade event (WS `data`; REST backfill builds the same shape): the one normalisation."""
        try:
            symbol = d["s"]
            t = d["t"]
            trade_time = d["T"]
            event_time = d["E"]
            maker = d["m"]
            price = d["p"]
            qty = d["q"]
        except KeyError:
            missing = [k for k in REQUIRED if k not in d]
            raise FrameError("missing_field", f"trade without field(s) {', '.join(missing)}") from None
        if type(t) is not int or t < 0:
            raise FrameError("invalid_value", f"trade id t={t!r} is not a non-negative integer")
        if type(trade_time) is not int or trade_time <= 0 or type(event_time) is not int:
            raise FrameError("invalid_value", f"trade time T={trade_time!r} / E={event_time!r} are not integers")
        if type(maker) is not bool:
            raise FrameError("invalid_value", f"m={maker!r} is not a boolean")
        if type(price) is not str or type(qty) is not str:
            raise FrameError("invalid_value", "price p and quantity q must be strings")
        if type(symbol) is not str:
            raise FrameError("invalid_value", f"symbol s={symbol!r} is not a string")
        taker_buys, taker_sells = self._split(symbol)
        best = d.get("M")
        vendor = (taker_sells if maker else taker_buys) + (("event_time", str(event_time)),
                                                             ("trade_time", str(trade_time)))
        if best is not None:
            vendor += _BEST_MATCH if best else _NOT_BEST_MATCH
        # message_id, trade_id, symbol, exchange, asset_class, timestamp, price, quantity, currency, side,
        # trade_conditions, source_sequence, ingestion_timestamp, platform_sequence, vendor_data
        return (self._ids.next(), f"BINANCE-{t}", symbol, EXCHANGE, "crypto", trade_time * 1000,
                exact_decimal("price", price), exact_decimal("quantity", qty), taker_buys[1][1],  # the quote asset
                "SELL" if maker else "BUY",
                (), t, ingest_us, None, vendor)


def _stored_symbol(symbol: str) -> str:
    """A checked Binance symbol is stored as it is (BTCUSDT)."""
    return symbol


def _plan(urls: tuple[str, ...], symbols: tuple[str, ...]) -> ConnectionPlan:
    """Binance serves trade streams only with the streams query: the URL itself subscribes."""
    return ConnectionPlan(urls=tuple(stream_url(u, symbols) for u in urls), subscribe=(), parser=BinanceParser(),
                          sequential_ids=True)


DESCRIPTOR = ExchangeDescriptor(
    name="binance",
    title="Binance",
    code=EXCHANGE,
    default_topic="market.crypto.trades.binance",
    default_url="wss://stream.binance.com:9443/stream",
    default_failover_urls=("wss://data-stream.binance.vision/stream",),
    default_symbols=("BTCUSDT", "ETHUSDT"),
    default_metrics_port=9091,
    check_symbols=check_binance_symbols,
    stored_symbol=_stored_symbol,
    plan=_plan,
    expectation=StreamExpectation(first_trade_max_s=10, rate_min_per_s=1, rate_max_per_s=100,
                                  latency_p95_max_ms=100, seed_rate="1-100/sec"),
    simulator_module="k2cli.simulator.venues.binance",
    symbols_help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT",
    url_doc="Binance combined-stream WebSocket URL (`ws://` allowed for local simulators).",
    symbols_doc="Comma-separated Binance symbols; an unknown quote asset is refused at start-up.",
    vendor_fields=("base_asset", "quote_asset", "is_buyer_maker", "event_type"),
    rest=BinanceRest(),
    default_rest_url="https://api.binance.com",
)

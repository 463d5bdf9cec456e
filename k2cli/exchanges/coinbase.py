"""Coinbase Exchange `matches` channel frames -> v2 trade records. Pure: no I/O.

The feed (wss://ws-feed.exchange.coinbase.com) answers a subscribe with a `subscriptions` message, then
sends per product one `last_match` (the product's latest trade before the subscription), then a `match`
for every trade. `trade_id` counts up by one per product, so trade_id is `COINBASE-{symbol}-{trade_id}`
and source_sequence is the trade_id. `side` is the side of the MAKER (the resting order): the taker, the
side k2 stores, is the opposite. Prices and sizes are JSON strings, times RFC 3339 with microseconds.
Products are BASE-QUOTE (BTC-USD); the stored symbol is base and quote without separator (BTCUSD), the
product as sent stays in vendor_data["product_id"].
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from k2cli.errors import ConfigError
from k2cli.exchanges.base import (
    CONTROL_FRAME,
    SUBSCRIBE_ERROR,
    TRADES,
    FrameError,
    MessageIds,
    Parsed,
    Row,
    exact_decimal,
)
from k2cli.exchanges.coinbase_rest import CoinbaseRest
from k2cli.exchanges.descriptor import ConnectionPlan, ExchangeDescriptor, StreamExpectation
from k2cli.exchanges.rfc3339 import parse_rfc3339_us
from k2cli.exchanges.symbols import UnknownSymbol

EXCHANGE = "COINBASE"
CHANNEL = "matches"
TRADE_TYPES = ("match", "last_match")
# message types of the feed that carry no trade of the matches channel (other channels, acknowledgements)
CONTROL_TYPES = frozenset({"subscriptions", "heartbeat", "status", "ticker", "ticker_batch", "snapshot",
                           "l2update", "received", "open", "done", "change", "activate", "auction"})
REQUIRED = ("trade_id", "sequence", "product_id", "price", "size", "side", "time")
VENDOR_KEYS = ("product_id", "base_asset", "quote_asset", "maker_side", "maker_order_id", "taker_order_id",
               "sequence", "event_type", "raw_timestamp")
_TAKER_SIDE = {"sell": "BUY", "buy": "SELL"}  # the maker sold: the taker bought (an up-tick), and back
_PRODUCT = re.compile(r"^([A-Z0-9]{1,16})-([A-Z0-9]{1,16})$")


def split_product(product: str) -> tuple[str, str]:
    """(base, quote) of a Coinbase product id such as BTC-USD; raises UnknownSymbol if malformed."""
    m = _PRODUCT.match(product)
    if m is None:
        raise UnknownSymbol(f"{product!r} is not a Coinbase product (BASE-QUOTE, e.g. BTC-USD)")
    return m.group(1), m.group(2)


def symbol_of(product: str) -> str:
    """The k2 symbol of a checked product: base and quote without separator (BTC-USD -> BTCUSD); a symbol
    already in that form is returned as it is."""
    return product.replace("-", "")


def check_products(symbols: Sequence[str], setting: str | None = "K2_COINBASE_SYMBOLS") -> tuple[str, ...]:
    """Upper-case and check the configured products at start-up; a malformed one is a ConfigError."""
    out: list[str] = []
    for raw in symbols:
        product = raw.strip().upper()
        try:
            split_product(product)
        except UnknownSymbol as exc:
            raise ConfigError(f"--symbols: {exc}", setting=setting) from None
        if product not in out:
            out.append(product)
    if not out:
        raise ConfigError("--symbols: no Coinbase product given", setting=setting)
    return tuple(out)


def subscribe_message(products: tuple[str, ...] | list[str]) -> str:
    """The subscribe request for the matches channel of products (BTC-USD)."""
    return json.dumps({"type": "subscribe", "product_ids": list(products), "channels": [CHANNEL]})


class CoinbaseParser:
    """Turns one Coinbase frame into a Parsed result; raises FrameError for a frame that is not usable."""

    def __init__(self) -> None:
        self._ids = MessageIds()
        self._products: dict[str, tuple[str, str, str]] = {}  # product -> (symbol, base, quote)

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
        kind = msg.get("type")
        if kind == "match" or kind == "last_match":
            return Parsed(TRADES, [self.trade_row(msg, kind, ingest_us)])
        if kind == "error":
            message, reason = msg.get("message", ""), msg.get("reason", "")
            text = f"{message}: {reason}" if reason else str(message or msg)
            if str(message).startswith("Failed to subscribe"):
                return Parsed(SUBSCRIBE_ERROR, info=text)
            raise FrameError("exchange_error", f"exchange error: {text}")
        if type(kind) is str and kind in CONTROL_TYPES:
            return CONTROL_FRAME
        raise FrameError("unknown_event", f"unknown message type {kind!r}")

    def _product(self, product: object) -> tuple[str, str, str]:
        """(symbol, base, quote) of a product id as sent."""
        if type(product) is not str:
            raise FrameError("invalid_value", f"product_id {product!r} is not a string")
        info = self._products.get(product)
        if info is None:
            try:
                base, quote = split_product(product)
            except UnknownSymbol as exc:
                raise FrameError("unknown_symbol", str(exc)) from None
            info = (base + quote, base, quote)
            if len(self._products) < 10_000:
                self._products[product] = info
        return info

    def trade_row(self, d: dict[str, Any], kind: str, ingest_us: int) -> Row:
        """The row of one match (WS message; REST backfill builds the same shape): the one normalisation."""
        try:
            trade_id, seq, product = d["trade_id"], d["sequence"], d["product_id"]
            price, size, maker_side, time_s = d["price"], d["size"], d["side"], d["time"]
        except KeyError:
            missing = [k for k in REQUIRED if k not in d]
            raise FrameError("missing_field", f"{kind} without field(s) {', '.join(missing)}") from None
        if type(trade_id) is not int or trade_id < 0:
            raise FrameError("invalid_value", f"trade_id {trade_id!r} is not a non-negative integer")
        if type(seq) is not int or seq < 0:
            raise FrameError("invalid_value", f"sequence {seq!r} is not a non-negative integer")
        side = _TAKER_SIDE.get(maker_side) if type(maker_side) is str else None
        if side is None:
            raise FrameError("invalid_value", f"side {maker_side!r} is not buy or sell")
        if type(price) is not str or type(size) is not str:
            raise FrameError("invalid_value", "price and size must be strings")
        symbol, base, quote = self._product(product)
        ts_us = parse_rfc3339_us(time_s)
        vendor = (("product_id", product), ("base_asset", base), ("quote_asset", quote), ("maker_side", maker_side),
                  ("maker_order_id", str(d.get("maker_order_id", ""))),
                  ("taker_order_id", str(d.get("taker_order_id", ""))), ("sequence", str(seq)),
                  ("event_type", kind), ("raw_timestamp", time_s))
        # message_id, trade_id, symbol, exchange, asset_class, timestamp, price, quantity, currency, side,
        # trade_conditions, source_sequence, ingestion_timestamp, platform_sequence, vendor_data
        return (self._ids.next(), f"COINBASE-{symbol}-{trade_id}", symbol, EXCHANGE, "crypto", ts_us,
                exact_decimal("price", price), exact_decimal("quantity", size), quote, side, (), trade_id,
                ingest_us, None, vendor)


def _plan(urls: tuple[str, ...], products: tuple[str, ...]) -> ConnectionPlan:
    """Subscribe by message on every connection; trade ids are consecutive per product."""
    return ConnectionPlan(urls=urls, subscribe=(subscribe_message(products),), parser=CoinbaseParser(),
                          sequential_ids=True)


DESCRIPTOR = ExchangeDescriptor(
    name="coinbase",
    title="Coinbase",
    code=EXCHANGE,
    default_topic="market.crypto.trades.coinbase",
    default_url="wss://ws-feed.exchange.coinbase.com",
    default_failover_urls=(),
    default_symbols=("BTC-USD", "ETH-USD"),
    default_metrics_port=9095,  # 9091 binance, 9093 kraken, 9094 consumer
    check_symbols=check_products,
    stored_symbol=symbol_of,
    plan=_plan,
    expectation=StreamExpectation(first_trade_max_s=10, rate_min_per_s=0.1, rate_max_per_s=100,
                                  latency_p95_max_ms=200, seed_rate="0.1-100/sec",
                                  source="k2's estimate (no seed gives Coinbase figures)"),
    simulator_module="k2cli.simulator.venues.coinbase",
    symbols_help="Comma-separated products, e.g. BTC-USD,ETH-USD",
    url_doc="Coinbase Exchange WebSocket feed URL (matches channel; `ws://` allowed for local simulators).",
    symbols_doc="Comma-separated Coinbase products, `BASE-QUOTE`, e.g. `BTC-USD`.",
    vendor_fields=VENDOR_KEYS,
    rest=CoinbaseRest(),
    default_rest_url="https://api.exchange.coinbase.com",
)

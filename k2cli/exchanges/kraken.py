"""Kraken spot WebSocket v1 and v2 trade frames -> v2 trade records. Pure: no I/O.

Every trade of a frame is converted. Legacy asset names are normalised (XBT -> BTC, XDG -> DOGE) in
`symbol`, base and quote; the pair as Kraken sent it stays in vendor_data["pair"].

v1 has no trade id. trade_id is `KRAKEN-{timestamp_µs}-{hash}` where hash is the first 12 hex digits of
BLAKE2b over the pair and the trade's raw fields (time string, price, volume, side, order type, misc),
plus the trade's occurrence number when the same frame holds several identical trades. The id is
deterministic (the same trade on two connections gets the same id, which is what deduplication across
a rotation relies on) and distinct for distinct trades in the same microsecond. Limit: two trades
identical in every field and split over two frames cannot be told apart from a resent trade.

v2 trade ids are sequential per book: trade_id is `KRAKEN-{symbol}-{id}` and source_sequence is the id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from k2cli.errors import ConfigError
from k2cli.exchanges.base import (
    CONTROL_FRAME,
    SUBSCRIBE_ERROR,
    TRADES,
    FrameError,
    FrameParser,
    Instruments,
    Parsed,
    Row,
    exact_decimal,
    load_frame,
)
from k2cli.exchanges.descriptor import ConnectionPlan, ExchangeDescriptor, StreamExpectation
from k2cli.exchanges.kraken_rest import KrakenRest
from k2cli.exchanges.rfc3339 import parse_rfc3339_us
from k2cli.exchanges.symbols import check_kraken_symbols, kraken_v1_pair, split_kraken_pair

EXCHANGE = "KRAKEN"
_V1_SIDES = {"b": "BUY", "s": "SELL"}
_V2_SIDES = {"buy": "BUY", "sell": "SELL"}
_DECODE = json.JSONDecoder(parse_float=Decimal).decode


def version_of(url: str) -> int:
    """The Kraken WebSocket API version a URL speaks: 2 when its path ends in /v2, else 1."""
    return 2 if urlsplit(url).path.rstrip("/").endswith("/v2") else 1


def subscribe_message(pairs: tuple[str, ...] | list[str], version: int, req_id: int = 1) -> str:
    """The subscribe request for the trade channel of normalised pairs (BTC/USD), in the API version's form."""
    if version == 2:
        return json.dumps({"method": "subscribe", "req_id": req_id,
                           "params": {"channel": "trade", "symbol": list(pairs), "snapshot": True}})
    return json.dumps({"event": "subscribe", "reqid": req_id, "pair": [kraken_v1_pair(p) for p in pairs],
                       "subscription": {"name": "trade"}})


def parse_v1_time(text: object) -> int:
    """Exact µs of a v1 time string "seconds.micro" (no float arithmetic); digits beyond µs are truncated."""
    if type(text) is not str:
        raise FrameError("invalid_value", f"trade time {text!r} is not a string")
    sec, _, frac = text.partition(".")
    if not sec.isdigit() or (frac and not frac.isdigit()):
        raise FrameError("invalid_value", f"trade time {text!r} is not seconds.microseconds")
    return int(sec) * 1_000_000 + int((frac + "000000")[:6])


class _KrakenParser(FrameParser):
    def __init__(self) -> None:
        super().__init__()
        self._pairs = Instruments(split_kraken_pair, "pair")


class KrakenV1Parser(_KrakenParser):
    """Kraken WS v1 (wss://ws.kraken.com): event objects and `[channelID, [[...], ...], "trade", pair]` arrays."""

    version = 1

    def parse_rows(self, raw: str | bytes, ingest_us: int) -> Parsed[Row]:
        """Parse one frame received at `ingest_us` (µs); trades as rows."""
        msg = load_frame(raw)
        if isinstance(msg, list):
            return self.trade_rows(msg, ingest_us)
        if not isinstance(msg, dict):
            raise FrameError("unknown_event", f"expected an array or object, got {type(msg).__name__}")
        event = msg.get("event")
        if event in ("heartbeat", "pong", "systemStatus"):
            return CONTROL_FRAME
        if event == "subscriptionStatus":
            if msg.get("status") == "error":
                return Parsed(SUBSCRIBE_ERROR, info=f"{msg.get('pair', '')}: {msg.get('errorMessage', 'refused')}")
            return CONTROL_FRAME
        if event == "error":
            raise FrameError("exchange_error", f"exchange error: {msg.get('errorMessage', msg)}")
        raise FrameError("unknown_event", f"unknown event {event!r}")

    def trade_rows(self, msg: list[Any], ingest_us: int) -> Parsed[Row]:
        """The rows of one v1 trade array (REST backfill by time builds the same shape)."""
        if len(msg) < 4 or msg[-2] != "trade":
            raise FrameError("unknown_event", f"array frame of channel {msg[-2] if len(msg) >= 2 else None!r}")
        rows, pair = msg[1], msg[-1]
        if not isinstance(rows, list) or not rows:
            raise FrameError("missing_field", "trade frame without trades")
        symbol, base, quote = self._pairs.get(pair)
        out: list[Row] = []
        seen: dict[tuple[Any, ...], int] = {}
        for row in rows:
            if not isinstance(row, list) or len(row) < 5:
                raise FrameError("missing_field", f"trade {row!r} has fewer than 5 fields")
            price_s, vol_s, time_s, side_s, type_s = row[0], row[1], row[2], row[3], row[4]
            misc = row[5] if len(row) > 5 else ""
            side = _V1_SIDES.get(side_s) if type(side_s) is str else None
            if side is None:
                raise FrameError("invalid_value", f"side {side_s!r} is not b or s")
            if type(price_s) is not str or type(vol_s) is not str:
                raise FrameError("invalid_value", "price and volume must be strings")
            ts_us = parse_v1_time(time_s)
            key = (time_s, price_s, vol_s, side_s, type_s, misc)
            occurrence = seen.get(key, 0)
            seen[key] = occurrence + 1
            text = f"{pair}|{time_s}|{price_s}|{vol_s}|{side_s}|{type_s}|{misc}"
            if occurrence:
                text += f"|#{occurrence}"
            digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
            out.append((
                self._ids.next(), f"KRAKEN-{ts_us}-{digest}", symbol, EXCHANGE, "crypto", ts_us,
                exact_decimal("price", price_s), exact_decimal("quantity", vol_s), quote, side, (), None, ingest_us,
                None, (("pair", pair), ("base_asset", base), ("quote_asset", quote), ("order_type", str(type_s)),
                       ("misc", str(misc)), ("raw_timestamp", time_s)),
            ))
        return Parsed(TRADES, out)


class KrakenV2Parser(_KrakenParser):
    """Kraken WS v2 (wss://ws.kraken.com/v2): `{"channel": "trade", "type": ..., "data": [...]}` objects.

    Numbers are parsed as Decimal straight from the JSON text, so prices and quantities stay exact."""

    version = 2

    def parse_rows(self, raw: str | bytes, ingest_us: int) -> Parsed[Row]:
        """Parse one frame received at `ingest_us` (µs); trades as rows."""
        try:
            # one decoder for every frame (json.loads(raw, parse_float=...) builds a new one per call); bytes and
            # a leading BOM take json.loads' own path, so what is accepted or refused is unchanged
            msg = _DECODE(raw) if type(raw) is str and not raw.startswith("\ufeff") else \
                json.loads(raw, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FrameError("invalid_json", f"not JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise FrameError("unknown_event", f"expected a JSON object, got {type(msg).__name__}")
        channel = msg.get("channel")
        if channel == "trade":
            return self.trade_rows(msg, ingest_us)
        if channel in ("heartbeat", "status"):
            return CONTROL_FRAME
        method = msg.get("method")
        if method in ("subscribe", "unsubscribe", "pong"):
            if msg.get("success") is False:
                return Parsed(SUBSCRIBE_ERROR, info=str(msg.get("error", "refused")))
            return CONTROL_FRAME
        if "error" in msg:
            raise FrameError("exchange_error", f"exchange error: {msg['error']}")
        raise FrameError("unknown_event", f"unknown channel {channel!r} / method {method!r}")

    def trade_rows(self, msg: dict[str, Any], ingest_us: int) -> Parsed[Row]:
        """The rows of one v2 trade message (REST backfill by id builds the same shape)."""
        rows = msg.get("data")
        if not isinstance(rows, list) or not rows:
            raise FrameError("missing_field", "trade frame without data")
        kind = str(msg.get("type", ""))
        out: list[Row] = []
        for row in rows:
            if not isinstance(row, dict):
                raise FrameError("invalid_value", f"trade {row!r} is not an object")
            try:
                pair, side_s, price, qty = row["symbol"], row["side"], row["price"], row["qty"]
                seq, ts_s = row["trade_id"], row["timestamp"]
            except KeyError as exc:
                raise FrameError("missing_field", f"trade without field {exc.args[0]}") from None
            side = _V2_SIDES.get(side_s) if type(side_s) is str else None
            if side is None:
                raise FrameError("invalid_value", f"side {side_s!r} is not buy or sell")
            if type(seq) is not int or seq < 0:
                raise FrameError("invalid_value", f"trade_id {seq!r} is not a non-negative integer")
            if isinstance(price, str) or isinstance(qty, str):
                raise FrameError("invalid_value", "price and qty must be JSON numbers")
            symbol, base, quote = self._pairs.get(pair)
            ts_us = parse_rfc3339_us(ts_s)
            vendor = (("pair", pair), ("base_asset", base), ("quote_asset", quote),
                      ("order_type", str(row.get("ord_type", ""))), ("raw_timestamp", ts_s), ("channel_type", kind))
            out.append((
                self._ids.next(), f"KRAKEN-{symbol}-{seq}", symbol, EXCHANGE, "crypto", ts_us,
                exact_decimal("price", price), exact_decimal("quantity", qty), quote, side, (), seq, ingest_us,
                None, vendor,
            ))
        return Parsed(TRADES, out)


def parser_for(version: int) -> KrakenV1Parser | KrakenV2Parser:
    """The parser of a Kraken API version."""
    return KrakenV2Parser() if version == 2 else KrakenV1Parser()


def v1_key_time(trade_id: str) -> int:
    """The trade time (µs) a v1 trade id carries: `KRAKEN-{timestamp_µs}-{hash}`."""
    return int(trade_id.split("-", 2)[1])


def _stored_symbol(pair: str) -> str:
    """The record's symbol of a checked pair: BTC/USD -> BTCUSD."""
    return pair.replace("/", "")


def _check_urls(urls: Sequence[str]) -> None:
    """All URLs of one stream speak one API version (the parser and subscribe message depend on it)."""
    if len({version_of(u) for u in urls}) > 1:
        raise ConfigError("Kraken URLs mix WS API v1 and v2 (a /v2 path means v2)", setting="K2_KRAKEN_URL")


def _plan(urls: tuple[str, ...], pairs: tuple[str, ...]) -> ConnectionPlan:
    """Subscribe by message in the version of the primary URL; v2 trade ids are sequential, v1 ids hashes.

    Each subscription replays the last 50 trades (the snapshot): the stream's dedup drops those. v1 gaps are
    filled by time window: its ids carry the trade's time."""
    version = version_of(urls[0])
    return ConnectionPlan(urls=urls, subscribe=(subscribe_message(pairs, version),), parser=parser_for(version),
                          sequential_ids=version == 2, key_time=None if version == 2 else v1_key_time)


def _check_record(record: dict[str, Any]) -> list[str]:
    """Seed 000: legacy XBT must be normalised to BTC."""
    vendor = record.get("vendor_data") or {}
    if "XBT" in record["symbol"] or vendor.get("base_asset") == "XBT":
        return [f"XBT not normalised to BTC (symbol {record['symbol']!r}, base {vendor.get('base_asset')!r})"]
    return []


DESCRIPTOR = ExchangeDescriptor(
    name="kraken",
    title="Kraken",
    code=EXCHANGE,
    default_topic="market.crypto.trades.kraken",
    default_url="wss://ws.kraken.com",
    default_failover_urls=(),
    default_symbols=("BTC/USD", "ETH/USD"),
    default_metrics_port=9093,
    check_symbols=check_kraken_symbols,
    stored_symbol=_stored_symbol,
    plan=_plan,
    expectation=StreamExpectation(first_trade_max_s=30, rate_min_per_s=0.1, rate_max_per_s=10,
                                  latency_p95_max_ms=200, seed_rate="0.1-10/sec"),
    simulator_module="k2cli.simulator.venues.kraken",
    symbols_help="Comma-separated pairs, e.g. BTC/USD,ETH/USD (XBT/XDG accepted)",
    url_doc="Kraken WebSocket URL (v1 `wss://ws.kraken.com`, v2 `…/v2`).",
    symbols_doc="Comma-separated Kraken pairs, e.g. `BTC/USD`.",
    url_note="; a /v2 path speaks Kraken WS v2",
    check_urls=_check_urls,
    rehearsal_url_path="/v2",
    vendor_fields=("pair", "base_asset", "quote_asset", "order_type"),
    check_record=_check_record,
    rest=KrakenRest(),
    default_rest_url="https://api.kraken.com",
)

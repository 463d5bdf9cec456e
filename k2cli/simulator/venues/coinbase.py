"""The simulated Coinbase Exchange feed's `matches` channel: its frames and its subscription handshake.

As the real feed (wss://ws-feed.exchange.coinbase.com): a client sends
`{"type":"subscribe","product_ids":[...],"channels":["matches"]}` (channels may also be objects with their
own product_ids); the feed answers with a `subscriptions` message listing everything the connection is
subscribed to, then per newly subscribed product one `last_match` (its latest trade), then a `match` per
trade. A bad request is answered by `{"type":"error","message":"Failed to subscribe","reason":...}`.
Nothing missed while disconnected is replayed. `side` is the maker's side: the tape's taker side reversed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from k2cli.exchanges.coinbase import CHANNEL, check_products

PROTOCOL = "coinbase"
SUBSCRIBE_TIMEOUT = 5.0  # seconds: the real feed disconnects a client that has not subscribed by then


class Trade(Protocol):
    """The tape trade fields a frame needs (amounts in units of 1e-8)."""

    symbol: str
    seq: int
    ts_us: int
    price: int
    qty: int
    buy: bool  # the taker bought


def check_symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    """The products to serve (BTC-USD form); a malformed one is a ConfigError naming --symbols."""
    return check_products(symbols, setting=None)


def _amount(units: int) -> str:
    whole, frac = divmod(units, 10**8)
    return f"{whole}.{frac:08d}"


def _time(ts_us: int) -> str:
    dt = datetime.fromtimestamp(ts_us // 1_000_000, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ts_us % 1_000_000:06d}Z"


def order_id(product: str, trade_id: int, role: str) -> str:
    """A deterministic UUID (version 4 form) for the maker or taker order of a trade."""
    h = hashlib.blake2b(f"{product}|{trade_id}|{role}".encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def feed_sequence(trade_id: int) -> int:
    """The feed's sequence of a trade's message: rising with the trade id, with the gaps other order
    messages of the full feed leave."""
    return trade_id * 3 + 1


def match_text(t: Trade, kind: str = "match") -> str:
    """The match (or last_match) message of a tape trade."""
    return (f'{{"type":"{kind}","trade_id":{t.seq},"maker_order_id":"{order_id(t.symbol, t.seq, "maker")}",'
            f'"taker_order_id":"{order_id(t.symbol, t.seq, "taker")}","side":"{"sell" if t.buy else "buy"}",'
            f'"size":"{_amount(t.qty)}","price":"{_amount(t.price)}","product_id":"{t.symbol}",'
            f'"sequence":{feed_sequence(t.seq)},"time":"{_time(t.ts_us)}"}}')


def error_text(reason: str, message: str = "Failed to subscribe") -> str:
    """An error message of the feed."""
    return json.dumps({"type": "error", "message": message, "reason": reason})


def garbage(n: int) -> str:
    """The n-th bad frame: invalid JSON, missing field, unknown type, zero price, in turn."""
    return ('{"type":"match","trade_id":1,"product_id":"BTC',
            '{"type":"match","trade_id":1,"sequence":4,"product_id":"BTC-USD","side":"buy","size":"1.0",'
            '"time":"2024-01-01T00:00:00.000000Z"}',
            '{"type":"surprise","product_id":"BTC-USD"}',
            '{"type":"match","trade_id":1,"sequence":4,"product_id":"BTC-USD","side":"buy","size":"1.0",'
            '"price":"0.00","time":"2024-01-01T00:00:00.000000Z"}')[n % 4]


@dataclass
class Reply:
    """What the feed answers to one client message: frames to send and the products newly subscribed."""

    texts: list[str] = field(default_factory=list)
    new_products: list[str] = field(default_factory=list)  # matches products that need their last_match now


class Subscriptions:
    """One connection's subscriptions to the matches channel, grown by its subscribe messages."""

    def __init__(self, served: Sequence[str]) -> None:
        self.served = tuple(served)
        self.products: list[str] = []  # subscribed, in subscription order

    def handle(self, msg: dict[str, Any]) -> Reply:
        """Apply one client message (a JSON object); a refused request changes nothing and is answered by an
        error. Unsubscribing is not simulated (k2 never unsubscribes): it is refused."""
        kind = msg.get("type")
        if kind == "unsubscribe":
            return Reply([error_text("unsubscribe is not simulated", "Failed to unsubscribe")])
        if kind != "subscribe":
            return Reply([error_text(f"Type {kind!r} is neither subscribe nor unsubscribe")])
        wanted = self._wanted(msg)
        if isinstance(wanted, str):
            return Reply([error_text(wanted)])
        new = [p for p in wanted if p not in self.products]
        self.products.extend(new)
        return Reply([self.subscriptions_text()], new)

    def _wanted(self, msg: dict[str, Any]) -> list[str] | str:
        """The matches products a request names, or the reason it is refused."""
        channels = msg.get("channels")
        top = msg.get("product_ids")
        if not isinstance(channels, list) or not channels:
            return "No channels provided"
        if top is not None and not isinstance(top, list):
            return "product_ids must be a list"
        wanted: list[str] = []
        for channel in channels:
            if isinstance(channel, str):
                name, products = channel, top or []
            elif isinstance(channel, dict) and isinstance(channel.get("name"), str):
                name, products = channel["name"], channel.get("product_ids", top) or []
            else:
                return f"{channel!r} is not a valid channel"
            if name != CHANNEL:
                return f"{name} is not a valid channel (this simulator serves {CHANNEL})"
            if not isinstance(products, list) or not products:
                return f"You must specify at least one product ID for channel {name}"
            for product in products:
                if product not in self.served:
                    return f"{product} is not a valid product"
                if product not in wanted:
                    wanted.append(product)
        return wanted

    def subscriptions_text(self) -> str:
        """The subscriptions message: every channel of the connection with its products."""
        return json.dumps({"type": "subscriptions", "channels": [{"name": CHANNEL, "product_ids": self.products}]})

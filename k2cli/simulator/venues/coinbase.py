"""The simulated Coinbase Exchange feed's `matches` channel: its frames and its subscription handshake.

As the real feed (wss://ws-feed.exchange.coinbase.com): a client sends
`{"type":"subscribe","product_ids":[...],"channels":["matches"]}` (channels may also be objects with their
own product_ids); the feed answers with a `subscriptions` message listing everything the connection is
subscribed to, then per newly subscribed product one `last_match` (its latest trade), then a `match` per
trade. A bad request is answered by `{"type":"error","message":"Failed to subscribe","reason":...}`.
Nothing missed while disconnected is replayed. `side` is the maker's side: the tape's taker side reversed.

REST: GET /products/{product}/trades[?limit=L][&after=ID | &before=ID]: a page NEWEST FIRST of
{"time","trade_id","price","size","side"} (as the matches), limit 1..1000 (default 100, clipped); `after`: the
newest trades with trade_id < after; `before`: the oldest trades with trade_id > before; neither: the latest.
Headers CB-BEFORE (the newest trade_id in the page) and CB-AFTER (the oldest: the cursor of the next, older
page), absent on an empty page. Errors as {"message": ...}.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from k2cli.exchanges.coinbase import CHANNEL, split_product
from k2cli.simulator.tape import Event, TapeTrade, rfc3339, units
from k2cli.simulator.venues.base import Dialect, Link, RestAnswer, RestApi, Route, Venue

if TYPE_CHECKING:
    from k2cli.simulator.config import SimulatorConfig
    from k2cli.simulator.history import TradeHistory


def order_id(product: str, trade_id: int, role: str) -> str:
    """A deterministic UUID (version 4 form) for the maker or taker order of a trade."""
    h = hashlib.blake2b(f"{product}|{trade_id}|{role}".encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def feed_sequence(trade_id: int) -> int:
    """The feed's sequence of a trade's message: rising with the trade id, with the gaps other order
    messages of the full feed leave."""
    return trade_id * 3 + 1


def match_text(t: TapeTrade, kind: str = "match") -> str:
    """The match (or last_match) message of a tape trade."""
    return (f'{{"type":"{kind}","trade_id":{t.seq},"maker_order_id":"{order_id(t.symbol, t.seq, "maker")}",'
            f'"taker_order_id":"{order_id(t.symbol, t.seq, "taker")}","side":"{"sell" if t.buy else "buy"}",'
            f'"size":"{units(t.qty, 8)}","price":"{units(t.price, 8)}","product_id":"{t.symbol}",'
            f'"sequence":{feed_sequence(t.seq)},"time":"{rfc3339(t.ts_us)}"}}')


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


def handle(msg: dict[str, Any], served: Sequence[str], subscribed: Sequence[str]) -> Reply:
    """The feed's answer to one client message (a JSON object) on a connection subscribed to `subscribed`;
    a refused request subscribes nothing. Unsubscribing is not simulated (k2 never unsubscribes): refused."""
    kind = msg.get("type")
    if kind == "unsubscribe":
        return Reply([error_text("unsubscribe is not simulated", "Failed to unsubscribe")])
    if kind != "subscribe":
        return Reply([error_text(f"Type {kind!r} is neither subscribe nor unsubscribe")])
    wanted = _wanted(msg, served)
    if isinstance(wanted, str):
        return Reply([error_text(wanted)])
    new = [p for p in wanted if p not in subscribed]
    return Reply([subscriptions_text([*subscribed, *new])], new)


def _wanted(msg: dict[str, Any], served: Sequence[str]) -> list[str] | str:
    """The matches products a subscribe request names, or the reason it is refused."""
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
            if product not in served:
                return f"{product} is not a valid product"
            if product not in wanted:
                wanted.append(product)
    return wanted


def subscriptions_text(products: Sequence[str]) -> str:
    """The subscriptions message: the connection's channel with its products."""
    return json.dumps({"type": "subscriptions", "channels": [{"name": CHANNEL, "product_ids": list(products)}]})


class MatchesFeed(Dialect):
    """The feed's wire protocol: nothing is delivered until a subscribe; no heartbeats on this channel."""

    def render(self, event: Event) -> str:
        return match_text(event.trades[0])  # one trade per event: this venue's tape is not multi-trade

    def garbage(self, n: int) -> str:
        return garbage(n)

    async def open(self, link: Link) -> None:
        return None  # the client speaks first: its subscribe starts the delivery

    async def on_message(self, link: Link, msg: dict[str, Any]) -> None:
        reply = handle(msg, link.served, link.subscriptions)
        if not reply.new_products:
            await link.send(reply.texts)
            return
        cursor = link.anchor()
        last_matches = []
        for product in reply.new_products:
            link.subscribe(product)
            recent = link.recent_trades(product, cursor)
            if recent:  # the product's latest trade before this connection joined
                last_matches.append(match_text(recent[-1], "last_match"))
        await link.send(reply.texts + last_matches)
        link.start()


FEED = MatchesFeed()


_TRADES = re.compile(r"^/products/([^/]+)/trades/?$")
_MESSAGES = {404: "NotFound", 429: "Public rate limit exceeded", 500: "Internal server error",
             503: "Service Unavailable"}


def rest_trade(t: TapeTrade) -> str:
    """One trade of a /products/{product}/trades page (the match's time, id, price, size and maker side)."""
    return (f'{{"time":"{rfc3339(t.ts_us)}","trade_id":{t.seq},"price":"{units(t.price, 8)}",'
            f'"size":"{units(t.qty, 8)}","side":"{"sell" if t.buy else "buy"}"}}')


class ProductTrades(RestApi):
    """GET /products/{product}/trades, paged by trade id with the CB-BEFORE/CB-AFTER cursors."""

    def answer(self, path: str, query: Mapping[str, str], history: TradeHistory) -> RestAnswer | None:
        match = _TRADES.match(path)
        if match is None:
            return None
        trades = history.get(match.group(1).upper())
        if trades is None:
            return self.error(400, "NotFound")
        for name in ("limit", "after", "before"):
            if query.get(name) and not query[name].isdigit():
                return self.error(400, f"Invalid {name}")
        limit = min(1000, max(1, int(query.get("limit") or 100)))
        if query.get("after"):
            page = trades.before_id(int(query["after"]), limit)
        elif query.get("before"):
            page = trades.after_id(int(query["before"]), limit)
        else:
            page = trades.latest(limit)
        page.reverse()
        headers = (("CB-BEFORE", str(page[0].seq)), ("CB-AFTER", str(page[-1].seq))) if page else ()
        return RestAnswer(200, f"[{','.join(rest_trade(t) for t in page)}]", headers)

    def error(self, status: int, message: str) -> RestAnswer:
        return RestAnswer(status, json.dumps({"message": _MESSAGES.get(status, message)}))


class Coinbase(Venue):
    """The Coinbase Exchange venue (its matches channel)."""

    name = "coinbase"
    summary = "matches channel at / (subscribe by message)"

    def normalise_symbol(self, raw: str) -> str:
        product = raw.strip().upper()
        split_product(product)
        return product

    def route(self, path: str, cfg: SimulatorConfig) -> Route | None:
        return Route(FEED)

    def rest_api(self, cfg: SimulatorConfig) -> RestApi:
        return ProductTrades()


VENUE = Coinbase()

"""The simulated Coinbase feed: its frames read back exactly by k2's own parser; its subscription handshake."""

import asyncio
import json
import uuid
from decimal import Decimal

import pytest

from k2cli.exchanges.base import CONTROL, SUBSCRIBE_ERROR, TRADES, FrameError
from k2cli.exchanges.coinbase import CoinbaseParser
from k2cli.simulator.tape import GeneratedTape, TapeTrade, ws_text_frame
from k2cli.simulator.venues.coinbase import (
    FEED,
    VENUE,
    error_text,
    feed_sequence,
    garbage,
    handle,
    match_text,
    order_id,
)


def T(symbol, seq, ts_us, price, qty, buy):
    return TapeTrade(symbol, seq, ts_us, price, qty, buy, False)


def test_match_frame_reads_back_exactly_with_the_maker_side():
    t = T("BTC-USD", 1_000_042, 1_765_000_000_123_456, 6_500_012_000_000, 1, True)
    msg = json.loads(match_text(t))
    assert msg["type"] == "match" and msg["side"] == "sell"  # the taker bought: the maker sold
    assert msg["price"] == "65000.12000000" and msg["size"] == "0.00000001"
    assert msg["time"] == "2025-12-06T05:46:40.123456Z" and msg["sequence"] == feed_sequence(1_000_042)
    rec = CoinbaseParser().parse(match_text(t), 7).trades[0]
    assert rec["trade_id"] == "COINBASE-BTCUSD-1000042" and rec["source_sequence"] == 1_000_042
    assert rec["price"] == Decimal("65000.12") and rec["quantity"] == Decimal("1E-8")
    assert rec["timestamp"] == t.ts_us and rec["side"] == "BUY" and rec["currency"] == "USD"
    assert rec["vendor_data"]["maker_order_id"] == order_id("BTC-USD", 1_000_042, "maker")
    sold = CoinbaseParser().parse(match_text(T("ETH-EUR", 5, 1, 10**8, 10**8, False), "last_match"), 7).trades[0]
    assert sold["side"] == "SELL" and sold["vendor_data"]["event_type"] == "last_match"
    assert sold["vendor_data"]["maker_side"] == "buy" and sold["symbol"] == "ETHEUR"


def test_order_ids_are_deterministic_distinct_uuid4():
    a, b = order_id("BTC-USD", 1, "maker"), order_id("BTC-USD", 1, "taker")
    assert a == order_id("BTC-USD", 1, "maker") and a != b and a != order_id("BTC-USD", 2, "maker")
    assert uuid.UUID(a).version == 4 and uuid.UUID(b).variant == uuid.RFC_4122


def test_garbage_frames_are_bad_frames_of_each_kind():
    kinds = []
    for n in range(4):
        with pytest.raises(FrameError) as err:
            CoinbaseParser().parse(garbage(n), 1)
        kinds.append(err.value.error_type)
    assert kinds == ["invalid_json", "missing_field", "unknown_event", "invalid_value"]


def test_subscribe_is_answered_by_subscriptions_and_lists_new_products_once():
    served = ("BTC-USD", "ETH-USD")
    reply = handle({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches"]}, served, ())
    assert reply.new_products == ["BTC-USD"]
    assert json.loads(reply.texts[0]) == {"type": "subscriptions",
                                          "channels": [{"name": "matches", "product_ids": ["BTC-USD"]}]}
    again = handle({"type": "subscribe", "channels": [{"name": "matches", "product_ids": ["ETH-USD", "BTC-USD"]}]},
                   served, ("BTC-USD",))
    assert again.new_products == ["ETH-USD"]
    assert json.loads(again.texts[0])["channels"][0]["product_ids"] == ["BTC-USD", "ETH-USD"]
    assert CoinbaseParser().parse(again.texts[0], 1).kind == CONTROL


@pytest.mark.parametrize(("msg", "reason"), [
    ({"type": "subscribe", "product_ids": ["BTC-XYZ"], "channels": ["matches"]}, "BTC-XYZ is not a valid product"),
    ({"type": "subscribe", "product_ids": ["BTC-USD", "BTC-XYZ"], "channels": ["matches"]}, "BTC-XYZ is not a valid"),
    ({"type": "subscribe", "product_ids": ["BTC-USD"]}, "No channels provided"),
    ({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": []}, "No channels provided"),
    ({"type": "subscribe", "channels": ["matches"]}, "at least one product ID"),
    ({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["level3"]}, "level3 is not a valid channel"),
    ({"type": "subscribe", "product_ids": "BTC-USD", "channels": ["matches"]}, "must be a list"),
    ({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": [7]}, "7 is not a valid channel"),
    ({"type": "subscrib", "product_ids": ["BTC-USD"], "channels": ["matches"]}, "neither subscribe nor unsubscribe"),
])
def test_bad_subscribe_subscribes_nothing_and_is_read_as_a_refusal(msg, reason):
    reply = handle(msg, ("BTC-USD",), ())
    assert reply.new_products == [] and len(reply.texts) == 1
    error = json.loads(reply.texts[0])
    assert error["type"] == "error" and error["message"] == "Failed to subscribe" and reason in error["reason"]
    parsed = CoinbaseParser().parse(reply.texts[0], 1)
    assert parsed.kind == SUBSCRIBE_ERROR and reason in parsed.info


def test_unsubscribe_is_refused():
    reply = handle({"type": "unsubscribe", "product_ids": ["BTC-USD"], "channels": ["matches"]}, ("BTC-USD",),
                   ("BTC-USD",))
    assert reply.new_products == [] and json.loads(reply.texts[0])["message"] == "Failed to unsubscribe"
    with pytest.raises(FrameError) as err:  # k2 counts it as an exchange error, not as a refused subscription
        CoinbaseParser().parse(reply.texts[0], 1)
    assert err.value.error_type == "exchange_error"


def test_served_symbols_are_products_and_error_text_is_the_feed_form():
    assert VENUE.normalise_symbol(" btc-usd") == "BTC-USD"
    with pytest.raises(ValueError, match="BASE-QUOTE"):
        VENUE.normalise_symbol("BTCUSD")
    assert json.loads(error_text("x")) == {"type": "error", "message": "Failed to subscribe", "reason": "x"}
    assert CoinbaseParser().parse(match_text(T("BTC-USD", 1, 1, 1, 1, True)), 1).kind == TRADES


def test_generated_tape_frames_parse_back_to_the_tape_trades():
    tape = GeneratedTape(("BTC-USD", "ETH-USD"), seed=7)
    parser = CoinbaseParser()
    for _ in range(300):
        event = tape.next_event(1_700_000_000_123_456)
        assert len(event.trades) == 1 and event.frame(FEED) == ws_text_frame(event.text(FEED))
        t, rec = event.trades[0], parser.parse(event.text(FEED), 1).trades[0]
        assert (rec["source_sequence"], rec["price"], rec["quantity"], rec["timestamp"], rec["side"]) == \
            (t.seq, Decimal(t.price).scaleb(-8), Decimal(t.qty).scaleb(-8), t.ts_us, "BUY" if t.buy else "SELL")
        assert rec["symbol"] == t.symbol.replace("-", "") and rec["vendor_data"]["event_type"] == "match"


class Link:
    """A link over a fixed market position (anchor 10) that records what the dialect does."""

    def __init__(self, served, recent):
        self.served, self.recent, self.conn_id = served, recent, 7
        self.sent: list[str] = []
        self.subscriptions: tuple[str, ...] = ()
        self.started = False

    async def send(self, texts):
        self.sent.extend(texts)

    def anchor(self):
        return 10

    def subscribe(self, symbol):
        self.subscriptions = (*self.subscriptions, symbol)

    def recent_trades(self, symbol, before):
        return self.recent.get(symbol, []) if before == 10 else []

    def start(self):
        self.started = True


def _talk(link, *messages):
    async def main():
        await FEED.open(link)
        for msg in messages:
            await FEED.on_message(link, msg)

    asyncio.run(main())


def test_handshake_waits_for_a_subscribe_then_sends_subscriptions_and_one_last_match_per_product():
    older, latest = T("BTC-USD", 41, 5, 10**8, 10**8, True), T("BTC-USD", 42, 6, 2 * 10**8, 10**8, False)
    link = Link(("BTC-USD", "ETH-USD"), {"BTC-USD": [older, latest]})
    _talk(link)
    assert link.sent == [] and not link.started  # the client speaks first
    _talk(link, {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channels": ["matches"]})
    subscriptions, last_match = link.sent  # ETH-USD has no trade yet: no last_match for it
    assert json.loads(subscriptions)["channels"] == [{"name": "matches", "product_ids": ["BTC-USD", "ETH-USD"]}]
    assert last_match == match_text(latest, "last_match")
    assert link.subscriptions == ("BTC-USD", "ETH-USD") and link.started
    rec = CoinbaseParser().parse(last_match, 1).trades[0]
    assert rec["source_sequence"] == 42 and rec["side"] == "SELL" and rec["vendor_data"]["event_type"] == "last_match"


def test_a_refused_subscribe_starts_nothing():
    link = Link(("BTC-USD",), {})
    _talk(link, {"type": "subscribe", "product_ids": ["BTC-USD", "SOL-USD"], "channels": ["matches"]})
    assert len(link.sent) == 1 and json.loads(link.sent[0])["reason"] == "SOL-USD is not a valid product"
    assert link.subscriptions == () and not link.started

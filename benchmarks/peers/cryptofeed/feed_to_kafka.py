"""cryptofeed 3.0.1's Binance feed with its Kafka backend, pointed at k2's simulator (runs in cryptofeed's own venv).

    feed_to_kafka.py WS_BASE TOPIC SYMBOLS BOOTSTRAP      # e.g. ws://127.0.0.1:PORT bench.cf.x BTCUSDT,ETHUSDT ...

What is changed from stock cryptofeed, and why: the websocket endpoint is the simulator's; the symbol list is
set in place of the exchangeInfo REST call (the simulator serves no exchangeInfo); the simulator serves
Binance's `@trade` stream, not `@aggTrade`, so the feed subscribes to `trade` and reads the trade id from `t`
(the rest of the handling is cryptofeed's own: JSON with Decimal floats, its Trade type, its Kafka backend
and queue). The backend writes one topic keyed by symbol, with acks=all and lz4 like `k2 stream`, and blocks
instead of dropping when Kafka is slower (k2 never drops either). Runs until SIGTERM, then flushes.
"""

from __future__ import annotations

import logging
import sys
from decimal import Decimal

from cryptofeed import FeedHandler
from cryptofeed import _json as json
from cryptofeed.backends.kafka import TradeKafka
from cryptofeed.connection import WebsocketEndpoint
from cryptofeed.defines import BUY, SELL, SPOT, TRADES
from cryptofeed.exchanges.binance import Binance
from cryptofeed.symbols import Symbol, Symbols
from cryptofeed.types import Trade


def simulated_binance(ws_base: str) -> type[Binance]:
    """Binance's feed with the simulator as its websocket endpoint and `@trade` as its trade stream."""

    class SimulatedBinance(Binance):
        websocket_endpoints = [WebsocketEndpoint(ws_base)]
        websocket_channels = {**Binance.websocket_channels, TRADES: "trade"}

        async def message_handler(self, msg: str, conn, timestamp: float) -> None:
            parsed = json.loads(msg, parse_float=Decimal)
            data = parsed["data"]
            if data.get("e") != "trade":
                return await super().message_handler(msg, conn, timestamp)
            t = Trade(self.id, self.exchange_symbol_to_std_symbol(data["s"]), SELL if data["m"] else BUY,
                      Decimal(data["q"]), Decimal(data["p"]), self.timestamp_normalize(data["T"]),
                      id=str(data["t"]), raw=data)
            await self.callback(TRADES, t, timestamp)
            return None

    return SimulatedBinance


class OneTopic(TradeKafka):
    """cryptofeed's trade backend writing every symbol to one topic, keyed by symbol (as `k2 stream` does)."""

    def __init__(self, topic: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fixed_topic = topic

    def topic(self, data: dict) -> str:
        return self.fixed_topic

    def partition_key(self, data: dict) -> bytes:
        return data["symbol"].encode()


def main() -> None:
    ws_base, topic, symbols, bootstrap = sys.argv[1:5]
    logging.basicConfig(level=logging.WARNING)
    normalized: dict[str, str] = {}
    info: dict[str, dict] = {"tick_size": {}, "instrument_type": {}}
    for raw in symbols.split(","):
        base, quote = raw[:-4], raw[-4:]  # the benchmark's symbols all end in USDT
        std = Symbol(base, quote, type=SPOT).normalized
        normalized[std] = raw
        info["tick_size"][std] = "0.01"
        info["instrument_type"][std] = SPOT
    Symbols.set(Binance.id, normalized, info)
    feed_class = simulated_binance(ws_base)
    backend = OneTopic(topic, bootstrap_servers=bootstrap, acks="all", compression_type="lz4", linger_ms=20,
                       overflow="block")
    handler = FeedHandler()
    handler.add_feed(feed_class(symbols=list(normalized), channels=[TRADES], callbacks={TRADES: backend}))
    handler.run()


if __name__ == "__main__":
    main()

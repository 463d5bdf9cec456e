"""The stream's hot path on plain values: parse -> dedup -> Avro -> the sink's queue, bounds and bad frames.

The producer is a stand-in that takes records up to a capacity (what librdkafka's queue does locally);
Kafka itself is exercised by the integration tests."""

from __future__ import annotations

import json

from k2cli.errors import ConfigError, K2Error
from k2cli.exchanges import registry
from k2cli.exchanges.session import SIG_BLOCKED, SIG_DATA, SIG_FATAL, SIG_SHUTDOWN, Connection
from k2cli.kafka.v2encode import make_row_encoder
from k2cli.observe.metrics import StreamMetrics
from k2cli.stream.dead_letters import DeadLetterSink
from k2cli.stream.dedup import Deduplicator
from k2cli.stream.kafka_sink import KafkaSink
from k2cli.stream.pipeline import FramePipeline
from k2cli.stream.summary import StreamSummary


class Queue:
    """Takes records until `capacity` are held."""

    def __init__(self, capacity: int = 1_000) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes]] = []

    def try_produce(self, key: bytes, value: bytes) -> bool:
        if len(self.records) >= self.capacity:
            return False
        self.records.append((key, value))
        return True


class Built:
    def __init__(self, exchange: str = "binance", symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
                 capacity: int = 1_000, max_messages: int = 0) -> None:
        desc = registry.get(exchange)
        plan = desc.plan(("ws://127.0.0.1:1",), symbols)
        self.queue = Queue(capacity)
        self.sink = KafkaSink(self.queue, lambda key, value, stage: None)  # type: ignore[arg-type]  # a stand-in for TradeProducer
        self.summary = StreamSummary(exchange=exchange, topic="t", url="ws://127.0.0.1:1", symbols=list(symbols))
        self.dead_letters = DeadLetterSink(exchange, "t", lambda entries, trades: None)
        self.limits: list[str] = []
        self.fatal: list[K2Error] = []
        self.pipeline = FramePipeline(
            parser=plan.parser, dedup=Deduplicator(plan.sequential_ids), sink=self.sink, encode=make_row_encoder(),
            header=b"H", summary=self.summary, metrics=StreamMetrics(exchange), dead_letters=self.dead_letters,
            exchange=exchange, max_messages=max_messages, symbols_setting=desc.setting("symbols"),
            on_limit=lambda: self.limits.append("max_messages"), on_fatal=self.fatal.append)
        self.conn = Connection(1, "ws://127.0.0.1:1", None, 0.0)

    def frame(self, raw: str) -> int:
        return self.pipeline.on_frame(self.conn, raw)


def trade(symbol: str, trade_id: int) -> str:
    return json.dumps({"e": "trade", "E": 1_700_000_000_000 + trade_id, "s": symbol, "t": trade_id,
                       "p": "64000.10", "q": "0.015", "T": 1_700_000_000_000 + trade_id, "m": False})


def test_trades_are_encoded_keyed_by_symbol_and_duplicates_dropped():
    b = Built()
    assert b.frame(trade("BTCUSDT", 1)) == SIG_DATA
    assert b.frame(trade("ETHUSDT", 1)) == SIG_DATA
    assert b.frame(trade("BTCUSDT", 1)) == SIG_DATA  # seen again (a rotation's overlap): dropped
    assert [key for key, _ in b.queue.records] == [b"BTCUSDT", b"ETHUSDT"]
    assert all(value.startswith(b"H") for _, value in b.queue.records)
    assert (b.summary.frames, b.summary.trades_received, b.summary.trades_accepted) == (3, 3, 2)
    assert b.pipeline.received == {"BTCUSDT": 2, "ETHUSDT": 1}
    assert b.pipeline.dedup.duplicates == 1
    assert b.pipeline.dedup.highest_ids() == {"BTCUSDT": 1, "ETHUSDT": 1}


def test_a_full_producer_blocks_and_later_trades_wait_behind_in_order():
    b = Built(symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"), capacity=1)
    assert b.frame(trade("BTCUSDT", 1)) == SIG_DATA
    assert b.frame(trade("ETHUSDT", 1)) == SIG_DATA | SIG_BLOCKED
    b.queue.capacity = 10  # room again, but SOLUSDT's trade must not overtake ETHUSDT's
    assert b.frame(trade("SOLUSDT", 1)) == SIG_DATA | SIG_BLOCKED
    assert len(b.queue.records) == 1 and len(b.sink.pending) == 2
    b.sink.push_pending()
    assert not b.sink.pending
    assert [key for key, _ in b.queue.records] == [b"BTCUSDT", b"ETHUSDT", b"SOLUSDT"]
    assert b.frame(trade("BTCUSDT", 2)) == SIG_DATA


def test_max_messages_stops_producing_at_the_bound():
    b = Built(max_messages=2)
    for i in range(1, 5):
        b.frame(trade("BTCUSDT", i))
    assert len(b.queue.records) == 2
    assert b.limits == ["max_messages"]
    assert b.pipeline.stopping
    assert (b.summary.trades_received, b.summary.trades_accepted) == (4, 2)


def test_a_bad_frame_is_counted_and_kept_for_the_dead_letter_file():
    b = Built()
    assert b.frame("{not json") == 0
    assert b.summary.frame_errors == {"invalid_json": 1}
    [entry] = b.dead_letters.buffer
    assert entry.raw_frame == "{not json" and entry.error_type == "invalid_json"
    assert entry.source["connection"] == 1
    assert not b.queue.records


def test_an_announced_shutdown_asks_for_a_rotation():
    b = Built()
    assert b.frame(json.dumps({"e": "serverShutdown", "E": 1})) == SIG_SHUTDOWN


def test_a_refused_subscription_is_fatal_and_names_the_symbols_setting():
    b = Built("kraken", symbols=("BTC/USD",))
    refused = {"event": "subscriptionStatus", "status": "error", "pair": "BTC/USD", "errorMessage": "not supported"}
    assert b.frame(json.dumps(refused)) == SIG_FATAL
    [error] = b.fatal
    assert isinstance(error, ConfigError)
    assert "refused the subscription" in str(error) and "not supported" in str(error)
    assert error.setting == registry.get("kraken").setting("symbols")

"""The stream's hot path: a frame -> parse -> drop duplicates -> Avro -> the Kafka sink's queue.

Its cost per frame is what benchmarks/stream_bench.py measures, so `on_frame` binds what it needs into
locals once per frame and does the per-trade work inline: no call per trade beyond the dedup's accept,
the encoder and the producer. Counts that only the summary needs are added once per frame.

Gaps in trade ids cost nothing here: the dedup's bitmap notes them on its rare branch (ids jumping), and the
backfill (k2cli.stream.backfill) takes them off the loop and produces its rows through the same encoder and
producer queue (k2cli.stream.row_sink), never through `on_frame`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from k2cli.errors import ConfigError, K2Error
from k2cli.exchanges.base import (
    ROW_SOURCE_SEQUENCE,
    ROW_SYMBOL,
    ROW_TIMESTAMP,
    ROW_TRADE_ID,
    SHUTDOWN,
    SUBSCRIBE_ERROR,
    TRADES,
    FrameError,
    Row,
)
from k2cli.exchanges.descriptor import Parser
from k2cli.exchanges.session import SIG_BLOCKED, SIG_DATA, SIG_FATAL, SIG_SHUTDOWN, Connection
from k2cli.observe.metrics import StreamMetrics
from k2cli.stream.dead_letters import DeadLetterSink
from k2cli.stream.dedup import Deduplicator
from k2cli.stream.kafka_sink import KafkaSink
from k2cli.stream.summary import StreamSummary

log = logging.getLogger("k2.stream")

RowEncoder = Callable[[Row, bytes], bytes]  # (row, header) -> header + the row's Avro body


class FramePipeline:
    """Turns frames into Kafka records; counts what it received, accepted and rejected."""

    def __init__(self, *, parser: Parser, dedup: Deduplicator, sink: KafkaSink, encode: RowEncoder, header: bytes,
                 summary: StreamSummary, metrics: StreamMetrics, dead_letters: DeadLetterSink, exchange: str,
                 max_messages: int, symbols_setting: str, on_limit: Callable[[], None],
                 on_fatal: Callable[[K2Error], None]) -> None:
        self.parse = parser.parse_rows
        self.dedup = dedup
        self.key_index = ROW_SOURCE_SEQUENCE if dedup.sequential else ROW_TRADE_ID
        self.sink = sink
        self.encode = encode
        self.header = header
        self.summary = summary
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.exchange = exchange
        self.limit = max_messages  # 0 = unbounded
        self.symbols_setting = symbols_setting  # named when the exchange refuses the subscription
        self.on_limit = on_limit
        self.on_fatal = on_fatal
        self.stopping = False  # set once a bound is reached: later trades are not produced
        self.received: dict[str, int] = {}  # trades received per symbol (exchange form)
        self.last_ingest = 0  # µs, wall clock, of the last frame
        self._keys: dict[str, bytes] = {}  # Kafka key per symbol
        self._latency_at = 0

    def on_frame(self, conn: Connection, raw: str | bytes) -> int:
        """One frame: parse, drop duplicates, encode and queue for Kafka; returns the session's SIG_* flags."""
        summary = self.summary
        summary.frames += 1
        self.last_ingest = ingest = time.time_ns() // 1000
        try:
            parsed = self.parse(raw, ingest)
        except FrameError as exc:
            self.bad_frame(conn, raw, exc.error_type, exc.reason)
            return 0
        if parsed.kind is not TRADES:
            return self._control(parsed.kind, parsed.info)
        trades = parsed.trades
        if ingest - self._latency_at >= 10_000:  # sampled: at most 100 observations a second
            self._latency_at = ingest
            self.metrics.latency.observe(max(0, ingest - trades[0][ROW_TIMESTAMP]) / 1e6)
        accept = self.dedup.accept
        cid = conn.id
        key_index = self.key_index
        received = self.received
        keys = self._keys
        sink = self.sink
        pending = sink.pending
        try_produce = sink.try_produce
        encode, header = self.encode, self.header
        limit = self.limit
        stopping = self.stopping
        accepted = 0  # added to the summary once per frame
        for row in trades:
            symbol = row[ROW_SYMBOL]
            received[symbol] = received.get(symbol, 0) + 1
            if not accept(cid, symbol, row[key_index]) or stopping:
                continue
            key = keys.get(symbol)
            if key is None:
                key = keys[symbol] = symbol.encode()
            value = encode(row, header)
            if pending or not try_produce(key, value):
                pending.append((key, value))
            accepted += 1
            if limit and summary.trades_accepted + accepted >= limit:
                self.stopping = stopping = True
                self.on_limit()
        summary.trades_accepted += accepted
        summary.trades_received += len(trades)
        return SIG_DATA | SIG_BLOCKED if pending else SIG_DATA

    def _control(self, kind: str, info: str) -> int:
        """A frame without trades: an announced shutdown, a refused subscription, or nothing to do."""
        if kind is SHUTDOWN:
            return SIG_SHUTDOWN
        if kind is SUBSCRIBE_ERROR:
            self.on_fatal(ConfigError(f"the exchange refused the subscription: {info}", setting=self.symbols_setting))
            return SIG_FATAL
        return 0

    def bad_frame(self, conn: Connection, raw: str | bytes, error_type: str, reason: str) -> None:
        """Count a frame that cannot be used, log the first ones, and keep it in the dead-letter file."""
        counts = self.summary.frame_errors
        counts[error_type] = counts.get(error_type, 0) + 1
        self.metrics.frame_errors.labels(self.exchange, error_type).inc()
        self.dead_letters.bad_frame(conn, raw, error_type, reason)
        total = sum(counts.values())
        if total <= 20 or total % 1000 == 0:
            log.warning("bad frame (%s): %s — kept in the dead-letter file", error_type, reason)

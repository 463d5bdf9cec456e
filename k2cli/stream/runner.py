"""`k2 stream`'s engine: exchange frames -> parse -> dedup -> Avro -> Kafka, with dead letters and metrics.

One asyncio loop does everything on the hot path (frame in, records out to librdkafka's queue); Kafka
network work, compression and the metrics HTTP server run in their own threads. A bounded run stops
after `max_messages` trades or `duration` seconds; SIGTERM/SIGINT stop it too. Every stop flushes the
producer (up to settings.stream_flush_timeout) and reports what could not be delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from k2cli.errors import ConfigError, K2Error, ServiceUnavailable
from k2cli.exchanges import registry
from k2cli.exchanges.base import (
    ERROR_TYPES,
    ROW_SOURCE_SEQUENCE,
    ROW_SYMBOL,
    ROW_TIMESTAMP,
    ROW_TRADE_ID,
    SHUTDOWN,
    SUBSCRIBE_ERROR,
    TRADES,
    FrameError,
)
from k2cli.exchanges.session import (
    RECONNECT_REASONS,
    ROTATION_REASONS,
    SIG_BLOCKED,
    SIG_DATA,
    SIG_FATAL,
    SIG_SHUTDOWN,
    Connection,
    Session,
    SessionConfig,
    SessionHandler,
)
from k2cli.settings import Settings, ensure_writable_dir
from k2cli.stream.dedup import Deduplicator

log = logging.getLogger("k2.stream")


@dataclass(frozen=True)
class StreamOptions:
    """What one `k2 stream` run does, beyond the settings."""

    exchange: str  # a registered exchange's name
    symbols: tuple[str, ...]  # checked, in the exchange's subscription form
    urls: tuple[str, ...]  # primary first, then failovers (base URLs: the connection plan may add to them)
    topic: str
    max_messages: int = 0  # 0 = unbounded
    duration: float = 0.0  # 0 = unbounded
    metrics_port: int = 0  # 0 = no endpoint
    metrics_addr: str = "0.0.0.0"
    tick_interval: float = 0.5  # how often on_tick is called


@dataclass
class StreamSummary:
    """The final (or current) statistics of a run."""

    exchange: str
    topic: str
    url: str
    symbols: list[str]
    status: str = "running"  # running | completed | interrupted | failed
    stopped_by: str = ""  # max_messages | duration | signal | error
    duration_seconds: float = 0.0
    frames: int = 0
    trades_received: int = 0
    trades_accepted: int = 0
    produced: int = 0
    duplicates_dropped: int = 0
    frame_errors: dict[str, int] = field(default_factory=dict)
    produce_errors: dict[str, int] = field(default_factory=dict)
    undelivered: int = 0
    buffered: int = 0
    reconnects: dict[str, int] = field(default_factory=dict)
    rotations: dict[str, int] = field(default_factory=dict)
    connection_failures: int = 0
    pings_sent: int = 0
    pong_timeouts: int = 0
    backpressure_seconds: float = 0.0
    kafka_down: bool = False
    connected: bool = False
    dlq_entries: int = 0
    dlq_dir: str = ""
    rss_bytes: int = 0
    leak_score: float = 0.0
    trades_per_second: float = 0.0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def build_options(settings: Settings, exchange: str, *, symbols: tuple[str, ...] | None = None,
                  url: str | None = None, failover_urls: tuple[str, ...] | None = None, topic: str | None = None,
                  max_messages: int = 0, duration: float = 0.0, metrics_port: int | None = None) -> StreamOptions:
    """Resolve a run's options from settings and flags; an explicit --url drops the default failovers."""
    desc = registry.get(exchange)
    conf = settings.exchange(exchange)
    checked = desc.check_symbols(symbols or conf.symbols)
    primary = url or conf.url
    if failover_urls is None:
        failover_urls = () if url else conf.failover_urls
    urls = tuple(dict.fromkeys((primary, *failover_urls)))
    for u in urls:
        if not u.startswith(("ws://", "wss://")):
            raise ConfigError(f"--url {u!r} is not a ws:// or wss:// URL", setting=desc.setting("url"))
    desc.check_urls(urls)
    if max_messages < 0 or duration < 0:
        raise ConfigError("--max-messages and --duration must be 0 (unbounded) or more")
    port = conf.metrics_port if metrics_port is None else metrics_port
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port {port} is not a port 0..65535", setting=desc.setting("metrics_port"))
    return StreamOptions(exchange=exchange, symbols=checked, urls=urls, topic=topic or conf.topic,
                         max_messages=max_messages, duration=duration, metrics_port=port)


class StreamRunner(SessionHandler):
    """Runs one exchange stream into Kafka until a bound, a signal or a fatal error."""

    def __init__(self, settings: Settings, options: StreamOptions,
                 on_tick: Callable[[StreamSummary], None] | None = None) -> None:
        from k2cli.observe.metrics import StreamMetrics

        self.settings = settings
        self.opts = options
        self.on_tick = on_tick
        self.metrics = StreamMetrics(options.exchange)
        self.fatal: K2Error | None = None
        ex = options.exchange
        self._exchange = registry.get(ex)
        plan = self._exchange.plan(options.urls, options.symbols)
        self._parser = plan.parser
        self._key_index = ROW_SOURCE_SEQUENCE if plan.sequential_ids else ROW_TRADE_ID
        self.dedup = Deduplicator(sequential=self._key_index == ROW_SOURCE_SEQUENCE)
        s = settings
        self.session_config = SessionConfig(
            urls=plan.urls, subscribe=plan.subscribe, ping_interval=s.ping_interval, pong_timeout=s.pong_timeout,
            idle_timeout=s.idle_timeout, rotation_interval=s.rotation_interval, backoff_initial=s.backoff_initial,
            backoff_max=s.backoff_max, max_reconnects=s.max_reconnects, ssl_verify=s.ssl_verify,
            ca_bundle=s.ca_bundle, url_setting=self._exchange.setting("url"),
        )
        self.summary = StreamSummary(exchange=ex, topic=options.topic, url=options.urls[0],
                                     symbols=list(options.symbols), dlq_dir=str(s.dlq_path))
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._pending: deque[tuple[bytes, bytes]] = deque()
        self._received: dict[str, int] = {}
        self._received_reported: dict[str, int] = {}
        self._keys: dict[str, bytes] = {}
        self._dlq_buffer: list[Any] = []
        self._dlq: Any = None
        self._dlq_writing: asyncio.Future | None = None
        self._producer: Any = None
        self._encode: Any = None  # (row, header) -> header + the row's Avro body
        self._header = b""
        self._session: Session | None = None
        self._started = 0.0
        self._reported = {"produced": 0, "duplicates": 0}
        self._leak: list[bytearray] = []
        self._latency_at = 0
        self._last_ingest = 0

    # ------------------------------------------------------------------ set-up

    def _prepare(self) -> None:
        """Everything that can fail on bad settings or missing services, before any connection."""
        from k2cli.kafka.producer import TradeProducer, ensure_topic
        from k2cli.kafka.registry import RegistryClient
        from k2cli.kafka.serde import SerializerCache, frame
        from k2cli.kafka.v2encode import make_row_encoder
        from k2cli.reliability.dlq import DeadLetterQueue

        s, opts = self.settings, self.opts
        ensure_writable_dir(s.dlq_path, "K2_DLQ_DIR")
        self._dlq = DeadLetterQueue(s.dlq_path, origin="stream")
        registry = RegistryClient(s.schema_registry_url)
        cache = SerializerCache(registry, s.serializer_cache_max_size, on_change=self.metrics.serializer_cache_changed)
        serializer = cache.get(f"{opts.topic}-value")
        self._header = frame(serializer.schema_id, b"")  # registers the schema: fails fast if the registry is down
        self._encode = make_row_encoder()
        try:
            state = ensure_topic(s.kafka_bootstrap_servers, opts.topic, timeout=5.0)
            log.info("Kafka topic %s %s", opts.topic, state)
        except ServiceUnavailable as exc:
            log.warning("%s; streaming anyway: trades wait in the bounded buffer until Kafka is back", exc)
        self._producer = TradeProducer(s.kafka_bootstrap_servers, opts.topic, s.producer_buffer_max_messages,
                                       on_failure=self._delivery_failed)
        for reason in RECONNECT_REASONS:
            self.metrics.reconnects.labels(reason)
        for reason in ROTATION_REASONS:
            self.metrics.rotations.labels(reason)
        for error_type in ERROR_TYPES:
            self.metrics.frame_errors.labels(opts.exchange, error_type)
        for symbol in opts.symbols:
            self.metrics.messages_received.labels(self._symbol_label(symbol))

    def _symbol_label(self, symbol: str) -> str:
        return self._exchange.stored_symbol(symbol)

    # ------------------------------------------------------------------ run

    def run(self) -> StreamSummary:
        """Stream until done; returns the summary (status failed carries the error)."""
        self._prepare()
        server = self.metrics.serve(self.opts.metrics_port, self.opts.metrics_addr)
        try:
            asyncio.run(self._main())
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
        return self.summary

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        self._started = time.monotonic()
        self._session = Session(self.session_config, self)
        if self.settings.ssl_verify is False:
            log.warning("TLS certificate verification is OFF (--insecure): the exchange's identity is not checked")
        tasks = [asyncio.create_task(self._guard(self._ticker(), "the ticker")),
                 asyncio.create_task(self._guard(self._memory(), "the memory sampler")),
                 asyncio.create_task(self._guard(self._dlq_flusher(), "the dead-letter writer"))]
        if self.settings.debug_leak_mb_per_min > 0:
            log.warning("debug fault on: retaining %.1f MiB per minute (K2_DEBUG_LEAK_MB_PER_MIN)",
                        self.settings.debug_leak_mb_per_min)
            tasks.append(asyncio.create_task(self._guard(self._debug_leak(), "the debug leak")))
        error: BaseException | None = None
        try:
            await self._session.run(stop)
        except K2Error as exc:
            error = exc
        except Exception as exc:
            error = exc
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        await self._shutdown(error)
        if error is not None:
            raise error

    async def _guard(self, coro: Any, what: str) -> None:
        """Run a background task; if it fails, stop the stream loudly instead of carrying on without it."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s failed; stopping", what)
            if self.fatal is None:
                self.fatal = exc if isinstance(exc, K2Error) else K2Error(f"{what} failed: {exc}")
            assert self._stop is not None
            self._stop.set()

    def _on_signal(self) -> None:
        if not self.summary.stopped_by:
            self.summary.stopped_by = "signal"
        log.info("stopping: flushing buffered trades to Kafka")
        assert self._stop is not None
        self._stop.set()

    def _request_stop(self, why: str) -> None:
        if not self.summary.stopped_by:
            self.summary.stopped_by = why
        self._stopping = True
        assert self._stop is not None
        self._stop.set()

    async def _shutdown(self, error: BaseException | None) -> None:
        """Flush everything: pending records into the producer, the producer into Kafka, the DLQ to disk."""
        deadline = time.monotonic() + self.settings.stream_flush_timeout
        producer = self._producer
        while self._pending and time.monotonic() < deadline:
            self._push_pending()
            producer.poll(0.05)
        remaining = producer.flush(max(0.0, deadline - time.monotonic())) if producer else 0
        self.summary.undelivered = remaining + len(self._pending)
        if self.summary.undelivered:
            log.error("%d trades were not acknowledged by Kafka within %.0fs", self.summary.undelivered,
                      self.settings.stream_flush_timeout)
        await self._flush_dlq()
        self._refresh(final=True)
        if error is not None:
            self.summary.status = "failed"
            self.summary.stopped_by = "error"
            self.summary.error = str(error)
        elif self.summary.stopped_by == "signal":
            self.summary.status = "interrupted"
        else:
            self.summary.status = "completed"

    # ------------------------------------------------------------------ hot path

    def on_frame(self, conn: Connection, raw: str | bytes) -> int:
        """One frame: parse, drop duplicates, encode and queue for Kafka."""
        self.summary.frames += 1
        self._last_ingest = ingest = time.time_ns() // 1000
        try:
            parsed = self._parser.parse_rows(raw, ingest)
        except FrameError as exc:
            self._bad_frame(conn, raw, exc.error_type, exc.reason)
            return 0
        kind = parsed.kind
        if kind is not TRADES:
            if kind is SHUTDOWN:
                return SIG_SHUTDOWN
            if kind is SUBSCRIBE_ERROR:
                setting = self._exchange.setting("symbols")
                self.fatal = ConfigError(f"the exchange refused the subscription: {parsed.info}", setting=setting)
                return SIG_FATAL
            return 0
        trades = parsed.trades
        if ingest - self._latency_at >= 10_000:  # sampled: at most 100 observations a second
            self._latency_at = ingest
            self.metrics.latency.observe(max(0, ingest - trades[0][ROW_TIMESTAMP]) / 1e6)
        accept = self.dedup.accept
        cid = conn.id
        key_index = self._key_index
        received = self._received
        keys = self._keys
        pending = self._pending
        try_produce = self._producer.try_produce
        encode, header = self._encode, self._header
        summary = self.summary
        limit = self.opts.max_messages
        stopping = self._stopping
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
                self._request_stop("max_messages")
                stopping = True
        summary.trades_accepted += accepted
        summary.trades_received += len(trades)
        return SIG_DATA | SIG_BLOCKED if self._pending else SIG_DATA

    def _push_pending(self) -> None:
        pending, producer = self._pending, self._producer
        while pending:
            key, value = pending[0]
            if not producer.try_produce(key, value):
                return
            pending.popleft()

    async def wait_unblocked(self) -> None:
        """Back-pressure: the producer buffer is full (Kafka slow or down); wait, never drop."""
        assert self._stop is not None
        last = time.monotonic()
        while self._pending and not self._stop.is_set():
            self._producer.poll(0)
            self._push_pending()
            if self._pending:
                await asyncio.sleep(0.02)
            now = time.monotonic()
            self.metrics.backpressure.inc(now - last)  # counted while it lasts, so a scrape sees it grow
            self.summary.backpressure_seconds += now - last
            last = now

    def _bad_frame(self, conn: Connection, raw: str | bytes, error_type: str, reason: str) -> None:
        from k2cli.reliability.dlq import DLQEntry

        counts = self.summary.frame_errors
        counts[error_type] = counts.get(error_type, 0) + 1
        self.metrics.frame_errors.labels(self.opts.exchange, error_type).inc()
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")
        self._dlq_buffer.append(DLQEntry(error=reason, error_type=error_type, origin="stream", raw_frame=text,
                                         source={"exchange": self.opts.exchange, "url": conn.url,
                                                 "connection": conn.id, "topic": self.opts.topic}))
        if sum(counts.values()) <= 20 or sum(counts.values()) % 1000 == 0:
            log.warning("bad frame (%s): %s — kept in the dead-letter file", error_type, reason)
        if len(self._dlq_buffer) >= 10_000:  # a flood of bad frames: write now rather than hold them in memory
            self._dlq.write(self._dlq_buffer)
            self._count_dlq(len(self._dlq_buffer))
            self._dlq_buffer = []

    def _delivery_failed(self, key: bytes | None, value: bytes | None, name: str, message: str) -> None:
        from k2cli.reliability.dlq import DLQEntry

        self.metrics.produce_errors.labels(self.opts.exchange, name).inc()
        self.summary.produce_errors[name] = self.summary.produce_errors.get(name, 0) + 1
        self._dlq_buffer.append(DLQEntry(error=f"Kafka delivery failed: {message}", error_type="delivery_failed",
                                         origin="stream", transient=True, value=value,
                                         source={"exchange": self.opts.exchange, "topic": self.opts.topic,
                                                 "key": key.decode("utf-8", "replace") if key else None}))

    # ------------------------------------------------------------------ background

    def _count_dlq(self, n: int) -> None:
        self.summary.dlq_entries += n
        self.metrics.dlq_entries.inc(n)

    async def _flush_dlq(self) -> None:
        if self._dlq_writing is not None:  # a write begun by the flusher, which was cancelled at the stop
            writing, self._dlq_writing = self._dlq_writing, None
            try:
                await writing
            except Exception as exc:
                log.error("writing dead-letter entries failed: %s", exc)
        if self._dlq_buffer:
            batch, self._dlq_buffer = self._dlq_buffer, []
            # shielded, and counted by the same task: cancelling the flusher at the stop cannot leave entries
            # written but not counted (the shutdown awaits the write through _dlq_writing)
            self._dlq_writing = writing = asyncio.ensure_future(self._write_dlq(batch))
            await asyncio.shield(writing)
            self._dlq_writing = None

    async def _write_dlq(self, batch: list[Any]) -> None:
        await asyncio.to_thread(self._dlq.write, batch)
        self._count_dlq(len(batch))

    async def _dlq_flusher(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self._flush_dlq()

    async def _ticker(self) -> None:
        next_tick = 0.0
        while True:
            await asyncio.sleep(0.1)
            self._producer.poll(0)
            now = time.monotonic()
            if self.opts.duration and now - self._started >= self.opts.duration:
                self._request_stop("duration")
            if now >= next_tick:
                next_tick = now + self.opts.tick_interval
                self._refresh()
                if self.on_tick is not None:
                    self.on_tick(self.summary)

    async def _memory(self) -> None:
        from k2cli.observe.memory import MemorySampler

        sampler = MemorySampler()
        while True:
            reading = sampler.sample(time.monotonic())
            self.metrics.rss.set(reading.rss)
            self.metrics.vms.set(reading.vms)
            self.metrics.leak_score.set(reading.score)
            self.summary.rss_bytes = reading.rss
            self.summary.leak_score = round(reading.score, 4)
            await asyncio.sleep(self.settings.memory_sample_interval)

    async def _debug_leak(self) -> None:
        """Test-only fault: retain memory at a steady rate so leak detection can be validated."""
        per_second = int(self.settings.debug_leak_mb_per_min * 2**20 / 60)
        while True:
            self._leak.append(bytearray(b"\xa5") * per_second)  # written, so it is resident
            await asyncio.sleep(1.0)

    def _refresh(self, final: bool = False) -> None:
        """Bring the summary and the metrics up to date."""
        m, summ, producer = self.metrics, self.summary, self._producer
        delivered = producer.delivered if producer else 0
        if delivered > self._reported["produced"]:
            m.produced.inc(delivered - self._reported["produced"])
            self._reported["produced"] = delivered
            producer.note_progress()
        summ.produced = delivered
        if self.dedup.duplicates > self._reported["duplicates"]:
            m.duplicates.inc(self.dedup.duplicates - self._reported["duplicates"])
            self._reported["duplicates"] = self.dedup.duplicates
        summ.duplicates_dropped = self.dedup.duplicates
        for symbol, count in self._received.items():
            done = self._received_reported.get(symbol, 0)
            if count > done:
                m.messages_received.labels(self._symbol_label(symbol)).inc(count - done)
                self._received_reported[symbol] = count
        summ.buffered = (producer.pending if producer else 0) + len(self._pending)
        m.queue.set(summ.buffered)
        summ.kafka_down = bool(producer and producer.broker_down)
        if self._last_ingest:
            m.last_message.set(self._last_ingest / 1e6)
        elapsed = time.monotonic() - self._started if self._started else 0.0
        summ.duration_seconds = round(elapsed, 3)
        summ.trades_per_second = round(delivered / elapsed, 1) if elapsed > 0 else 0.0
        session = self._session
        primary = session.primary if session else None
        summ.connected = bool(primary is not None and not primary.done.is_set() and not final)
        m.connection_status.set(1 if summ.connected else 0)
        loop_now = asyncio.get_running_loop().time()
        m.lifetime.set(primary.age(loop_now) if summ.connected and primary is not None else 0)

    # ------------------------------------------------------------------ session events

    def connected(self, conn: Connection) -> None:
        self.metrics.connection_status.set(1)

    def reconnecting(self, reason: str) -> None:
        self.metrics.reconnects.labels(reason).inc()
        self.summary.reconnects[reason] = self.summary.reconnects.get(reason, 0) + 1
        log.warning("reconnecting (%s)", reason)

    def attempt_failed(self, url: str, error_type: str, detail: str, delay: float) -> None:
        self.metrics.connection_errors.labels(error_type).inc()
        self.summary.connection_failures += 1

    def rotated(self, reason: str, overlap: float, waited: list[str]) -> None:
        self.metrics.rotations.labels(reason).inc()
        self.summary.rotations[reason] = self.summary.rotations.get(reason, 0) + 1

    def ping_sent(self, conn: Connection) -> None:
        self.metrics.pings_sent.inc()
        self.summary.pings_sent += 1

    def pong(self, conn: Connection, latency: float) -> None:
        self.metrics.last_pong.set(time.time())

    def pong_timeout(self, conn: Connection) -> None:
        self.metrics.pong_timeouts.inc()
        self.summary.pong_timeouts += 1

    def handover_begin(self, old: Connection, new: Connection) -> None:
        self.dedup.begin_handover(old.id, new.id)

    def handover_ready(self, old: Connection, new: Connection, quiet_ok: bool) -> tuple[bool, list[str]]:
        return self.dedup.handover_ready(old.id, new.id, quiet_ok)

    def handover_end(self, old: Connection, new: Connection) -> None:
        self.dedup.end_handover(old.id, new.id)

    def connection_closed(self, conn: Connection) -> None:
        self.dedup.forget(conn.id)

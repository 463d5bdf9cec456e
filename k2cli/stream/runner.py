"""`k2 stream`'s engine: exchange frames -> parse -> dedup -> Avro -> Kafka, with dead letters and metrics.

One asyncio loop does everything on the hot path (frame in, records out to librdkafka's queue); Kafka
network work, compression and the metrics HTTP server run in their own threads. A bounded run stops
after `max_messages` trades or `duration` seconds; SIGTERM/SIGINT stop it too. Every stop flushes the
producer (up to settings.stream_flush_timeout) and reports what could not be delivered.

The runner only wires the parts, each in its own module of k2cli.stream:
options (StreamOptions, build_options), summary (StreamSummary), pipeline (the hot path), kafka_sink
(the producer and its pending buffer), dead_letters (the dead-letter sink), monitor (metrics, the
tick, memory), lifecycle (stop, signals, background tasks), session_events (the session's callbacks)
and dedup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from k2cli.errors import K2Error
from k2cli.exchanges import registry
from k2cli.exchanges.session import Session, SessionConfig
from k2cli.settings import Settings, ensure_writable_dir
from k2cli.stream.backfill import GapBackfill
from k2cli.stream.dead_letters import DeadLetterSink
from k2cli.stream.dedup import Deduplicator
from k2cli.stream.kafka_sink import KafkaSink
from k2cli.stream.lifecycle import Background, Lifecycle
from k2cli.stream.monitor import StreamMonitor
from k2cli.stream.options import StreamOptions, build_options
from k2cli.stream.pipeline import FramePipeline, RowEncoder
from k2cli.stream.row_sink import RowSink
from k2cli.stream.session_events import SessionEvents
from k2cli.stream.summary import StreamSummary

__all__ = ["StreamOptions", "StreamRunner", "StreamSummary", "build_options"]

log = logging.getLogger("k2.stream")


class StreamRunner(SessionEvents):
    """Runs one exchange stream into Kafka until a bound, a signal or a fatal error."""

    def __init__(self, settings: Settings, options: StreamOptions,
                 on_tick: Callable[[StreamSummary], None] | None = None) -> None:
        from k2cli.observe.metrics import StreamMetrics

        self.settings = settings
        self.opts = options
        self.fatal: K2Error | None = None
        self._exchange = registry.get(options.exchange)
        plan = self._exchange.plan(options.urls, options.symbols)
        self._parser = plan.parser
        summary = StreamSummary(exchange=options.exchange, topic=options.topic, url=options.urls[0],
                                symbols=list(options.symbols), dlq_dir=str(settings.dlq_path))
        super().__init__(StreamMetrics(options.exchange), summary, Deduplicator(sequential=plan.sequential_ids))
        s = settings
        self.session_config = SessionConfig(
            urls=plan.urls, subscribe=plan.subscribe, ping_interval=s.ping_interval, pong_timeout=s.pong_timeout,
            idle_timeout=s.idle_timeout, rotation_interval=s.rotation_interval, backoff_initial=s.backoff_initial,
            backoff_max=s.backoff_max, max_reconnects=s.max_reconnects, ssl_verify=s.ssl_verify,
            ca_bundle=s.ca_bundle, url_setting=self._exchange.setting("url"),
        )
        self.dead_letters = DeadLetterSink(options.exchange, options.topic, self._count_dlq)
        self.monitor = StreamMonitor(settings, options, self.metrics, summary, self.dedup,
                                     self._exchange.stored_symbol, on_tick)
        self.lifecycle = Lifecycle(summary, on_stopping=self._stop_producing, on_failure=self._background_failed)
        self.sink: KafkaSink | None = None  # set up by _prepare
        self.pipeline: FramePipeline | None = None
        stored = self._exchange.stored_symbol
        self.backfill = GapBackfill(exchange=options.exchange, dedup=self.dedup, summary=summary, metrics=self.metrics,
                                    symbol_label=stored, max_trades=options.backfill_max_trades, fetcher=None,
                                    subscription={stored(s): s for s in options.symbols})
        if not plan.sequential_ids and plan.key_time is not None:  # no ids: gaps by time window
            from k2cli.stream.windows import WindowTracker

            self.backfill.windows, self.backfill.key_time = WindowTracker(), plan.key_time
            self.closing = self.backfill.connection_closed

    def _prepare(self) -> None:
        """Everything that can fail on bad settings or missing services, before any connection."""
        from k2cli.kafka.registry import RegistryClient
        from k2cli.kafka.serde import SerializerCache, frame
        from k2cli.kafka.v2encode import make_row_encoder

        s, opts = self.settings, self.opts
        ensure_writable_dir(s.dlq_path, "K2_DLQ_DIR")
        self.dead_letters.open(s.dlq_path)
        cache = SerializerCache(RegistryClient.from_settings(s), s.serializer_cache_max_size,
                                on_change=self.metrics.serializer_cache_changed)
        serializer = cache.get(f"{opts.topic}-value")
        header = frame(serializer.schema_id, b"")  # registers the schema: fails fast if the registry is down
        encode = make_row_encoder()
        self._attach(KafkaSink.open(s, opts.topic, self._delivery_failed, self.dead_letters.unacknowledged),
                     encode, header)
        self.monitor.prime_labels()
        self._prepare_backfill()

    def _prepare_backfill(self) -> None:
        """Open the REST fetcher and find where the topic left off (sequential ids only), if backfill is on."""
        from k2cli.stream.resume import last_positions

        opts, desc = self.opts, self._exchange
        if not opts.rest_url:
            if self.settings.backfill and desc.rest is None:
                log.warning("%s has no REST trade history in k2: gaps are only counted", desc.title)
            return
        windows = self.backfill.windows
        if not self.dedup.sequential and windows is None:
            log.info("%s trade ids are not sequential: gaps cannot be seen, nothing to backfill", desc.title)
            return
        from k2cli.exchanges.dialer import build_ssl_context
        from k2cli.exchanges.rest import TradeFetcher

        key = self.settings.exchange(opts.exchange).rest_api_key
        tls = build_ssl_context(self.settings.ssl_verify, self.settings.ca_bundle)
        self.backfill.fetcher = TradeFetcher(desc, opts.rest_url, api_key=key, on_request=self.backfill.count_request,
                                             tls=tls)
        self.summary.backfill = True
        for label in ("filled", "unfilled"):
            self.metrics.backfill_gaps.labels(opts.exchange, label)
        stored = {desc.stored_symbol(s) for s in opts.symbols}
        newest: dict[str, tuple[int, set[str]]] = {}
        try:
            positions = last_positions(self.settings, opts.topic, desc.code, stored,
                                       newest=None if windows is None else newest)
        except Exception as exc:  # Kafka down at start-up: stream anyway, without the restart's gap
            log.warning("could not read where %s left off (%s): the gap since the last run is not filled",
                        opts.topic, exc)
            return
        if windows is not None:  # from the newest trade time per symbol; its trades are not produced again
            self.summary.resumed_at = {s: t for s, (t, _) in sorted(newest.items())}
            for symbol, (_, ids) in newest.items():
                self.dedup.seed(symbol, ids)
            windows.resumed(self.summary.resumed_at)
            return
        self.summary.resumed_from = {s: p[0] for s, p in sorted(positions.items())}
        self.dedup.resume_from({s: p[0] for s, p in positions.items()})
        self.backfill.note_resume(positions)

    def _attach(self, sink: KafkaSink, encode: RowEncoder, header: bytes) -> None:
        """Build the frame pipeline in front of the sink and hand its on_frame to the session."""
        self.sink = self.monitor.sink = sink
        self.pipeline = self.monitor.pipeline = FramePipeline(
            parser=self._parser, dedup=self.dedup, sink=sink, encode=encode, header=header, summary=self.summary,
            metrics=self.metrics, dead_letters=self.dead_letters, exchange=self.opts.exchange,
            max_messages=self.opts.max_messages, symbols_setting=self._exchange.setting("symbols"),
            on_limit=lambda: self.lifecycle.request_stop("max_messages"), on_fatal=self._refused)
        # the session calls the pipeline's on_frame with no layer in between (it is the hot path)
        self.on_frame = self.pipeline.on_frame  # type: ignore[method-assign]  # an instance's bound method
        self.backfill.rows = RowSink(sink, encode, header, self.settings.producer_buffer_max_messages)

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
        self.monitor.started = time.monotonic()
        session = self.monitor.session = Session(self.session_config, self)
        if self.settings.ssl_verify is False:
            log.warning("TLS certificate verification is OFF (--insecure): the exchange's identity is not checked")
        error: BaseException | None = None
        async with self.lifecycle.running(self._background()) as stop:
            try:
                await session.run(stop)
            except Exception as exc:
                error = exc
            if error is None and self.fatal is None:
                await self.backfill.settle(self.settings.stream_flush_timeout)
        await self._shutdown(error)
        if error is not None:
            raise error

    def _background(self) -> Background:
        monitor = self.monitor
        tasks: Background = {"the ticker": lambda: monitor.ticker(self.lifecycle.request_stop),
                             "the memory sampler": monitor.memory,
                             "the dead-letter writer": self.dead_letters.run,
                             "the gap backfill": self.backfill.run}
        if self.settings.debug_leak_mb_per_min > 0:
            log.warning("debug fault on: retaining %.1f MiB per minute (K2_DEBUG_LEAK_MB_PER_MIN)",
                        self.settings.debug_leak_mb_per_min)
            tasks["the debug leak"] = monitor.debug_leak
        return tasks

    async def _shutdown(self, error: BaseException | None) -> None:
        """Flush everything: pending records into the producer, the producer into Kafka, the DLQ to disk.

        What Kafka has not acknowledged by the deadline is taken back and dead-lettered (replayable) by the
        dead letters' last flush."""
        assert self.sink is not None
        self.summary.undelivered = self.sink.drain(self.settings.stream_flush_timeout)
        if self.summary.undelivered:
            log.error("%d trades were not acknowledged by Kafka within %.0fs; keeping them in the dead-letter "
                      "directory", self.summary.undelivered, self.settings.stream_flush_timeout)
        await self.dead_letters.flush()
        self.monitor.refresh(final=True)
        self.summary.finish(error)

    # ------------------------------------------------------------------ what the parts report

    async def wait_unblocked(self) -> None:
        """Back-pressure: the producer buffer is full (Kafka slow or down); wait, never drop."""
        assert self.sink is not None and self.lifecycle.stop is not None
        await self.sink.wait_unblocked(self.lifecycle.stop, self._blocked)

    def _blocked(self, seconds: float) -> None:
        self.metrics.backpressure.inc(seconds)
        self.summary.backpressure_seconds += seconds

    def _delivery_failed(self, key: bytes | None, value: bytes | None, name: str, message: str) -> None:
        """A record Kafka refused: counted, and kept in the dead-letter file with its Avro value."""
        self.metrics.produce_errors.labels(self.opts.exchange, name).inc()
        self.summary.produce_errors[name] = self.summary.produce_errors.get(name, 0) + 1
        self.dead_letters.delivery_failed(key, value, message)

    def _count_dlq(self, entries: int, trades: int) -> None:
        self.summary.dlq_entries += entries
        self.summary.dlq_trades += trades
        self.metrics.dlq_entries.inc(entries)

    def _stop_producing(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stopping = True

    def _refused(self, error: K2Error) -> None:
        self.fatal = error

    def _background_failed(self, error: K2Error) -> None:
        if self.fatal is None:
            self.fatal = error

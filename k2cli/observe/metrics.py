"""The Prometheus metric families of `k2 stream`, with the names the operators' procedures use.

Each StreamMetrics owns a CollectorRegistry, so two streams (or many tests) can live in one process.
Labels are bounded: symbol (the configured list), reason and error_type (closed sets); never per trade.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StreamMetrics:
    """Every metric of one stream process; `exchange` is a registered exchange's name (the family prefix)."""

    def __init__(self, exchange: str, registry: CollectorRegistry | None = None) -> None:
        self.exchange = exchange
        self.registry = registry if registry is not None else CollectorRegistry()
        r, p = self.registry, exchange
        self.messages_received = Counter(f"{p}_messages_received_total", "Trades received from the exchange",
                                         ["symbol"], registry=r)
        self.connection_status = Gauge(f"{p}_connection_status", "1 while a connection is streaming, else 0",
                                       registry=r)
        self.rotations = Counter(f"{p}_connection_rotations_total", "Planned make-before-break rotations",
                                 ["reason"], registry=r)
        self.lifetime = Gauge(f"{p}_connection_lifetime_seconds", "Age of the current connection", registry=r)
        self.last_pong = Gauge(f"{p}_last_pong_timestamp_seconds", "Unix time of the last pong to our ping",
                               registry=r)
        self.pong_timeouts = Counter(f"{p}_pong_timeouts_total", "Pings without a pong in time", registry=r)
        self.pings_sent = Counter(f"{p}_pings_sent_total", "Heartbeat pings sent", registry=r)
        self.reconnects = Counter(f"{p}_reconnects_total", "Unplanned reconnects by reason", ["reason"], registry=r)
        self.connection_errors = Counter(f"{p}_connection_errors_total", "Failed connection attempts",
                                         ["error_type"], registry=r)
        self.latency = Histogram(f"{p}_message_latency_seconds",
                                 "Receive time minus exchange trade time (sampled, <= 100/s)",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.last_message = Gauge(f"{p}_last_message_timestamp_seconds", "Unix time of the last frame", registry=r)
        self.serializer_cache_size = Gauge("serializer_cache_size", "Avro serializers cached", registry=r)
        self.serializer_cache_evictions = Counter("serializer_cache_evictions_total", "Serializers evicted",
                                                  registry=r)
        self.rss = Gauge("process_memory_rss_bytes", "Resident set size of this process", registry=r)
        self.vms = Gauge("process_memory_vms_bytes", "Virtual memory size of this process", registry=r)
        self.leak_score = Gauge("memory_leak_detection_score",
                                "r2 * slope/(slope+10) of RSS growth in MiB/h (10 MiB/h steady = 0.5)", registry=r)
        self.produced = Counter("k2_stream_messages_produced_total", "Trades acknowledged by Kafka", ["exchange"],
                                registry=r).labels(p)
        self.produce_errors = Counter("k2_stream_produce_errors_total", "Trades Kafka failed to take",
                                      ["exchange", "error_type"], registry=r)
        self.frame_errors = Counter("k2_stream_frame_errors_total", "Bad frames (kept in the dead-letter file)",
                                    ["exchange", "error_type"], registry=r)
        self.duplicates = Counter("k2_stream_duplicates_dropped_total", "Trades dropped as already seen",
                                  ["exchange"], registry=r).labels(p)
        self.queue = Gauge("k2_stream_producer_queue_messages", "Trades waiting in the producer buffer",
                           ["exchange"], registry=r).labels(p)
        self.backpressure = Counter("k2_stream_backpressure_seconds_total",
                                    "Time reading was paused because the producer buffer was full",
                                    ["exchange"], registry=r).labels(p)
        self.dlq_entries = Counter("k2_stream_dlq_entries_total", "Entries written to the dead-letter file",
                                   ["exchange"], registry=r).labels(p)
        self.backfill_trades = Counter("k2_backfill_trades_total", "Trades filled into gaps from the REST API",
                                       ["exchange", "symbol"], registry=r)
        self.backfill_requests = Counter("k2_backfill_requests_total", "REST calls of the gap backfill by outcome",
                                         ["exchange", "status"], registry=r)
        self.backfill_gaps = Counter("k2_backfill_gaps_total", "Gaps in trade ids by outcome (filled or unfilled)",
                                     ["exchange", "result"], registry=r)
        self._evictions_seen = 0

    def serializer_cache_changed(self, size: int, evictions: int) -> None:
        """SerializerCache on_change hook: mirror its size and eviction count."""
        self.serializer_cache_size.set(size)
        if evictions > self._evictions_seen:
            self.serializer_cache_evictions.inc(evictions - self._evictions_seen)
            self._evictions_seen = evictions

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Expose /metrics on a port (0 = off); returns the HTTP server (or None) so it can be shut down."""
        if not port:
            return None
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

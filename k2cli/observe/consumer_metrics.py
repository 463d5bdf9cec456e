"""The Prometheus metric families of `k2 consume` (its own registry and port, default 9094).

Labels are bounded: topic and partition (the subscribed topics), error_type and event (closed sets), exchange
(known exchanges, anything else is "other"). Counters are incremented per batch, never per record.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from k2cli.exchanges import registry

WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000)
# the registered exchanges, and venues whose records may reach the topics from other producers
KNOWN_EXCHANGES = frozenset({*registry.names(), "bybit", "okx", "bitstamp"})


def exchange_label(exchange: str) -> str:
    """A bounded exchange label."""
    low = (exchange or "").lower()
    return low if low in KNOWN_EXCHANGES else "other"


class ConsumerMetrics:
    """Every metric of one consumer process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter("k2_messages_consumed_total", "Records taken from Kafka (written + dead-lettered)",
                                ["topic"], registry=r)
        self.written = Counter("k2_messages_written_total", "Records committed to Iceberg", ["topic"], registry=r)
        self.write_duration = Histogram("k2_iceberg_write_duration_seconds",
                                        "Time to write and commit one batch to Iceberg", buckets=WRITE_BUCKETS,
                                        registry=r)
        self.batch_size = Histogram("k2_consumer_batch_size", "Records per committed batch", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.lag = Gauge("k2_consumer_lag_messages", "High watermark minus the consumer position, per partition",
                         ["topic", "partition"], registry=r)
        self.total_lag = Gauge("k2_consumer_total_lag_messages", "Consumer lag summed over owned partitions",
                               registry=r)
        self.errors = Counter("k2_consumer_errors_total", "Errors by type (per record or per failed operation)",
                              ["error_type"], registry=r)
        self.dlq_entries = Counter("k2_dlq_entries_total", "Records written to the dead-letter queue",
                                   ["error_type"], registry=r)
        self.sequence_gaps = Counter("k2_sequence_gaps_total", "Sequence gaps (small and large)", ["exchange"],
                                     registry=r)
        self.sequence_events = Counter("k2_sequence_events_total", "Sequence events other than OK",
                                       ["exchange", "event"], registry=r)
        self.duplicates = Counter("k2_consumer_duplicates_total",
                                  "Records not written because their trade was already in the table (or the batch)",
                                  ["exchange"], registry=r)
        self.breaker_state = Gauge("k2_circuit_breaker_state", "Iceberg write breaker: 0 closed, 1 half-open, 2 open",
                                   ["breaker"], registry=r)
        self.snapshots = Counter("k2_iceberg_snapshots_committed_total", "Iceberg snapshots committed", registry=r)
        self.conflicts = Counter("k2_iceberg_commit_conflicts_total",
                                 "Batches dropped because another writer had committed their offsets", registry=r)
        self.snapshots_expired = Counter("k2_iceberg_snapshots_expired_total", "Snapshots expired by the consumer",
                                         registry=r)
        self.paused = Gauge("k2_consumer_paused", "1 while consumption is paused (write failing or breaker open)",
                            registry=r)
        self.assigned = Gauge("k2_consumer_assigned_partitions", "Partitions this consumer owns", registry=r)
        self.rss = Gauge("process_memory_rss_bytes", "Resident set size of this process", registry=r)
        self.breaker_state.labels("iceberg").set(0)

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Expose /metrics on a port (0 = off); returns the HTTP server (or None) for `server_port` and shutdown."""
        if not port:
            return None
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

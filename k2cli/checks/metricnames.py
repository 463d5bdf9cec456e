"""Prometheus names the checklists query: the seeds' names, which k2's exporters use (k2cli/observe)."""

from __future__ import annotations

# consumer (seed 000, Step 5)
CONSUMED = "k2_messages_consumed_total"
WRITE_DURATION = "k2_iceberg_write_duration_seconds"  # histogram
CONSUMER_LAG = "k2_consumer_lag_messages"  # gauge per topic/partition
CONSUMER_ERRORS = "k2_consumer_errors_total"

# every error counter a running pipeline exports (k2cli/observe/metrics.py, consumer_metrics.py)
STREAM_PRODUCE_ERRORS = "k2_stream_produce_errors_total"
STREAM_FRAME_ERRORS = "k2_stream_frame_errors_total"
ERROR_COUNTERS = (CONSUMER_ERRORS, STREAM_PRODUCE_ERRORS, STREAM_FRAME_ERRORS)
STREAM_ERROR_FAMILIES = ("connection_errors_total", "pong_timeouts_total")  # per exchange, see stream()

# scrape jobs of deploy/prometheus/prometheus.yml.tmpl
CONSUMER_JOB = "k2-consumer"


def stream(exchange: str, family: str) -> str:
    """A stream metric family of an exchange, `<exchange>_<family>` (k2cli/observe/metrics.py)."""
    return f"{exchange}_{family}"


# process-wide families every k2 stream exports (seed 003, Steps 03 and 04)
CACHE_SIZE = "serializer_cache_size"
CACHE_EVICTIONS = "serializer_cache_evictions_total"
RSS = "process_memory_rss_bytes"
VMS = "process_memory_vms_bytes"
LEAK_SCORE = "memory_leak_detection_score"

# the status screen (k2cli/observe/status_sources.py)
BREAKER_STATE = "k2_circuit_breaker_state"  # gauge per breaker: 0 closed, 1 half-open, 2 open
BACKFILL_GAPS = "k2_backfill_gaps_total"  # counter per exchange and result (filled, unfilled)

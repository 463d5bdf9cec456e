"""Every threshold a checklist compares against, with the seeds' numbers as defaults.

Override any of them in k2.toml:

    [thresholds]
    e2e_throughput_min_msg_per_s = 500
"""

from __future__ import annotations

from k2cli.errors import ConfigError
from k2cli.exchanges import registry
from k2cli.exchanges.descriptor import ExchangeDescriptor
from k2cli.soak.weekly import THRESHOLDS as PROD_THRESHOLDS
from k2cli.verdict import Threshold

S000 = "Consumer Validation Procedures"
S003 = "Phase 5 Validation Guide"
_SEED = registry.default()  # the exchange the seeds' alert names belong to


def _source(d: ExchangeDescriptor) -> str:
    """Where an exchange's streaming expectations come from: seed 000, unless its descriptor says otherwise."""
    return d.expectation.source or f"{S000}: Expected Performance"


_ALL = (
    # ---- service health (prereqs); the seeds give no number, 5 s is the probes' own timeout
    Threshold("service_latency_max_ms", 5000, "<", "ms", "k2: a healthy service answers a probe within 5 s"),
    # ---- streaming (seed 000, "WebSocket Streaming Validation")
    Threshold("streaming_connect_max_s", 5, "<", "s", f"{S000}: Expected Performance, connection time <5s"),
    *(Threshold(f"streaming_{d.name}_first_trade_max_s", d.expectation.first_trade_max_s, "<", "s",
                f"{_source(d)}, {d.title} time to first trade <{d.expectation.first_trade_max_s:g}s")
      for d in registry.all()),
    Threshold("streaming_min_valid_trades", 10, ">=", "trades", f"{S000}: Quick Validation, 10 valid trades"),
    Threshold("streaming_v2_compliance_min_pct", 100, ">=", "%", f"{S000}: Quick Validation, 100% v2 compliance"),
    *(t for d in registry.all() for t in (
        Threshold(f"streaming_{d.name}_rate_min_per_s", d.expectation.rate_min_per_s, ">=", "trades/s",
                  f"{_source(d)}, {d.expectation.seed_rate}"),
        Threshold(f"streaming_{d.name}_rate_max_per_s", d.expectation.rate_max_per_s, "<=", "trades/s",
                  f"{_source(d)}, {d.expectation.seed_rate} (above: WARN)"))),
    *(Threshold(f"streaming_{d.name}_latency_p95_max_ms", d.expectation.latency_p95_max_ms, "<", "ms",
                f"{_source(d)}, {d.title} message latency <{d.expectation.latency_p95_max_ms:g}ms "
                "(p95 of ingestion - trade time)")
      for d in registry.all()),
    Threshold("streaming_run_max_s", 60, "", "s", "run parameter: longest a streaming run may take"),
    # ---- e2e (seed 000, "Consumer E2E Validation Procedure")
    Threshold("e2e_messages", 5000, "", "messages", f"{S000}: Step 2, run consumer for 5000 messages"),
    Threshold("e2e_max_backlog", 50000, "<=", "messages",
              "run parameter: refuse to consume a larger pending backlog in one validation run"),
    Threshold("e2e_errors_max", 0, "<=", "errors", f"{S000}: Step 2, Errors == 0"),
    Threshold("e2e_throughput_min_msg_per_s", 100, ">", "msg/s", f"{S000}: Step 5, throughput >100 msg/sec"),
    Threshold("e2e_cold_start_max_s", 60, "<", "s", f"{S000}: Degradation Indicators, cold start >60 seconds"),
    Threshold("e2e_write_p99_max_s", 2, "<", "s", f"{S000}: Step 5, p99 write duration <2 seconds"),
    Threshold("e2e_memory_max_mb", 500, "<", "MB", f"{S000}: Step 5, memory usage <500 MB for single consumer"),
    Threshold("e2e_query_limit", 100, "", "rows", f"{S000}: Step 4, query_trades(limit=100)"),
    Threshold("e2e_run_max_s", 600, "", "s", "run parameter: longest the consumer run may take"),
    Threshold("e2e_stream_rate", 500, "", "trades/s",
              "run parameter: simulator rate when e2e streams its own test data (keeps the run longer than two "
              "Prometheus scrapes)"),
    Threshold("e2e_gap_every", 1000, "", "trades",
              "run parameter: the simulator skips a trade id every N trades, so the gap count is not trivially 0"),
    # ---- alert rules expected in Prometheus
    Threshold("alert_lag_messages", 10000, "==", "messages", f"{S000}: Pre-Deployment, alert on lag >10,000"),
    Threshold("alert_memory_high_mb", 400, "==", "MB", f"{S003}: Step 04, {_SEED.alert('MemoryHigh')} (>400MB)"),
    Threshold("alert_leak_score", 0.8, "==", "",
              f"{S003}: Step 04, {_SEED.alert('MemoryLeakDetected')} (score >0.8)"),
    # ---- post-deployment (seed 000) and production validation (seed 003)
    Threshold("post_lag_max_messages", 1000, "<", "messages", f"{S000}: Post-Deployment, lag <1,000 messages"),
    Threshold("post_lag_within_s", 300, "", "s", f"{S000}: Post-Deployment, lag <1,000 within 5 minutes"),
    Threshold("post_throughput_min_msg_per_s", 100, ">", "msg/s", f"{S000}: Post-Deployment, >100 msg/sec"),
    Threshold("post_throughput_window_s", 300, "", "s", "run parameter: the rate window of the throughput step"),
    Threshold("post_freshness_max_s", 300, "<", "s", f"{S000}: Post-Deployment, fresh data (<5 min lag)"),
    Threshold("post_snapshot_max_age_s", 300, "<", "s",
              f"{S000}: Post-Deployment, snapshots increasing (newest snapshot younger than 5 min)"),
    Threshold("post_error_window_s", 3600, "", "s", "run parameter: look-back of the error counters (logs step)"),
    *PROD_THRESHOLDS,  # `k2 soak weekly` reads them too; they live with it
    # ---- blue-green deployment (seed 003, Step 08)
    Threshold("bg_lookback_s", 3600, "", "s",
              "run parameter: how far back the blue-green steps look for the deploy (two collectors up at once)"),
    Threshold("bg_dual_min_s", 600, ">=", "s", f"{S003}: Step 08, both containers producing (10 min dual operation)"),
    Threshold("bg_green_only_min_s", 900, ">=", "s",
              f"{S003}: Step 08, green handling all traffic (15 min validation)"),
    # ---- resilience (seed 003, P0/P1 steps)
    Threshold("config_ping_interval_s", 180, "==", "s", f"{S003}: Step 05, ping_interval_seconds default 180"),
    Threshold("config_pong_timeout_s", 10, "==", "s", f"{S003}: Step 05, pong received within 10s"),
    Threshold("config_idle_timeout_s", 30, "==", "s", f"{S003}: Step 06, health check timeout 60s -> 30s"),
    Threshold("config_cache_max_size", 10, "==", "", f"{S003}: Step 03, serializer_cache_max_size default 10"),
    Threshold("cache_test_subjects", 15, "", "subjects", f"{S003}: Step 03, create 15 serializers"),
    Threshold("cache_stress_subjects", 120, "", "subjects", f"{S003}: Step 03, 100+ schema subjects"),
    Threshold("cache_memory_growth_max_kb", 1024, "<", "KiB",
              f"{S003}: Step 03, memory stable with 100+ subjects (retained memory beyond a full cache)"),
    Threshold("rotation_test_interval_s", 2, "", "s", f"{S003}: Step 02, short-interval rotation test"),
    Threshold("rotation_test_min_rotations", 2, ">=", "", f"{S003}: Step 02, verify 2 rotations occurred"),
    Threshold("resilience_probe_s", 8, "", "s",
              "run parameter: length of the probe run (rotation every 2 s, ping every 1 s) the metric steps read"),
    Threshold("heartbeat_test_interval_s", 1, "", "s", f"{S003}: Step 05, short-interval ping test"),
    Threshold("heartbeat_test_min_pongs", 3, ">=", "", f"{S003}: Step 05, pings sent and pongs received"),
    Threshold("idle_test_timeout_s", 2, "", "s", f"{S003}: Step 06, reconnect after the idle timeout"),
    # ---- deployment / tech debt
    Threshold("unit_coverage_min_pct", 80, ">=", "%", f"{S000}: Pre-Deployment, unit tests 80%+ coverage"),
    Threshold("deploy_e2e_min_messages", 5000, ">=", "messages",
              f"{S000}: Pre-Deployment, E2E validation completed successfully (5,000+ messages)"),
)

THRESHOLDS: dict[str, Threshold] = {t.name: t for t in _ALL}


def get(name: str) -> Threshold:
    """The threshold definition with this name."""
    try:
        return THRESHOLDS[name]
    except KeyError:
        raise KeyError(f"unknown threshold {name!r}") from None


def check_overrides(overrides: dict[str, float]) -> None:
    """Reject k2.toml [thresholds] keys that name no threshold (a typo would silently do nothing)."""
    from k2cli.soak.criteria import THRESHOLDS as SOAK_THRESHOLDS  # `k2 soak`'s soak_* limits share the table

    unknown = sorted(set(overrides) - set(THRESHOLDS) - set(SOAK_THRESHOLDS))
    if unknown:
        raise ConfigError(f"k2.toml [thresholds]: unknown threshold {unknown[0]!r} "
                          "(`k2 validate list` shows every threshold)", setting="thresholds")

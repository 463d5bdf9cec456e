"""Red paths of `k2 validate resilience` steps that judge plain measurements: settings and their defaults, the
checkout's docs and Compose files, and the probe run's /metrics, log and records. Each fault turns its step red
with the reason in the result."""

from __future__ import annotations

import dataclasses

from k2cli.checks.checklists import resilience
from k2cli.checks.probes.pipeline import make_trades
from k2cli.settings import Settings
from k2cli.verdict import Status
from tests.unit.redpath_support import assert_red, context, stream_run

SYMBOLS = Settings().exchange("binance").symbols

# what a healthy probe run's last scrape holds (k2 stream, binance, pings every 1 s, rotations every 2 s)
HEALTHY = {
    "binance_connection_rotations_total": 3, "binance_connection_lifetime_seconds": 1.9,
    "binance_pings_sent_total": 7, "binance_pong_timeouts_total": 0, "binance_last_pong_timestamp_seconds": 99.5,
    "serializer_cache_size": 1, "serializer_cache_evictions_total": 0, "process_memory_rss_bytes": 80 * 2**20,
    "process_memory_vms_bytes": 400 * 2**20, "memory_leak_detection_score": 0.1,
}


def exposition(**overrides: float | None) -> str:
    """Prometheus text of the healthy scrape with some families changed (None: not exported)."""
    values = {**HEALTHY, **overrides}
    return "".join(f"# TYPE {name} gauge\n{name} {value}\n" for name, value in values.items() if value is not None)


def probe_ctx(tmp_path, records: list[dict] | None = None, stderr: str = "rotating connection (scheduled)\n",
              **metrics: float | None):
    run = stream_run(exposition(**metrics), stderr, scraped_at=100.0)
    return context(tmp_path, {"probe": {"run": run, "records": records or [], "errors": []}})


def test_a_healthy_probe_passes_every_judged_step(tmp_path):
    ctx = probe_ctx(tmp_path, [r for s in SYMBOLS for r in make_trades(s, range(1, 30))])
    for measure in (resilience.measure_baseline, resilience.measure_rotation, resilience.measure_rotation_metrics,
                    resilience.measure_rotation_logged, resilience.measure_rotation_continuity,
                    resilience.measure_heartbeat, resilience.measure_heartbeat_metrics,
                    resilience.measure_cache_metrics, resilience.measure_memory_metrics):
        assert measure(ctx).status is Status.PASS, measure.__name__


def test_baseline_fails_without_the_leak_score(tmp_path):
    assert_red(resilience.measure_baseline(probe_ctx(tmp_path, memory_leak_detection_score=None)), Status.FAIL,
               "baseline metrics (RSS, leak score) are not exported", "leak detection score: None")


def test_too_few_rotations_fail(tmp_path):
    result = resilience.measure_rotation(probe_ctx(tmp_path, binance_connection_rotations_total=1))
    assert_red(result, Status.FAIL, "1 rotations at a 2 s interval")
    assert result.threshold == ">= 2"


def test_a_metric_family_not_exported_fails_its_visibility_step(tmp_path):
    for measure, family in ((resilience.measure_rotation_metrics, "binance_connection_lifetime_seconds"),
                            (resilience.measure_heartbeat_metrics, "binance_pong_timeouts_total"),
                            (resilience.measure_cache_metrics, "serializer_cache_evictions_total"),
                            (resilience.measure_memory_metrics, "process_memory_vms_bytes")):
        assert_red(measure(probe_ctx(tmp_path, **{family: None})), Status.FAIL, f"not exported: {family}")


def test_rotation_not_in_the_log_fails(tmp_path):
    assert_red(resilience.measure_rotation_logged(probe_ctx(tmp_path, stderr="connected\nsubscribed\n")),
               Status.FAIL, "no rotation appears in the stream's log")


def continuity(tmp_path, per_symbol: dict[str, list[int]]):
    return resilience.measure_rotation_continuity(
        probe_ctx(tmp_path, [r for s, seqs in per_symbol.items() for r in make_trades(s, seqs)]))


def test_a_trade_missing_across_a_rotation_fails(tmp_path):
    tape = {s: list(range(1, 30)) for s in SYMBOLS}
    tape[SYMBOLS[0]].remove(17)
    assert_red(continuity(tmp_path, tape), Status.FAIL, "1 gaps and 0 duplicate trades",
               f"{SYMBOLS[0]}: 1..29, 28 trades, 1 gaps")


def test_a_trade_repeated_across_a_rotation_fails(tmp_path):
    tape = {s: list(range(1, 30)) for s in SYMBOLS}
    tape[SYMBOLS[-1]].insert(17, 17)
    assert_red(continuity(tmp_path, tape), Status.FAIL, "0 gaps and 1 duplicate trades", "1 duplicates")


def test_a_symbol_missing_altogether_fails(tmp_path):
    tape = {s: list(range(1, 30)) for s in SYMBOLS[1:]}
    assert_red(continuity(tmp_path, tape), Status.FAIL,
               f"trades of {len(SYMBOLS) - 1} of {len(SYMBOLS)} symbols reached Kafka")


def test_heartbeat_fails_on_a_pong_timeout_or_no_pong_at_all(tmp_path):
    assert_red(resilience.measure_heartbeat(probe_ctx(tmp_path, binance_pong_timeouts_total=2)), Status.FAIL,
               "2 pong timeouts")
    assert_red(resilience.measure_heartbeat(probe_ctx(tmp_path, binance_last_pong_timestamp_seconds=None)),
               Status.FAIL, "last pong never", "no pong recorded")
    stale = probe_ctx(tmp_path, binance_last_pong_timestamp_seconds=60.0)  # 40 s before the scrape: pings stopped
    assert_red(resilience.measure_heartbeat(stale), Status.FAIL, "last pong 40.0 s old")


def test_too_few_pongs_fail(tmp_path):
    result = resilience.measure_heartbeat(probe_ctx(tmp_path, binance_pings_sent_total=2))
    assert_red(result, Status.FAIL, "2 pings, all answered")
    assert result.threshold == ">= 3"


def test_tls_verification_off_fails_and_a_plain_url_warns(tmp_path):
    assert_red(resilience.measure_tls_default(context(tmp_path, ssl_verify=False)), Status.FAIL,
               "TLS verification is switched off here (K2_SSL_VERIFY=false)")
    plain = {**Settings().exchanges}
    plain["binance"] = dataclasses.replace(plain["binance"], url="ws://127.0.0.1:8765/ws")
    assert_red(resilience.measure_tls_default(context(tmp_path, exchanges=plain)), Status.WARN,
               "ws://127.0.0.1:8765/ws is not wss://")


def test_a_default_other_than_the_seeds_fails_its_config_step(tmp_path):
    for measure, threshold, text in (
            (resilience.measure_cache_config, "config_cache_max_size", "serializer_cache_max_size defaults to 10"),
            (resilience.measure_idle_config, "config_idle_timeout_s", "idle_timeout defaults to 30.0"),
            (resilience.measure_heartbeat_config, "config_pong_timeout_s", "pong_timeout defaults to 10.0")):
        assert measure(context(tmp_path)).status is Status.PASS, measure.__name__
        assert_red(measure(context(tmp_path, thresholds={threshold: 7})), Status.FAIL, text, "the seed asks for 7")


def test_a_compose_file_with_another_idle_timeout_fails(tmp_path, monkeypatch):
    (tmp_path / "docker-compose.yml").write_text("services:\n  stream:\n    environment:\n"
                                                 "      K2_IDLE_TIMEOUT: \"30\"\n      K2_IDLE_TIMEOUT: \"90\"\n")
    monkeypatch.setattr(resilience, "source_root", lambda: tmp_path)
    assert_red(resilience.measure_idle_compose(context(tmp_path)), Status.FAIL,
               "sets K2_IDLE_TIMEOUT to something other than 30", "docker-compose.yml:5")


def test_docs_that_never_mention_a_setting_fail(tmp_path, monkeypatch):
    told = [s for s in resilience.DOC_SETTINGS if s != "K2_PONG_TIMEOUT"]
    (tmp_path / "README.md").write_text("".join(f"- `{name}`: ...\n" for name in told))
    monkeypatch.setattr(resilience, "source_root", lambda: tmp_path)
    result = resilience.measure_docs(context(tmp_path))
    assert_red(result, Status.FAIL, "the documentation never mentions K2_PONG_TIMEOUT")
    assert result.measured == len(told)

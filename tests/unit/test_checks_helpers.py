"""Pure helpers of the checklists: statistics lookup, query row types, counter rates, alert-rule limits."""

import pytest

from k2cli.checks.checklists import e2e, resilience, tech_debt
from k2cli.checks.probes.proc import StepError
from k2cli.trade import validate_trade


def test_stat_reads_the_consumer_block_and_names_missing_figures():
    stats = {"messages_consumed": 10, "messages_written": 9, "dlq_entries": 1, "throughput_msg_per_sec": 5.5}
    assert e2e.stat(stats, "consumed") == 10 and e2e.stat(stats, "dead_lettered") == 1
    assert e2e.stat({"statistics": stats}, "throughput") == 5.5
    with pytest.raises(StepError, match="no 'sequence_gaps'"):
        e2e.stat(stats, "gaps")


def test_micros_parses_iso_and_keeps_ints():
    assert e2e.micros("2026-01-13T15:30:45.123456Z") == 1768318245123456
    assert e2e.micros("2026-01-13T15:30:45.123456+00:00") == 1768318245123456
    assert e2e.micros(1768318245123456) == 1768318245123456
    assert e2e.micros("yesterday") is None and e2e.micros(None) is None


def query_row(**overrides):
    row = {"message_id": "6f1c1a7e-6a43-4a53-9a52-0c4b9b0c1f11", "trade_id": "BINANCE-1", "symbol": "BTCUSDT",
           "exchange": "BINANCE", "asset_class": "crypto", "timestamp": "2026-01-13T15:30:45.123456Z",
           "price": "16500.12345678", "quantity": "0.001", "currency": "USDT", "side": "BUY",
           "trade_conditions": [], "source_sequence": 1, "ingestion_timestamp": "2026-01-13T15:30:45.200000Z",
           "platform_sequence": None, "vendor_data": {"base_asset": "BTC"}}
    row.update(overrides)
    return row


def test_row_problems_demand_exact_decimals_and_valid_values():
    assert e2e.row_problems(query_row()) == []
    assert any("float" in p for p in e2e.row_problems(query_row(price=16500.12)))
    assert any(p.startswith("side:") for p in e2e.row_problems(query_row(side="HOLD")))
    assert any(p.startswith("timestamp:") for p in e2e.row_problems(query_row(timestamp="not a time")))


def test_counter_rate_uses_raw_samples_from_the_last_flat_point():
    series = [({}, [(0.0, 0.0), (5.0, 0.0), (10.0, 1000.0), (15.0, 2000.0)])]
    assert e2e.counter_rate(series) == (2000.0, 10.0, 3)
    assert e2e.counter_rate([({}, [(0.0, 5.0)])]) == (0.0, 0.0, 0)
    two = series + [({"topic": "b"}, [(0.0, 0.0), (10.0, 500.0)])]
    assert e2e.counter_rate(two)[0] == 2500.0


def test_gaps_in_arrival_order_and_poison_recognition():
    assert e2e._gaps_in_order([1, 2, 5, 6, 9]) == 2
    assert e2e._gaps_in_order([3, 2, 1]) == 0  # going back is not a gap
    assert e2e.is_poison(e2e.POISON_PREFIX + b"abc") and not e2e.is_poison(b"\x00\x00\x00\x00\x01")
    assert not e2e.is_poison(None)


def test_rule_limit_reads_the_comparison_of_an_alert_expression():
    assert resilience.rule_limit("process_memory_rss_bytes > 400 * 1024 * 1024 and on (instance) x",
                                 "process_memory_rss_bytes") == 400 * 2**20
    assert resilience.rule_limit("memory_leak_detection_score > 0.8", "memory_leak_detection_score") == 0.8
    assert resilience.rule_limit("k2_consumer_total_lag_messages > 10000", "k2_consumer_total_lag_messages") == 10000
    assert resilience.rule_limit("rate(x[5m]) > 3", "process_memory_rss_bytes") is None
    assert resilience.rule_limit("process_memory_rss_bytes > __import__('os')", "process_memory_rss_bytes") is None


def test_unit_area_keywords_match_words_not_substrings():
    assert resilience._mentions("tests.unit.test_session.test_ping_loop_sends", ("ping",))
    assert not resilience._mentions("tests.unit.test_x.test_dropping_values", ("ping",))
    assert resilience._mentions("tests.unit.test_serde.test_lru_evicts", ("lru", "evict"))


def test_edge_records_are_valid_v2_trades():
    for record in tech_debt.edge_records():
        assert validate_trade(record)["price"] == record["price"]

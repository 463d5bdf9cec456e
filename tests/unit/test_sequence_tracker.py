"""Sequence tracker: every event reachable, only gaps counted, keys isolated."""

import pytest

from k2cli.reliability.sequence import SequenceEvent, SequenceTracker, describe_group, grouped

S = 1_000_000  # one second in µs
T0 = 1_700_000_000 * S


def run(tracker, seqs, exchange="BINANCE", symbol="BTCUSDT", step=S):
    return [tracker.check(exchange, symbol, s, T0 + i * step) for i, s in enumerate(seqs)]


def test_contiguous_sequences_are_ok():
    t = SequenceTracker()
    assert run(t, [1, 2, 3, 4]) == [SequenceEvent.OK] * 4
    assert t.stats.gaps == 0


def test_small_and_large_gaps_counted_with_missing_numbers():
    t = SequenceTracker(gap_large_threshold=10)
    assert run(t, [1, 2, 4, 15, 27]) == [SequenceEvent.OK, SequenceEvent.OK, SequenceEvent.SMALL_GAP,
                                         SequenceEvent.SMALL_GAP, SequenceEvent.LARGE_GAP]
    # 4 after 2: 1 missing; 15 after 4: 10 missing (not more than 10: small); 27 after 15: 11 missing (large)
    assert t.stats.gaps == 3
    assert t.stats.missing == 1 + 10 + 11
    assert t.stats.events["LARGE_GAP"] == 1


def test_out_of_order_keeps_high_water_mark_and_is_not_a_gap():
    t = SequenceTracker()
    assert run(t, [1, 2, 4, 3, 5]) == [SequenceEvent.OK, SequenceEvent.OK, SequenceEvent.SMALL_GAP,
                                       SequenceEvent.OUT_OF_ORDER, SequenceEvent.OK]
    assert t.last("BINANCE", "BTCUSDT") == 5
    assert t.stats.gaps == 1


def test_duplicate():
    t = SequenceTracker()
    assert run(t, [7, 8, 8]) == [SequenceEvent.OK, SequenceEvent.OK, SequenceEvent.DUPLICATE]
    assert t.stats.events["DUPLICATE"] == 1 and t.stats.gaps == 0


def test_reset_after_quiet_period_rebases_the_key():
    t = SequenceTracker(reset_quiet_seconds=60)
    assert t.check("KRAKEN", "BTCUSD", 10_000, T0) == SequenceEvent.OK
    assert t.check("KRAKEN", "BTCUSD", 1, T0 + 18 * 3600 * S) == SequenceEvent.RESET
    assert t.last("KRAKEN", "BTCUSD") == 1
    assert t.check("KRAKEN", "BTCUSD", 2, T0 + 18 * 3600 * S + 1) == SequenceEvent.OK
    assert t.stats.events["RESET"] == 1 and t.stats.gaps == 0


def test_same_drop_without_quiet_period_is_out_of_order():
    t = SequenceTracker(reset_quiet_seconds=60)
    t.check("KRAKEN", "BTCUSD", 10_000, T0)
    assert t.check("KRAKEN", "BTCUSD", 1, T0 + 30 * S) == SequenceEvent.OUT_OF_ORDER
    assert t.last("KRAKEN", "BTCUSD") == 10_000


def test_small_drop_after_quiet_period_is_not_a_reset():
    t = SequenceTracker(reset_quiet_seconds=60)
    t.check("KRAKEN", "BTCUSD", 10_000, T0)
    assert t.check("KRAKEN", "BTCUSD", 9_000, T0 + 3600 * S) == SequenceEvent.OUT_OF_ORDER


def test_null_sequence_is_not_tracked():
    t = SequenceTracker()
    assert t.check("BINANCE", "BTCUSDT", None, T0) is None
    assert len(t) == 0


def test_keys_are_isolated_by_exchange_and_symbol():
    t = SequenceTracker()
    t.check("BINANCE", "BTCUSDT", 100, T0)
    t.check("BINANCE", "ETHUSDT", 5, T0)
    t.check("KRAKEN", "BTCUSDT", 1, T0)
    assert t.check("BINANCE", "BTCUSDT", 101, T0 + 1) == SequenceEvent.OK
    assert t.check("BINANCE", "ETHUSDT", 6, T0 + 1) == SequenceEvent.OK
    assert t.check("KRAKEN", "BTCUSDT", 2, T0 + 1) == SequenceEvent.OK


def test_check_many_returns_only_events_in_order():
    t = SequenceTracker()
    ex = ["BINANCE"] * 6
    sym = ["BTCUSDT", "BTCUSDT", "ETHUSDT", "BTCUSDT", "BTCUSDT", "BTCUSDT"]
    seq = [1, 2, 1, 5, 5, None]
    ts = [T0 + i for i in range(6)]
    events = t.check_many(ex, sym, seq, ts)
    assert [(e.event, e.symbol, e.sequence, e.last, e.missing) for e in events] == [
        (SequenceEvent.SMALL_GAP, "BTCUSDT", 5, 2, 2), (SequenceEvent.DUPLICATE, "BTCUSDT", 5, 5, 0)]
    assert "5 after 2 (2 missing)" in events[0].describe()


def test_key_count_is_bounded():
    t = SequenceTracker(max_keys=3)
    for i in range(10):
        t.check("X", f"S{i}", 1, T0)
    assert len(t) == 3


def test_stress_ten_thousand_contiguous():
    t = SequenceTracker()
    assert t.check_many(["B"] * 10_000, ["S"] * 10_000, list(range(10_000)), [T0] * 10_000) == []


@pytest.mark.parametrize("kwargs", [{"gap_large_threshold": 0}, {"reset_ratio": 1.5}, {"max_keys": 0}])
def test_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        SequenceTracker(**kwargs)


def test_interleaved_sequence_events_make_one_line_per_key_and_event():
    tracker = SequenceTracker()
    seqs = [s for p in range(3) for s in range(p, 30, 3)]  # one symbol over 3 partitions, read partition by partition
    results = tracker.check_many(["BINANCE"] * 30, ["BTCUSDT"] * 30, seqs, [1_000 + s for s in seqs])
    groups = grouped(results)
    assert {k: len(v) for k, v in groups.items()} == {("BINANCE", "BTCUSDT", SequenceEvent.SMALL_GAP): 9,
                                                    ("BINANCE", "BTCUSDT", SequenceEvent.OUT_OF_ORDER): 18}
    assert describe_group(groups["BINANCE", "BTCUSDT", SequenceEvent.SMALL_GAP]) == (
        "SMALL_GAP BINANCE/BTCUSDT: 9 times in one batch (18 missing), first: sequence 3 after 0")
    alone = results[:1]
    assert describe_group(alone) == alone[0].describe() == "SMALL_GAP BINANCE/BTCUSDT: sequence 3 after 0 (2 missing)"

"""The fault suite's tape oracle with plain values: loss at the end of a stream and a missing symbol are seen."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.oracle import GRACE_US, count_against_tape, tape_gaps

T0 = 1_700_000_000_000_000  # µs
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def make_tape(per_symbol: int = 100) -> dict[str, list[dict[str, Any]]]:
    """200 trades over two symbols, alternating, 10 ms apart; seq 1..per_symbol per symbol."""
    tape: dict[str, list[dict[str, Any]]] = {s: [] for s in SYMBOLS}
    for i in range(per_symbol * len(SYMBOLS)):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        seq = i // len(SYMBOLS) + 1
        tape[symbol].append({"symbol": symbol, "seq": seq, "ts_us": T0 + i * 10_000, "price": f"{100 + seq}.01",
                             "qty": "0.50000000", "side": "buy" if seq % 2 else "sell"})
    return tape


def rows_of(tape: dict[str, list[dict[str, Any]]], symbol: str, seqs: range | list[int]) -> list[dict[str, Any]]:
    """The Iceberg rows the stream would write for these trades of the tape."""
    by_seq = {t["seq"]: t for t in tape[symbol]}
    return [{"symbol": symbol, "source_sequence": s, "price": by_seq[s]["price"], "quantity": by_seq[s]["qty"],
             "side": by_seq[s]["side"].upper()} for s in seqs]


def after_all(tape: dict[str, list[dict[str, Any]]]) -> int:
    """A stop time well after the last trade of the tape."""
    return max(t["ts_us"] for trades in tape.values() for t in trades) + 2 * GRACE_US


def test_iceberg_holding_only_the_first_btc_trades_is_loss_of_the_rest_and_of_eth():
    tape = make_tape()
    count = count_against_tape(tape, rows_of(tape, "BTCUSDT", range(1, 61)), symbols=SYMBOLS, until_us=after_all(tape))
    assert (count.produced, count.rows, count.lost, count.duplicates, count.unexpected) == (200, 60, 140, 0, 0)
    assert not count.exact
    assert count.detail == ["BTCUSDT: 40 of 100 lost, first [61, 62, 63, 64, 65], last 100",
                            "ETHUSDT: 100 of 100 lost, first [1, 2, 3, 4, 5], last 100"]


def test_every_trade_once_is_exact():
    tape = make_tape()
    rows = rows_of(tape, "BTCUSDT", range(1, 101)) + rows_of(tape, "ETHUSDT", range(1, 101))
    count = count_against_tape(tape, rows, symbols=SYMBOLS, until_us=after_all(tape))
    assert (count.produced, count.rows, count.lost, count.duplicates, count.unexpected) == (200, 200, 0, 0, 0)
    assert count.exact


def test_a_configured_symbol_the_simulator_never_sent_is_reported():
    tape = make_tape()
    rows = rows_of(tape, "BTCUSDT", range(1, 101)) + rows_of(tape, "ETHUSDT", range(1, 101))
    count = count_against_tape(tape, rows, symbols=(*SYMBOLS, "SOLUSDT"), until_us=after_all(tape))
    assert count.missing_symbols == ["SOLUSDT"] and count.lost == 0 and not count.exact


def test_trades_after_the_stop_are_not_expected_and_the_grace_window_is_optional():
    tape = make_tape()
    stop = T0 + 995_000 + GRACE_US  # before the grace window: trades 0..99 of the tape, seq 1..50 per symbol
    rows = rows_of(tape, "BTCUSDT", range(1, 51)) + rows_of(tape, "ETHUSDT", range(1, 51))
    count = count_against_tape(tape, rows, symbols=SYMBOLS, until_us=stop)
    assert (count.produced, count.lost) == (100, 0) and count.exact
    rows += rows_of(tape, "BTCUSDT", range(51, 56))  # five of the grace window did arrive: produced, and exact
    count = count_against_tape(tape, rows, symbols=SYMBOLS, until_us=stop)
    assert (count.produced, count.rows, count.lost) == (105, 105, 0) and count.exact
    count = count_against_tape(tape, rows_of(tape, "BTCUSDT", range(1, 50)) + rows_of(tape, "ETHUSDT", range(1, 51)),
                               symbols=SYMBOLS, until_us=stop)
    assert count.lost == 1 and count.detail == ["BTCUSDT: 1 of 50 lost, first [50], last 50"]


def test_a_lost_trade_in_the_middle_a_duplicate_and_a_changed_price_are_each_counted():
    tape = make_tape()
    rows = rows_of(tape, "BTCUSDT", [s for s in range(1, 101) if s != 40]) + rows_of(tape, "ETHUSDT", range(1, 101))
    rows.append(dict(rows[0]))
    rows[5] = {**rows[5], "price": "1.00"}
    count = count_against_tape(tape, rows, symbols=SYMBOLS, until_us=after_all(tape))
    assert (count.lost, count.duplicates, count.unexpected) == (1, 1, 1) and not count.exact


def test_rows_of_a_symbol_nobody_sent_are_unexpected():
    tape = make_tape()
    rows = rows_of(tape, "BTCUSDT", range(1, 101)) + rows_of(tape, "ETHUSDT", range(1, 101))
    rows.append({**rows[0], "symbol": "XRPUSDT"})
    count = count_against_tape(tape, rows, symbols=SYMBOLS, until_us=after_all(tape))
    assert count.unexpected == 1 and not count.exact


def test_a_stop_time_is_required():
    with pytest.raises(ValueError, match="until_us"):
        count_against_tape(make_tape(), [], symbols=SYMBOLS, until_us=0)


def test_tape_gaps_counts_skipped_ids_in_the_covered_part():
    tape = make_tape()
    tape["BTCUSDT"] = [t for t in tape["BTCUSDT"] if t["seq"] not in (10, 20, 90)]
    rows = rows_of(tape, "BTCUSDT", [t["seq"] for t in tape["BTCUSDT"] if t["seq"] <= 50])
    assert tape_gaps(tape, rows) == 2

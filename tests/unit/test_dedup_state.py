"""Trade-id dedup: the id ranges, the summary codec, and the batch filter on plain values."""

from __future__ import annotations

import pyarrow as pa
import pytest

from k2cli import trade
from k2cli.consume.dedup import Deduplicator
from k2cli.lake import dedupstate as dd


def test_runs_of_sorted_ids():
    assert dd.runs([]) == []
    assert dd.runs([5]) == [(5, 5)]
    assert dd.runs([1, 2, 3, 7, 8, 10]) == [(1, 3), (7, 8), (10, 10)]
    assert dd.runs([1, 1, 2]) == [(1, 2)]


def test_union_joins_overlapping_and_adjacent_ranges():
    assert dd.union([(1, 3), (10, 12)], [(4, 5)]) == [(1, 5), (10, 12)]
    assert dd.union([(1, 3)], [(2, 9), (20, 20)]) == [(1, 9), (20, 20)]
    assert dd.union([], [(5, 6), (1, 2)]) == [(1, 2), (5, 6)]
    assert dd.union([(1, 2)], []) == [(1, 2)]
    assert dd.union([(7, 9)], [(1, 2), (4, 5)]) == [(1, 2), (4, 5), (7, 9)]  # late, older ids


def test_union_forgets_the_lowest_ranges_beyond_the_bound():
    assert dd.union([(1, 1), (3, 3)], [(5, 5), (7, 7)], max_ranges=3) == [(3, 3), (5, 5), (7, 7)]


def test_contains():
    ranges = [(1, 3), (7, 7), (10, 20)]
    assert [dd.contains(ranges, i) for i in (0, 1, 3, 4, 7, 8, 10, 20, 21)] == [
        False, True, True, False, True, False, True, True, False]
    assert not dd.contains([], 1)


def test_recent_window_keeps_the_newest_once():
    assert dd.append_recent(["a", "b"], ["b", "c", "d"], limit=3) == ["b", "c", "d"]
    assert dd.append_recent([], ["x", "x"]) == ["x"]


def test_state_merge_is_a_union_and_leaves_the_original():
    base = dd.DedupState({("BINANCE", "BTCUSDT"): [(1, 10)]}, {("KRAKEN", "BTC/USD"): ["aa"]})
    delta = dd.DedupState({("BINANCE", "BTCUSDT"): [(11, 12)], ("BINANCE", "ETHUSDT"): [(5, 5)]},
                          {("KRAKEN", "BTC/USD"): ["bb"]})
    merged = base.merged(delta)
    assert merged.ids == {("BINANCE", "BTCUSDT"): [(1, 12)], ("BINANCE", "ETHUSDT"): [(5, 5)]}
    assert merged.recent == {("KRAKEN", "BTC/USD"): ["aa", "bb"]}
    assert base.ids == {("BINANCE", "BTCUSDT"): [(1, 10)]}


def test_codec_round_trip_and_text():
    state = dd.DedupState({("BINANCE", "BTCUSDT"): [(1, 3), (9, 9)]}, {("KRAKEN", "XBT/USD"): ["0a1b2c3d4e5f"]})
    text = dd.encode_state(state)
    assert text == ('{"BINANCE":{"BTCUSDT":{"ids":[[1,3],[9,9]]}},'
                    '"KRAKEN":{"XBT/USD":{"recent":["0a1b2c3d4e5f"]}}}')
    assert dd.decode_state(text) == state


@pytest.mark.parametrize("text", [None, "", "not json", "[1]", '{"B": 3}', '{"B": {"S": 4}}'])
def test_codec_tolerates_what_k2_did_not_write(text):
    assert dd.decode_state(text) == dd.DedupState()


def test_codec_keeps_the_parts_that_parse():
    got = dd.decode_state('{"B":{"S":{"ids":[[5,9],["x",1],[3,4],[8,2]],"recent":["h"]}}}')
    assert got.ids == {("B", "S"): [(3, 9)]}
    assert got.recent == {("B", "S"): ["h"]}


def test_state_from_summaries_takes_the_newest_carrying_one():
    newest = {"k2.offsets": "{}"}
    older = {dd.DEDUP_KEY: '{"B":{"S":{"ids":[[1,2]]}}}'}
    oldest = {dd.DEDUP_KEY: '{"B":{"S":{"ids":[[1,1]]}}}'}
    assert dd.state_from_summaries([newest, None, older, oldest]).ids == {("B", "S"): [(1, 2)]}
    assert dd.state_from_summaries([newest]) == dd.DedupState()


def _table(rows: list[tuple[str, str, str, int | None]]) -> pa.Table:
    """Trades from (exchange, symbol, trade_id, source_sequence)."""
    recs = [trade.new_trade(trade_id=tid, symbol=sym, exchange=ex, timestamp_us=1_700_000_000_000_000 + i,
                            price="1.5", quantity="2", currency="USD", side="BUY",
                            ingestion_timestamp_us=1_700_000_000_000_000 + i, source_sequence=seq)
            for i, (ex, sym, tid, seq) in enumerate(rows)]
    return pa.Table.from_pylist(recs, schema=trade.arrow_schema())


def _ids(table: pa.Table) -> list[str]:
    return table.column("trade_id").to_pylist()


def test_filter_drops_repeats_in_the_batch_and_remembers_ranges():
    d = Deduplicator()
    t = _table([("BINANCE", "BTCUSDT", f"BINANCE-{i}", i) for i in (1, 2, 2, 3, 5, 1)]
               + [("BINANCE", "ETHUSDT", "BINANCE-2", 2)])
    f = d.filter(t)
    assert _ids(f.table) == ["BINANCE-1", "BINANCE-2", "BINANCE-3", "BINANCE-5", "BINANCE-2"]
    assert f.table.column("symbol").to_pylist()[-1] == "ETHUSDT"
    assert f.keep.to_pylist() == [True, True, False, True, True, False, True]
    assert f.duplicates == {"BINANCE": 2}
    assert f.delta.ids == {("BINANCE", "BTCUSDT"): [(1, 3), (5, 5)], ("BINANCE", "ETHUSDT"): [(2, 2)]}
    assert d.state.ids == f.delta.ids


def test_filter_against_known_ids_keeps_late_older_ids_that_fill_holes():
    d = Deduplicator()
    d.load(dd.DedupState({("KRAKEN", "BTC/USD"): [(10, 20), (30, 40)]}))
    t = _table([("KRAKEN", "BTC/USD", f"KRAKEN-BTC/USD-{i}", i) for i in (41, 25, 20, 5, 30, 42)])
    f = d.filter(t)
    assert _ids(f.table) == ["KRAKEN-BTC/USD-41", "KRAKEN-BTC/USD-25", "KRAKEN-BTC/USD-5", "KRAKEN-BTC/USD-42"]
    assert f.duplicates == {"KRAKEN": 2}
    assert d.state.ids == {("KRAKEN", "BTC/USD"): [(5, 5), (10, 20), (25, 25), (30, 42)]}
    again = d.filter(t)  # the same batch again (a second producer): nothing is new
    assert again.table.num_rows == 0 and again.dropped == 6


def test_filter_without_duplicates_returns_the_table_as_it_is():
    d = Deduplicator()
    t = _table([("BINANCE", "BTCUSDT", f"BINANCE-{i}", i) for i in range(100, 110)])
    f = d.filter(t)
    assert f.keep is None and f.table is t and f.dropped == 0
    assert f.delta.ids == {("BINANCE", "BTCUSDT"): [(100, 109)]}


def test_ids_that_do_not_name_the_sequence_are_checked_by_trade_id():
    d = Deduplicator()
    # same sequence, other trade ids: other trades; same trade id without a sequence: the same trade
    t = _table([("BINANCE", "SOLUSDT", "BINANCE-7", 40), ("BINANCE", "SOLUSDT", "BINANCE-8", 40),
                ("KRAKEN", "XBT/USD", "KRAKEN-1-abc", None), ("KRAKEN", "XBT/USD", "KRAKEN-1-abc", None),
                ("KRAKEN", "XBT/USD", "KRAKEN-2-def", None)])
    f = d.filter(t)
    assert _ids(f.table) == ["BINANCE-7", "BINANCE-8", "KRAKEN-1-abc", "KRAKEN-2-def"]
    assert f.duplicates == {"KRAKEN": 1}
    assert f.delta.ids == {}
    assert f.delta.recent[("KRAKEN", "XBT/USD")] == [dd.id_hash("KRAKEN-1-abc"), dd.id_hash("KRAKEN-2-def")]
    later = d.filter(_table([("KRAKEN", "XBT/USD", "KRAKEN-2-def", None), ("BINANCE", "SOLUSDT", "BINANCE-7", 40)]))
    assert later.table.num_rows == 0 and later.duplicates == {"KRAKEN": 1, "BINANCE": 1}


def test_many_known_ranges_are_checked_id_by_id():
    d = Deduplicator()
    d.load(dd.DedupState({("B", "S"): [(i, i) for i in range(0, 400, 2)]}))
    t = _table([("B", "S", f"B-{i}", i) for i in range(0, 200)])
    f = d.filter(t)
    assert _ids(f.table) == [f"B-{i}" for i in range(1, 200, 2)]
    assert d.state.ids[("B", "S")] == [(0, 200)] + [(i, i) for i in range(202, 400, 2)]


def test_empty_batch():
    f = Deduplicator().filter(_table([]))
    assert f.table.num_rows == 0 and f.keep is None and f.dropped == 0

"""Where a restarted stream resumes: the highest id per symbol in the topic's tail (plain records)."""

from k2cli.stream.resume import chunk_starts, fold


def rec(symbol, seq, ts=1_000, exchange="BINANCE", rest=False):
    return {"symbol": symbol, "source_sequence": seq, "exchange": exchange, "timestamp": ts,
            "vendor_data": {"source": "rest"} if rest else {"is_buyer_maker": "true"}}


def test_the_highest_id_wins_and_backfilled_records_after_it_do_not_settle_a_symbol():
    found, settled = {}, set()
    fold([rec("BTCUSDT", 10, 5), rec("BTCUSDT", 12, 7), rec("ETHUSDT", 3, rest=True), rec("BTCUSDT", 11, 6)],
         "BINANCE", {"BTCUSDT", "ETHUSDT"}, found, settled)
    assert found == {"BTCUSDT": (12, 7), "ETHUSDT": (3, 1_000)}
    assert settled == {"BTCUSDT"}  # ETHUSDT's live records are further back


def test_other_exchanges_symbols_and_records_without_a_sequence_are_ignored():
    found, settled = {}, set()
    fold([rec("BTCUSDT", 99, exchange="KRAKEN"), rec("SOLUSDT", 5), {"symbol": "BTCUSDT", "exchange": "BINANCE"}],
         "BINANCE", {"BTCUSDT"}, found, settled)
    assert found == {} and settled == set()


def test_the_tail_is_read_backwards_in_chunks_within_the_bound():
    assert chunk_starts(0, 2_500, chunk=1_000, max_records=10_000) == [(1_500, 2_500), (500, 1_500), (0, 500)]
    assert chunk_starts(0, 50_000, chunk=1_000, max_records=2_000) == [(49_000, 50_000), (48_000, 49_000)]
    assert chunk_starts(40, 40) == []

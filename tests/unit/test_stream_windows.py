"""Gaps of a feed without trade ids (Kraken WS v1) by time window: the pure window logic, and the backfill filling
windows on plain values (a stand-in fetcher serving a fixed tape, a stand-in producer queue). The real REST
client, simulator and broker: tests/integration/test_complete_tape_kraken_v1.py."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from k2cli.exchanges.kraken import v1_key_time
from k2cli.exchanges.rest import RestGaveUp
from k2cli.kafka.v2encode import make_row_encoder
from k2cli.observe.metrics import StreamMetrics
from k2cli.stream.backfill import GapBackfill
from k2cli.stream.dedup import Deduplicator
from k2cli.stream.kafka_sink import KafkaSink
from k2cli.stream.resume import fold
from k2cli.stream.row_sink import RowSink
from k2cli.stream.summary import StreamSummary
from k2cli.stream.windows import Window, WindowTracker, merge, window_command
from tests.unit.test_backfill_scheduler import Queue  # the producer stand-in both backfill tests use

T0 = 1_700_000_000_000_000


def tid(us: int, n: int = 0) -> str:
    return f"KRAKEN-{us}-h{n}"


def test_a_v1_trade_id_carries_its_time():
    assert v1_key_time("KRAKEN-1700000000123456-0a1b2c3d4e5f") == 1_700_000_000_123_456


def test_a_reconnect_opens_a_window_from_the_last_trade_before_to_the_first_after():
    w = WindowTracker()
    w.closed({"BTCUSD": (100, 500), "ETHUSD": (120, 480)}, {})
    assert w.take() == [] and w.pending == {"BTCUSD": 500, "ETHUSD": 480}
    w.first_trades({"BTCUSD": 900})
    assert w.take() == [Window("BTCUSD", 500, 900)] and w.pending == {"ETHUSD": 480}
    w.first_trades({"ETHUSD": 470})  # the new connection replayed trades from before the break: nothing missed
    assert w.take() == [] and w.pending == {}


def test_a_rotation_leaves_a_window_only_when_the_new_connection_started_after_the_old_ones_last_trade():
    w = WindowTracker()
    w.closed({"BTCUSD": (100, 500), "ETHUSD": (100, 500)}, {"BTCUSD": 450, "ETHUSD": 700})
    assert w.take() == [Window("ETHUSD", 500, 700)] and w.pending == {}


def test_a_quiet_symbol_stays_pending_across_connections_that_did_not_deliver_it():
    w = WindowTracker()
    w.closed({"BTCUSD": (100, 500)}, {})
    w.closed({"ETHUSD": (600, 800)}, {})  # the next connection closed before BTCUSD traded again
    w.first_trades({"BTCUSD": 2_000, "ETHUSD": 900})
    assert w.take() == [Window("BTCUSD", 500, 2_000), Window("ETHUSD", 800, 900)]


def test_a_connection_that_closes_before_the_poll_still_ends_the_window_with_its_first_trade():
    w = WindowTracker()
    w.closed({"BTCUSD": (100, 500)}, {})
    w.closed({"BTCUSD": (700, 800)}, {})
    assert w.take() == [Window("BTCUSD", 500, 700)] and w.pending == {"BTCUSD": 800}


def test_a_restart_resumes_from_the_newest_time_in_the_topic_and_a_stop_ends_what_is_pending():
    w = WindowTracker()
    w.resumed({"BTCUSD": 500})
    w.first_trades({"BTCUSD": 9_000})
    assert w.take() == [Window("BTCUSD", 500, 9_000)]
    w.closed({"BTCUSD": (9_000, 9_500)}, {})
    w.stop(12_000)
    assert w.take() == [Window("BTCUSD", 9_500, 12_000)] and w.pending == {}


def test_the_stop_of_the_stream_opens_no_window_but_ends_one_already_open():
    w = WindowTracker()
    w.closed({"BTCUSD": (100, 500)}, {})
    w.closed({"BTCUSD": (700, 800), "ETHUSD": (100, 900)}, {}, opens=False)
    assert w.take() == [Window("BTCUSD", 500, 700)] and w.pending == {}


def test_close_windows_of_one_symbol_are_merged():
    out = merge([Window("A", 0, 10), Window("B", 5, 8), Window("A", 12, 20), Window("A", 100, 110)], coalesce_us=5)
    assert out == [Window("A", 0, 20), Window("B", 5, 8), Window("A", 100, 110)]


def test_the_fill_command_names_the_window_with_its_edges():
    cmd = window_command("kraken", "BTC/USD", Window("BTCUSD", T0, T0 + 1_500_000))
    assert cmd == ("k2 backfill kraken --symbol BTC/USD --since 2023-11-14T22:13:20.000000Z "
                   "--until 2023-11-14T22:13:21.500001Z")


def test_a_restart_reads_the_newest_time_and_the_ids_from_records_without_ids():
    def rec(symbol, ts, trade_id, rest=False):
        return {"symbol": symbol, "source_sequence": None, "exchange": "KRAKEN", "timestamp": ts,
                "trade_id": trade_id, "vendor_data": {"source": "rest"} if rest else {}}

    found, settled, newest = {}, set(), {}
    fold([rec("BTCUSD", 5, "a"), rec("BTCUSD", 7, "b"), rec("BTCUSD", 7, "c"), rec("ETHUSD", 3, "d", rest=True),
          rec("BTCUSD", 6, "e")], "KRAKEN", {"BTCUSD", "ETHUSD"}, found, settled, newest)
    assert found == {} and newest == {"BTCUSD": (7, {"a", "b", "c", "e"}), "ETHUSD": (3, {"d"})}
    assert settled == {"BTCUSD"}


# ------------------------------------------------------------------ the backfill filling windows


def row(us: int, n: int = 0) -> tuple:
    return ("m", tid(us, n), "BTCUSD", "KRAKEN", "crypto", us, Decimal("1.5"), Decimal("2"), "USD", "BUY", (), None,
            0, None, (("source", "rest"),))


class Tape:
    """The exchange's history by time: one trade every 10 µs from T0, and two at T0 + 500."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.trades = sorted([row(T0 + k) for k in range(0, 2_000, 10)] + [row(T0 + 500, 1)], key=lambda r: r[5])
        self.calls: list[tuple[str, int, int]] = []

    async def fetch_window(self, symbol, since_us, until_us):
        self.calls.append((symbol, since_us, until_us))
        if self.fail:
            raise RestGaveUp("HTTP 400", 0)
        rows = [r for r in self.trades if since_us <= r[5] < until_us]
        for i in range(0, len(rows), 4):  # pages of 4
            yield rows[i:i + 4]

    async def aclose(self):
        pass


def built(tape: Tape | None, max_trades: int = 1_000):
    dedup, queue = Deduplicator(False), Queue()
    summary = StreamSummary(exchange="kraken", topic="t", url="u", symbols=["BTC/USD"])
    rows = RowSink(KafkaSink(queue, lambda key, value, stage: None), make_row_encoder(), b"H", 10_000)  # type: ignore[arg-type]
    bf = GapBackfill(exchange="kraken", dedup=dedup, summary=summary, metrics=StreamMetrics("kraken"),
                     symbol_label=str, max_trades=max_trades, fetcher=tape, rows=rows,
                     subscription={"BTCUSD": "BTC/USD"})
    bf.windows, bf.key_time = WindowTracker(), v1_key_time
    return bf, dedup, queue, summary


def live(dedup: Deduplicator, conn: int, times: list[int]) -> None:
    for us in times:
        dedup.accept(conn, "BTCUSD", tid(us))


def closed(bf: GapBackfill, dedup: Deduplicator, conn: int) -> None:
    """What the stream's session events do when a connection closes (not at the stop)."""
    bf.connection_closed(conn, stopping=False)
    dedup.forget(conn)


def test_a_reconnects_window_produces_only_the_trades_the_live_stream_missed():
    tape = Tape()
    bf, dedup, queue, summary = built(tape)
    live(dedup, 1, [T0 + k for k in range(0, 410, 10)])  # connection 1 up to T0+400
    closed(bf, dedup, 1)
    live(dedup, 2, [T0 + k for k in range(900, 1_000, 10)])  # connection 2 from T0+900
    asyncio.run(bf.step())
    assert tape.calls == [("BTC/USD", T0 + 400, T0 + 901)]  # both edges included
    assert len(queue.records) == 50 == summary.trades_backfilled  # 410..890 (49) and the second trade at T0+500
    assert (summary.gaps_seen, summary.gaps_filled, summary.gaps_unfilled) == (1, 1, 0)
    assert dedup.backfill_duplicates == 2  # the edge trades the live stream delivered
    assert not dedup.accept(2, "BTCUSD", tid(T0 + 410))  # a late live copy of a backfilled trade is dropped


def test_a_window_wider_than_the_limit_is_reported_unfilled_from_where_it_stopped_and_the_stream_goes_on():
    bf, dedup, queue, summary = built(Tape(), max_trades=10)
    live(dedup, 1, [T0])
    closed(bf, dedup, 1)
    live(dedup, 2, [T0 + 1_500])
    asyncio.run(bf.step())
    assert summary.gaps_unfilled == 1 and summary.gaps_filled == 0 and 10 <= summary.trades_backfilled <= 12
    gap = summary.unfilled_gaps[0]
    assert gap["symbol"] == "BTCUSD" and T0 < gap["since_us"] < T0 + 1_500 and gap["until_us"] == T0 + 1_500
    assert "K2_BACKFILL_MAX_TRADES=10" in gap["why"]


def test_a_failed_fetch_or_backfill_off_counts_the_window_unfilled_or_seen():
    bf, dedup, queue, summary = built(Tape(fail=True))
    live(dedup, 1, [T0])
    closed(bf, dedup, 1)
    live(dedup, 2, [T0 + 100])
    asyncio.run(bf.step())
    assert summary.gaps_unfilled == 1 and "gave up" in summary.unfilled_gaps[0]["why"] and not queue.records
    bf, dedup, queue, summary = built(None)
    live(dedup, 1, [T0])
    closed(bf, dedup, 1)
    live(dedup, 2, [T0 + 100])
    asyncio.run(bf.step())
    assert summary.gaps_seen == 1 and summary.gaps_filled == summary.gaps_unfilled == 0 and not queue.records


def test_at_the_stop_a_window_still_open_is_filled_up_to_now():
    tape = Tape()
    bf, dedup, queue, summary = built(tape)
    live(dedup, 1, [T0 + 1_900])
    closed(bf, dedup, 1)  # the connection died; no other delivered before the stop
    asyncio.run(bf.settle(5))
    assert len(tape.calls) == 1 and tape.calls[0][1] == T0 + 1_900 and summary.gaps_filled == 1
    assert summary.trades_backfilled == 9  # 1910..1990

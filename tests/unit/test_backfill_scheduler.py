"""The stream's gap backfill on plain values: which gaps it fetches, in what order, what it produces and counts.

The fetcher is a stand-in serving a fixed tape of rows (the exchange's history) and the producer a stand-in queue;
the real REST client, simulator and broker are exercised by tests/integration/test_stream_backfill.py."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from k2cli.exchanges.rest import RestGaveUp
from k2cli.kafka.v2encode import make_row_encoder
from k2cli.observe.metrics import StreamMetrics
from k2cli.stream.backfill import GapBackfill
from k2cli.stream.dedup import Deduplicator
from k2cli.stream.kafka_sink import KafkaSink
from k2cli.stream.row_sink import RowSink
from k2cli.stream.summary import StreamSummary


def row(symbol: str, k: int) -> tuple:
    return ("m", f"BINANCE-{k}", symbol, "BINANCE", "crypto", 1_700_000_000_000_000 + k, Decimal("1.5"),
            Decimal("2"), "USDT", "BUY", (), k, 0, None, (("source", "rest"),))


class Tape:
    """The exchange's history: every id except `skipped`; `fail` makes a call give up."""

    def __init__(self, skipped: frozenset[int] = frozenset(), fail: bool = False) -> None:
        self.skipped, self.fail = skipped, fail
        self.calls: list[tuple[str, int, int, int | None]] = []

    async def fetch_ids(self, symbol, from_id, to_id, *, after_us=None):
        self.calls.append((symbol, from_id, to_id, after_us))
        if self.fail:
            raise RestGaveUp("HTTP 400", 0)
        ids = [k for k in range(from_id, to_id + 1) if k not in self.skipped]
        for i in range(0, len(ids), 3):  # pages of 3
            yield [row(symbol, k) for k in ids[i:i + 3]]

    async def aclose(self):
        pass


class Queue:
    capacity = 10_000

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def try_produce(self, key, value):
        self.records.append((key, value))
        return True

    def poll(self, timeout=0.0):
        return 0

    @property
    def pending(self):
        return 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def built(tape: Tape | None, max_trades: int = 1_000):
    dedup, clock, queue = Deduplicator(True), Clock(), Queue()
    summary = StreamSummary(exchange="binance", topic="t", url="u", symbols=["S"])
    rows = RowSink(KafkaSink(queue, lambda key, value, stage: None), make_row_encoder(), b"H", 10_000)  # type: ignore[arg-type]
    bf = GapBackfill(exchange="binance", dedup=dedup, summary=summary, metrics=StreamMetrics("binance"),
                     symbol_label=str, max_trades=max_trades, fetcher=tape, rows=rows, clock=clock)
    return bf, dedup, clock, queue, summary


def judged(bf: GapBackfill, clock: Clock) -> None:
    """One look at the gaps now and one after their grace."""
    asyncio.run(bf.step())
    clock.now += 1.0
    asyncio.run(bf.step())


def produced_ids(queue: Queue) -> list[int]:
    """The source_sequence of each queued value (after the stand-in header H), decoded with fastavro."""
    import io

    import fastavro

    from k2cli import trade

    schema = fastavro.parse_schema(trade.avro_schema())
    return [fastavro.schemaless_reader(io.BytesIO(value[1:]), schema)["source_sequence"]  # type: ignore[call-arg,index]
            for _, value in queue.records]


def test_a_gap_is_fetched_after_its_grace_minus_what_live_trades_closed():
    tape = Tape()
    bf, dedup, clock, queue, summary = built(tape)
    for k in (1, 2, 9):
        dedup.accept(1, "S", k)
    asyncio.run(bf.step())
    assert tape.calls == [] and len(bf.waiting) == 1  # in its grace
    dedup.accept(2, "S", 3)  # a rotation's old connection delivers one of them
    clock.now = 1.0
    asyncio.run(bf.step())
    assert [c[1:3] for c in tape.calls] == [(4, 8)]
    assert produced_ids(queue) == [4, 5, 6, 7, 8]
    assert (summary.gaps_seen, summary.gaps_filled, summary.gaps_unfilled, summary.trades_backfilled) == (1, 1, 0, 5)
    assert not dedup.accept(1, "S", 6)  # a live copy of a backfilled trade is not produced again


def test_ids_the_exchange_never_printed_are_not_invented_nor_waited_for():
    tape = Tape(skipped=frozenset({5}))
    bf, dedup, clock, queue, summary = built(tape)
    for k in (1, 2, 3, 4, 6, 7, 10):
        dedup.accept(1, "S", k)
    judged(bf, clock)
    assert [c[1:3] for c in tape.calls] == [(5, 9)]  # two gaps, one fetch
    assert produced_ids(queue) == [8, 9]
    assert (summary.gaps_filled, summary.gap_ids_absent, summary.gaps_unfilled) == (2, 1, 0)
    assert bf.idle


def test_a_gap_wider_than_the_limit_is_reported_unfilled_and_not_fetched():
    tape = Tape()
    bf, dedup, clock, queue, summary = built(tape, max_trades=10)
    for k in (1, 50, 51, 55):
        dedup.accept(1, "S", k)
    judged(bf, clock)
    assert [c[1:3] for c in tape.calls] == [(52, 54)]
    assert (summary.gaps_seen, summary.gaps_filled, summary.gaps_unfilled) == (2, 1, 1)
    assert summary.unfilled_gaps[0]["first_id"] == 2 and summary.unfilled_gaps[0]["ids"] == 48
    assert "K2_BACKFILL_MAX_TRADES=10" in summary.unfilled_gaps[0]["why"]


def test_a_fetch_that_gives_up_leaves_its_gaps_unfilled_and_the_stream_goes_on():
    bf, dedup, clock, queue, summary = built(Tape(fail=True))
    for k in (1, 5):
        dedup.accept(1, "S", k)
    judged(bf, clock)
    assert (summary.gaps_unfilled, summary.trades_backfilled) == (1, 0)
    assert "gave up" in summary.unfilled_gaps[0]["why"]
    assert dedup.accept(1, "S", 6)


def test_with_backfill_off_gaps_are_only_counted():
    bf, dedup, clock, queue, summary = built(None)
    for k in (1, 5, 9):
        dedup.accept(1, "S", k)
    asyncio.run(bf.settle(5.0))  # the stop judges what is still in its grace
    assert (summary.gaps_seen, summary.gaps_filled, summary.gaps_unfilled, queue.records) == (2, 0, 0, [])


def test_the_stop_fills_what_is_waiting_without_its_grace():
    tape = Tape()
    bf, dedup, clock, queue, summary = built(tape)
    dedup.resume_from({"S": 10})
    dedup.accept(1, "S", 14)
    asyncio.run(bf.settle(5.0))
    assert produced_ids(queue) == [11, 12, 13] and summary.gaps_filled == 1

"""Column-wise sequence tracking of a batch gives exactly the events of checking it row by row."""

import random

import pyarrow as pa

from k2cli.consume.sequences import check_table
from k2cli.reliability.sequence import SequenceTracker

T0 = 1_767_225_600_000_000


def _table(rows: list[tuple[str, str, int | None, int]]) -> pa.Table:
    ex, sym, seq, ts = (list(c) for c in zip(*rows, strict=True))
    return pa.table({"exchange": ex, "symbol": sym, "source_sequence": pa.array(seq, pa.int64()),
                     "timestamp": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC"))})


def _batches(rng: random.Random) -> list[list[tuple[str, str, int | None, int]]]:
    """Batches of a few keys: mostly consecutive runs, with gaps, repeats, reordering, resets and nulls."""
    last = {("BINANCE", "BTCUSDT"): 0, ("BINANCE", "ETHUSDT"): 100, ("KRAKEN", "BTCUSDT"): 5_000}
    out, ts = [], T0
    for _ in range(6):
        rows = []
        for _ in range(rng.randint(0, 400)):
            key = rng.choice(list(last))
            r = rng.random()
            step = 1 if r < 0.99 else rng.choice([0, 2, 30, -3])
            last[key] = max(1, last[key] + step) if r > 0.002 else 1
            ts += rng.choice([1, 1, 1, 70_000_000])
            rows.append((*key, None if rng.random() < 0.01 else last[key], ts))
        out.append(rows)
    return out


def test_check_table_matches_row_by_row_checks():
    seen: dict[str, int] = {}
    for seed in range(30):
        column_wise, row_wise = SequenceTracker(), SequenceTracker()
        for rows in _batches(random.Random(seed)):
            got = check_table(column_wise, _table(rows)) if rows else []
            want = row_wise.check_many(*zip(*rows, strict=True)) if rows else []
            assert got == want
            assert column_wise._state == row_wise._state
        assert column_wise.stats == row_wise.stats
        for event, n in column_wise.stats.events.items():
            seen[event] = seen.get(event, 0) + n
    assert all(seen[e] for e in ("SMALL_GAP", "LARGE_GAP", "DUPLICATE", "OUT_OF_ORDER", "RESET"))


def test_consecutive_runs_only_move_the_tracker_on():
    t = SequenceTracker()
    assert check_table(t, _table([("B", "S", 1, T0), ("B", "X", 7, T0)])) == []
    rows = [("B", "S" if i % 2 else "X", 2 + i // 2 if i % 2 else 8 + i // 2, T0 + i) for i in range(10_000)]
    assert check_table(t, _table(rows)) == []
    assert (t.last("B", "S"), t.last("B", "X")) == (5_001, 5_007)

"""Sequence tracking of a batch column-wise: a key whose rows continue its sequence one by one costs no Python per row.

The rows of each (exchange, symbol) are taken in batch order (a stable sort by key); a key whose sequences all step
by one from where the tracker left it (or a new key, while the tracker has room) just moves the tracker on
(`SequenceTracker.advance`). The rows of every other
key (new, gapped, reordered, repeated) go through `SequenceTracker.check_many` in batch order, so the events are
exactly those of checking the whole batch row by row.
"""

from __future__ import annotations

from typing import Any

from k2cli.reliability.sequence import SequenceResult, SequenceTracker


def check_table(tracker: SequenceTracker, table: Any) -> list[SequenceResult]:
    """The non-OK sequence results of a batch's valid rows (a pyarrow Table), in row order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not table.num_rows:
        return []
    seq = table.column("source_sequence").combine_chunks()
    ts = table.column("timestamp").combine_chunks().cast(pa.int64())
    keys = pc.binary_join_element_wise(table.column("exchange").combine_chunks(),
                                       table.column("symbol").combine_chunks(), "\x00").dictionary_encode()
    names = [tuple(k.split("\x00", 1)) for k in keys.dictionary.to_pylist()]
    codes = keys.indices
    if seq.null_count:  # null sequences are not tracked
        valid = seq.is_valid()
        seq, ts, codes = pc.filter(seq, valid), pc.filter(ts, valid), pc.filter(codes, valid)
        if not len(seq):
            return []
    slow = _advance_runs(tracker, names, codes, seq, ts)
    if not slow:
        return []
    rows = pc.is_in(codes, value_set=pa.array(slow, codes.type))
    code_list = pc.filter(codes, rows).to_pylist()
    return tracker.check_many([names[c][0] for c in code_list], [names[c][1] for c in code_list],
                              pc.filter(seq, rows).to_pylist(), pc.filter(ts, rows).to_pylist())


def _advance_runs(tracker: SequenceTracker, names: list[Any], codes: Any, seq: Any, ts: Any) -> list[int]:
    """Move the tracker over every key whose rows step by one from its last sequence; the codes of the other keys."""
    import pyarrow as pa
    import pyarrow.compute as pc

    order = pc.sort_indices(codes)  # stable: each key's rows stay in batch order
    k, s = pc.take(codes, order), pc.take(seq, order)
    n = len(s)
    if n > 1:
        same = pc.equal(k[1:], k[:-1])
        changes = pc.indices_nonzero(pc.invert(same)).to_pylist()
        broken = pc.indices_nonzero(pc.and_(same, pc.not_equal(pc.subtract(s[1:], s[:-1]), 1)))
        bad = set(pc.unique(pc.take(k[1:], broken)).to_pylist())
    else:
        changes, bad = [], set()
    starts, ends = [0, *(c + 1 for c in changes)], [*changes, n - 1]
    top = pa.table({"k": codes, "t": ts}).group_by("k").aggregate([("t", "max")])
    max_ts = dict(zip(top.column("k").to_pylist(), top.column("t_max").to_pylist(), strict=True))
    slow: list[int] = []
    for code, first, last in zip(pc.take(k, starts).to_pylist(), pc.take(s, starts).to_pylist(),
                                 pc.take(s, ends).to_pylist(), strict=True):
        exchange, symbol = names[code]
        if code in bad or not tracker.advance(exchange, symbol, first, last, max_ts[code]):
            slow.append(code)
    return slow

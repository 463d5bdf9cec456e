"""Each (exchange, symbol, trade_id) written once: a batch's rows already in the table, or earlier in the batch, go.

The state (`k2cli.lake.dedupstate`) is read from the table's snapshot summary on every assignment and after any
reset, and moves on with every batch handed to the committer (the batch's ids are in it while it commits, so the
next batch, filled meanwhile, sees them). A commit that does not land resets the consumer to the table, state
included. Sequential rows (``trade_id`` ending ``-<source_sequence>``) are checked column-wise with pyarrow
compute against per-key id ranges; the others (no sequential id) one by one against a window of recent ids.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from k2cli.lake.dedupstate import DedupState, Key, Range, append_recent, id_hash

log = logging.getLogger("k2.consume")

_TAIL_ID = r"-(?P<id>[0-9]+)$"
_MASK_RANGES = 64  # beyond this many ranges overlapping a batch, membership is checked id by id


@dataclass
class Filtered:
    """What `Deduplicator.filter` did: the rows to write, which were kept, the ids they add, duplicates by exchange."""

    table: Any  # pyarrow.Table
    keep: Any  # pyarrow.BooleanArray, or None when every row is kept
    delta: DedupState
    duplicates: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        """How many rows were duplicates."""
        return sum(self.duplicates.values())


class Deduplicator:
    """The ids in the table (plus those of batches in flight), and the filter of new batches against them."""

    def __init__(self) -> None:
        self.state = DedupState()
        self._recent_sets: dict[Key, set[str]] = {}

    def load(self, state: DedupState) -> None:
        """Start again from the table's state (on assignment, after a conflict or a reset)."""
        self.state = state
        self._recent_sets = {}

    def filter(self, table: Any) -> Filtered:
        """Drop the rows whose id is known or repeated earlier in the batch; remember the ids of the rest."""
        import pyarrow as pa
        import pyarrow.compute as pc

        n = table.num_rows
        if not n:
            return Filtered(table, None, DedupState())
        seq = table.column("source_sequence").combine_chunks()
        tail = pc.struct_field(pc.extract_regex(table.column("trade_id").combine_chunks(), _TAIL_ID), [0])
        sequential = pc.fill_null(pc.equal(tail, pc.cast(seq, pa.string())), False)
        keys = pc.binary_join_element_wise(table.column("exchange").combine_chunks(),
                                           table.column("symbol").combine_chunks(), "\x00").dictionary_encode()
        names = [tuple(k.split("\x00", 1)) for k in keys.dictionary.to_pylist()]
        delta = DedupState()
        drops = self._sequential(pc.indices_nonzero(sequential), keys.indices, seq, names, delta)
        other = pc.indices_nonzero(pc.invert(sequential))
        if len(other):
            drops = drops + self._others(other, keys.indices, table.column("trade_id"), names, delta)
        self.state = self.state.merged(delta)
        if not drops:
            return Filtered(table, None, delta)
        dropped = pa.array(drops, pa.uint64())
        keep = pc.invert(pc.is_in(pa.array(range(n), pa.uint64()), value_set=dropped))
        codes = pc.take(keys.indices, dropped).to_pylist()
        duplicates = dict(Counter(names[c][0] for c in codes))
        return Filtered(table.filter(keep), keep, delta, duplicates)

    def _sequential(self, rows: Any, codes: Any, seq: Any, names: list[Any], delta: DedupState) -> list[int]:
        """Row numbers of the sequential rows to drop; their kept ids go into delta (a fixed number of calls)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not len(rows):
            return []
        sub = pa.table({"k": pc.take(codes, rows), "s": pc.take(seq, rows), "r": rows})
        sub = sub.take(pc.sort_indices(sub, sort_keys=[("k", "ascending"), ("s", "ascending"), ("r", "ascending")]))
        k, s, r = (sub.column(c).combine_chunks() for c in ("k", "s", "r"))
        drop = pa.array([False])
        if len(s) > 1:
            drop = pa.concat_arrays([drop, pc.and_(pc.equal(k[1:], k[:-1]), pc.equal(s[1:], s[:-1]))])
        known = self._known(k, s, names)
        if known is not None:
            drop = pc.or_(drop, known)
        dropping = pc.any(drop).as_py()
        kept_k, kept_s = (pc.filter(k, pc.invert(drop)), pc.filter(s, pc.invert(drop))) if dropping else (k, s)
        for key, ranges in _runs(kept_k, kept_s, names).items():
            delta.ids[key] = ranges
        return pc.filter(r, drop).to_pylist() if dropping else []

    def _known(self, k: Any, s: Any, names: list[Any]) -> Any:
        """A mask of the (key-sorted) ids already in the state (None: none can be)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.state.ids:
            return None
        spans = pa.table({"k": k, "s": s}).group_by("k").aggregate([("s", "min"), ("s", "max")])
        mask = None
        for code, low, high in zip(*(spans.column(c).to_pylist() for c in ("k", "s_min", "s_max")), strict=True):
            ranges = self.state.ids.get(names[code], [])
            first = max(0, bisect.bisect_right(ranges, low, key=_start) - 1)
            near = [rg for rg in ranges[first:bisect.bisect_right(ranges, high, key=_start)]
                    if rg[1] >= low and rg[0] <= high]
            if not near:
                continue
            inside = _inside(s, near)
            hit = pc.and_(pc.equal(k, code), inside)
            mask = hit if mask is None else pc.or_(mask, hit)
        return mask

    def _others(self, rows: Any, codes: Any, trade_ids: Any, names: list[Any], delta: DedupState) -> list[int]:
        """Row numbers of non-sequential rows to drop (known in the recent window, or earlier in the batch)."""
        import pyarrow.compute as pc

        drops: list[int] = []
        added: dict[Key, list[str]] = {}
        for row, code, tid in zip(rows.to_pylist(), pc.take(codes, rows).to_pylist(),
                                  pc.take(trade_ids, rows).to_pylist(), strict=True):
            key = names[code]
            seen = self._recent_sets.get(key)
            if seen is None:
                seen = self._recent_sets[key] = set(self.state.recent.get(key, []))
            h = id_hash(tid)
            if h in seen:
                drops.append(row)
                continue
            seen.add(h)
            added.setdefault(key, []).append(h)
        for key, hashes in added.items():
            delta.recent[key] = hashes
            window = append_recent(self.state.recent.get(key, []), hashes)
            if len(window) < len(self.state.recent.get(key, [])) + len(hashes):  # the window slid: forget the oldest
                self._recent_sets[key] = set(window)
        return drops


def _start(rg: Range) -> int:
    return rg[0]


def _inside(ids: Any, near: list[Range]) -> Any:
    """A mask of the ids inside any of the ranges (id by id beyond `_MASK_RANGES` ranges)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(near) > _MASK_RANGES:
        starts = [rg[0] for rg in near]
        out = []
        for i in ids.to_pylist():
            j = bisect.bisect_right(starts, i) - 1
            out.append(j >= 0 and i <= near[j][1])
        return pa.array(out, pa.bool_())
    mask = None
    for lo, hi in near:
        inside = pc.and_(pc.greater_equal(ids, lo), pc.less_equal(ids, hi))
        mask = inside if mask is None else pc.or_(mask, inside)
    return mask


def _runs(k: Any, s: Any, names: list[Any]) -> dict[Key, list[Range]]:
    """Ids sorted by key then id, each once, as inclusive ranges of consecutive ids per key."""
    import pyarrow.compute as pc

    n = len(s)
    if not n:
        return {}
    if n == 1:
        breaks: list[int] = []
    else:
        cut = pc.or_(pc.not_equal(k[1:], k[:-1]), pc.not_equal(pc.subtract(s[1:], s[:-1]), 1))
        breaks = pc.indices_nonzero(cut).to_pylist()
    starts = [0, *(b + 1 for b in breaks)]
    ends = [*breaks, n - 1]
    keys = pc.take(k, starts).to_pylist()
    firsts, lasts = pc.take(s, starts).to_pylist(), pc.take(s, ends).to_pylist()
    out: dict[Key, list[Range]] = {}
    for code, lo, hi in zip(keys, firsts, lasts, strict=True):
        out.setdefault(names[code], []).append((lo, hi))
    return out

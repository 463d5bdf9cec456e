"""The trade ids already in the table, per (exchange, symbol), kept in Iceberg snapshot summaries beside the offsets.

Summary key ``k2.dedup`` (written by `k2 consume` on every snapshot, carried forward like ``k2.offsets``):
JSON ``{exchange: {symbol: {"ids": [[first, last], ...], "recent": [hash, ...]}}}``.

- ``ids``: the sequential trade ids present (inclusive ranges, sorted, disjoint, not adjacent). A record is
  sequential when its ``trade_id`` ends with ``-<source_sequence>`` (exchanges whose descriptor says
  `sequential_ids`): its id then names the trade exactly. At most `MAX_RANGES` ranges per key: beyond it the
  lowest are forgotten and ids below the lowest kept range are treated as new (written).
- ``recent``: for other records (hash ids, no source_sequence), the last `RECENT_IDS` trade ids written, as
  12-hex-digit BLAKE2b hashes, oldest first. A duplicate older than that window is written again.

Both only grow by union (ranges) or append-and-trim (recent), so merging a batch into whatever another writer
committed meanwhile never loses that writer's ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from k2cli.jsonutil import dumps

DEDUP_KEY = "k2.dedup"
MAX_RANGES = 4096
RECENT_IDS = 512

Key = tuple[str, str]  # (exchange, symbol)
Range = tuple[int, int]  # inclusive


def id_hash(trade_id: str) -> str:
    """The short hash a non-sequential trade id is remembered by."""
    return hashlib.blake2b(trade_id.encode("utf-8"), digest_size=6).hexdigest()


def runs(ids: Iterable[int]) -> list[Range]:
    """Sorted unique ids as inclusive ranges of consecutive ids."""
    out: list[Range] = []
    lo = hi = None
    for i in ids:
        if hi is not None and i == hi + 1:
            hi = i
        elif hi is not None and i <= hi:
            continue
        else:
            if lo is not None and hi is not None:
                out.append((lo, hi))
            lo = hi = i
    if lo is not None and hi is not None:
        out.append((lo, hi))
    return out


def union(a: list[Range], b: list[Range], max_ranges: int = MAX_RANGES) -> list[Range]:
    """The union of two sorted range lists, adjacent ranges joined, the lowest dropped beyond max_ranges."""
    if not b:
        return a[-max_ranges:] if len(a) > max_ranges else a
    merged_in = sorted(a + b)
    out: list[list[int]] = []
    for lo, hi in merged_in:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    result = [(lo, hi) for lo, hi in out]
    return result[-max_ranges:] if len(result) > max_ranges else result


def contains(ranges: list[Range], ident: int) -> bool:
    """Whether an id lies in the ranges."""
    import bisect

    i = bisect.bisect_right(ranges, ident, key=lambda rg: rg[0]) - 1
    return i >= 0 and ranges[i][0] <= ident <= ranges[i][1]


def append_recent(old: list[str], new: Iterable[str], limit: int = RECENT_IDS) -> list[str]:
    """The window after new hashes (oldest first, each once, the newest `limit` kept)."""
    seen = set(old)
    out = list(old)
    for h in new:
        if h not in seen:
            seen.add(h)
            out.append(h)
    return out[-limit:] if len(out) > limit else out


@dataclass
class DedupState:
    """Ids present per (exchange, symbol): sequential ranges and the recent window of the others."""

    ids: dict[Key, list[Range]] = field(default_factory=dict)
    recent: dict[Key, list[str]] = field(default_factory=dict)

    def merged(self, delta: DedupState) -> DedupState:
        """This state with a batch's ids added (a new value; self is left alone)."""
        ids = dict(self.ids)
        for key, ranges in delta.ids.items():
            ids[key] = union(ids.get(key, []), ranges)
        recent = dict(self.recent)
        for key, hashes in delta.recent.items():
            recent[key] = append_recent(recent.get(key, []), hashes)
        return DedupState(ids, recent)

    def __bool__(self) -> bool:
        return bool(self.ids or self.recent)


def encode_state(state: DedupState) -> str:
    """The summary value: compact JSON with sorted keys."""
    nested: dict[str, dict[str, dict[str, list[object]]]] = {}
    for (exchange, symbol), ranges in state.ids.items():
        nested.setdefault(exchange, {}).setdefault(symbol, {})["ids"] = [[lo, hi] for lo, hi in ranges]
    for (exchange, symbol), hashes in state.recent.items():
        if hashes:
            nested.setdefault(exchange, {}).setdefault(symbol, {})["recent"] = list(hashes)
    return dumps(nested, separators=(",", ":"), sort_keys=True)


def decode_state(text: str | None) -> DedupState:
    """Parse `encode_state` output; absent or malformed text gives an empty state (parts that parse are kept)."""
    state = DedupState()
    if not text:
        return state
    try:
        nested = json.loads(text)
    except ValueError:
        return state
    if not isinstance(nested, dict):
        return state
    for exchange, symbols in nested.items():
        if not isinstance(symbols, dict):
            continue
        for symbol, entry in symbols.items():
            if not isinstance(entry, dict):
                continue
            key = (str(exchange), str(symbol))
            ranges = _ranges(entry.get("ids"))
            if ranges:
                state.ids[key] = ranges
            recent = entry.get("recent")
            if isinstance(recent, list):
                state.recent[key] = [str(h) for h in recent][-RECENT_IDS:]
    return state


def _ranges(raw: object) -> list[Range]:
    if not isinstance(raw, list):
        return []
    out: list[Range] = []
    for item in raw:
        try:
            lo, hi = int(item[0]), int(item[1])
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        if lo <= hi:
            out.append((lo, hi))
    return union([], sorted(out))


def state_from_summaries(summaries: Iterable[Mapping[str, str] | None]) -> DedupState:
    """The state of the newest summary (first in the chain) that carries one."""
    for s in summaries:
        if s and DEDUP_KEY in s:
            return decode_state(s.get(DEDUP_KEY))
    return DedupState()

"""Sequence tracking per (exchange, symbol) on `source_sequence`: gaps, reordering, duplicates and resets.

Rules, given the last (highest) sequence L seen for the key and a new sequence S:

- first S for a key, or S == L + 1: OK
- S > L + 1: a gap of S - L - 1 missing; LARGE_GAP when more than `gap_large_threshold` are missing, else
  SMALL_GAP. L becomes S.
- S == L: DUPLICATE.
- S < L: RESET when it is *far below after a quiet period*: S <= L * `reset_ratio` (default: at most half of L)
  and the record's timestamp is at least `reset_quiet_seconds` after the last record of the key. The key is
  re-based at S. Otherwise OUT_OF_ORDER, and L (the high-water mark) is kept.
- a null sequence is not tracked.

Only SMALL_GAP and LARGE_GAP count as gaps. The tracker is pure: it returns events; callers log and meter them.
The number of keys is bounded (`max_keys`, least recently inserted key evicted first).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class SequenceEvent(enum.StrEnum):
    """The outcome of checking one sequence number."""

    OK = "OK"
    SMALL_GAP = "SMALL_GAP"
    LARGE_GAP = "LARGE_GAP"
    OUT_OF_ORDER = "OUT_OF_ORDER"
    DUPLICATE = "DUPLICATE"
    RESET = "RESET"


GAP_EVENTS = frozenset({SequenceEvent.SMALL_GAP, SequenceEvent.LARGE_GAP})


@dataclass(frozen=True)
class SequenceResult:
    """One non-trivial check: the event, the key, the new sequence, the previous high-water mark, how many missing."""

    event: SequenceEvent
    exchange: str
    symbol: str
    sequence: int
    last: int | None
    missing: int = 0

    def describe(self) -> str:
        """A log line with the numbers."""
        base = f"{self.event} {self.exchange}/{self.symbol}: sequence {self.sequence} after {self.last}"
        return f"{base} ({self.missing} missing)" if self.missing else base


@dataclass
class SequenceStats:
    """Counts of events, gaps (small + large) and missing sequence numbers."""

    events: dict[str, int] = field(default_factory=lambda: {e.value: 0 for e in SequenceEvent})
    gaps: int = 0
    missing: int = 0

    def add(self, result: SequenceResult) -> None:
        """Count one non-OK result."""
        self.events[result.event.value] += 1
        if result.event in GAP_EVENTS:
            self.gaps += 1
            self.missing += result.missing


def grouped(results: Iterable[SequenceResult]) -> dict[tuple[str, str, SequenceEvent], list[SequenceResult]]:
    """Results by (exchange, symbol, event), in order: one log line and one metric increment per group."""
    groups: dict[tuple[str, str, SequenceEvent], list[SequenceResult]] = {}
    for r in results:
        groups.setdefault((r.exchange, r.symbol, r.event), []).append(r)
    return groups


def describe_group(results: list[SequenceResult]) -> str:
    """One log line for a group of same-key, same-event results (the single result's own line when alone)."""
    first = results[0]
    if len(results) == 1:
        return first.describe()
    missing = sum(r.missing for r in results)
    return (f"{first.event} {first.exchange}/{first.symbol}: {len(results):,} times in one batch"
            + (f" ({missing:,} missing)" if missing else "") + f", first: sequence {first.sequence} after {first.last}")


class SequenceTracker:
    """Tracks the last sequence per (exchange, symbol) and classifies each new one."""

    def __init__(self, gap_large_threshold: int = 10, reset_quiet_seconds: float = 60.0, reset_ratio: float = 0.5,
                 max_keys: int = 100_000) -> None:
        if gap_large_threshold < 1 or max_keys < 1 or not 0 < reset_ratio < 1 or reset_quiet_seconds < 0:
            raise ValueError("invalid sequence tracker parameters")
        self.gap_large_threshold = gap_large_threshold
        self.reset_quiet_us = int(reset_quiet_seconds * 1_000_000)
        self.reset_ratio = reset_ratio
        self.max_keys = max_keys
        self.stats = SequenceStats()
        self._state: dict[tuple[str, str], list[int]] = {}  # key -> [last sequence, last timestamp µs]

    def check(self, exchange: str, symbol: str, sequence: int | None, timestamp_us: int) -> SequenceEvent | None:
        """Classify one sequence number (None when the record has none)."""
        if sequence is None:
            return None
        result = self._slow(exchange, symbol, sequence, timestamp_us)
        return result.event if result is not None else SequenceEvent.OK

    def check_many(self, exchanges: Iterable[str], symbols: Iterable[str], sequences: Iterable[int | None],
                   timestamps: Iterable[int]) -> list[SequenceResult]:
        """Check a batch of records in order; return only the non-OK results."""
        state = self._state
        out: list[SequenceResult] = []
        for exchange, symbol, seq, ts in zip(exchanges, symbols, sequences, timestamps, strict=True):
            if seq is None:
                continue
            st = state.get((exchange, symbol))
            if st is not None and seq == st[0] + 1:  # the common case, kept cheap
                st[0] = seq
                if ts > st[1]:
                    st[1] = ts
                continue
            result = self._slow(exchange, symbol, seq, ts)
            if result is not None:
                out.append(result)
        return out

    def advance(self, exchange: str, symbol: str, first: int, last: int, max_ts: int) -> bool:
        """Take a run of consecutive sequences first..last that starts a new key (while there is room for it) or
        continues a known one (True: no event); else change nothing (False)."""
        st = self._state.get((exchange, symbol))
        if st is None:
            if len(self._state) >= self.max_keys:
                return False
            self._state[(exchange, symbol)] = [last, max_ts]
            return True
        if first != st[0] + 1:
            return False
        st[0] = last
        if max_ts > st[1]:
            st[1] = max_ts
        return True

    def _slow(self, exchange: str, symbol: str, seq: int, ts: int) -> SequenceResult | None:
        key = (exchange, symbol)
        st = self._state.get(key)
        if st is None:
            if len(self._state) >= self.max_keys:
                del self._state[next(iter(self._state))]
            self._state[key] = [seq, ts]
            return None
        last, last_ts = st
        quiet = ts - last_ts >= self.reset_quiet_us
        if ts > last_ts:
            st[1] = ts
        if seq == last + 1:
            st[0] = seq
            return None
        if seq > last:
            st[0] = seq
            missing = seq - last - 1
            event = SequenceEvent.LARGE_GAP if missing > self.gap_large_threshold else SequenceEvent.SMALL_GAP
            result = SequenceResult(event, exchange, symbol, seq, last, missing)
        elif seq == last:
            result = SequenceResult(SequenceEvent.DUPLICATE, exchange, symbol, seq, last)
        elif quiet and seq <= last * self.reset_ratio:
            st[0] = seq
            result = SequenceResult(SequenceEvent.RESET, exchange, symbol, seq, last)
        else:
            result = SequenceResult(SequenceEvent.OUT_OF_ORDER, exchange, symbol, seq, last)
        self.stats.add(result)
        return result

    def last(self, exchange: str, symbol: str) -> int | None:
        """The high-water sequence of a key (None if unseen)."""
        st = self._state.get((exchange, symbol))
        return st[0] if st is not None else None

    def forget(self, exchange: str, symbol: str) -> None:
        """Drop one key's state."""
        self._state.pop((exchange, symbol), None)

    def __len__(self) -> int:
        return len(self._state)

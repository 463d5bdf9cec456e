"""Dropping trades already seen, and deciding when a rotation's old connection may close. Pure logic.

Two connections overlap during a make-before-break rotation (and an exchange may replay recent trades when
a connection re-subscribes), so the same trade can arrive twice. Keys are per symbol, in the mode the
exchange's connection plan gives (ExchangeDescriptor.plan -> ConnectionPlan.sequential_ids):

- sequential (trade ids consecutive per symbol, carried in source_sequence): a bitmap of the last WINDOW
  ids below the highest id seen; an id far below that window is taken as a sequence reset and starts a
  new window.
- opaque (trade ids without order, e.g. hashes of the trade's fields): a set of the last SET_WINDOW ids
  with FIFO eviction.

Handover: the old connection may close once, for every symbol, nothing it could still deliver is
missing from the new one:
- sequential: the new connection delivers every id from its first one on, so the old one is done with a
  symbol once its last id >= (the new connection's first id) - 1;
- opaque: once both connections delivered one same id (either side first): the new connection's trades
  run on without a gap from that id, so whatever the old one would still deliver, the new one delivers
  too (a snapshot of recent trades on subscribe usually gives this at once; waiting instead for the old
  connection's latest id would never end while the new connection lags the old one);
- a symbol neither connection delivered since the handover began is quiet: nothing is in flight, once
  the caller says the new connection has streamed long enough (`quiet_ok`). Until then, the new
  connection must deliver a trade first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable

from k2cli.stream.gaps import resume_gap

WINDOW_BITS = 20
WINDOW = 1 << WINDOW_BITS  # ids remembered per symbol (sequential mode): a 128 KiB bitmap
SET_WINDOW = 20_000  # ids remembered per symbol (opaque mode)


class _Bitmap:
    """Ids in (hi - WINDOW, hi] as bits of a ring; a jump of the highest id is noted in `jumps` (a gap)."""

    __slots__ = ("bits", "hi", "symbol", "jumps")

    def __init__(self, first: int, symbol: str = "", jumps: list[tuple[str, int, int]] | None = None) -> None:
        self.bits = bytearray(WINDOW >> 3)
        self.hi = first
        self.symbol = symbol
        self.jumps = jumps if jumps is not None else []
        self._set(first)

    def _set(self, k: int) -> None:
        i = k & (WINDOW - 1)
        self.bits[i >> 3] |= 1 << (i & 7)

    def _clear(self, a: int, b: int) -> None:
        """Clear the slots of ids a..b (b - a < WINDOW)."""
        while a <= b and a & 7:
            i = a & (WINDOW - 1)
            self.bits[i >> 3] &= ~(1 << (i & 7)) & 0xFF
            a += 1
        while a <= b and (b + 1) & 7:
            i = b & (WINDOW - 1)
            self.bits[i >> 3] &= ~(1 << (i & 7)) & 0xFF
            b -= 1
        if a > b:
            return
        start, stop = (a & (WINDOW - 1)) >> 3, ((b & (WINDOW - 1)) >> 3) + 1  # whole bytes now
        if start < stop:
            self.bits[start:stop] = bytes(stop - start)
        else:  # wraps around the ring
            self.bits[start:] = bytes(len(self.bits) - start)
            self.bits[:stop] = bytes(stop)

    def add(self, k: int) -> bool:
        """Record id k; False if it was already there."""
        hi = self.hi
        if k > hi:
            if k == hi + 1:
                i = k & (WINDOW - 1)
                self.bits[i >> 3] &= ~(1 << (i & 7)) & 0xFF
            else:  # a gap: the missing ids' slots stay clear, and the gap is noted (the rare branch)
                self.jumps.append((self.symbol, hi + 1, k - 1))
                if k - hi >= WINDOW:
                    self.bits = bytearray(WINDOW >> 3)
                else:
                    self._clear(hi + 1, k)
            self.hi = k
            self._set(k)
            return True
        if k <= hi - WINDOW:  # far below anything remembered: the exchange restarted its sequence
            self.bits = bytearray(WINDOW >> 3)
            self.hi = k
            self._set(k)
            return True
        i = k & (WINDOW - 1)
        mask = 1 << (i & 7)
        if self.bits[i >> 3] & mask:
            return False
        self.bits[i >> 3] |= mask
        return True

    def add_old(self, k: int) -> bool:
        """Record an id at or below the highest (a backfilled one); False if already there.

        Ids below the window are taken as new without touching it (add() would read them as a reset)."""
        if k > self.hi or k <= self.hi - WINDOW:
            return True
        i = k & (WINDOW - 1)
        mask = 1 << (i & 7)
        if self.bits[i >> 3] & mask:
            return False
        self.bits[i >> 3] |= mask
        return True

    def unseen(self, first: int, last: int) -> list[tuple[int, int]]:
        """Runs of ids in first..last not recorded (ids above the highest or below the window count as unseen)."""
        if first > last:
            return []
        lo, hi, bits = self.hi - WINDOW, self.hi, self.bits
        a, b = max(first, lo + 1), min(last, hi)  # only these ids can be recorded: at most WINDOW of them
        if a > b:
            return [(first, last)]  # a restart's gap can span billions of ids: never walk them one by one
        out: list[tuple[int, int]] = []
        start: int | None = first if first < a else None
        for k in range(a, b + 1):
            i = k & (WINDOW - 1)
            if bits[i >> 3] & (1 << (i & 7)):
                if start is not None:
                    out.append((start, k - 1))
                    start = None
            elif start is None:
                start = k
        if start is None and b < last:
            start = b + 1
        if start is not None:
            out.append((start, last))
        return out


class _RecentSet:
    """The last SET_WINDOW opaque ids."""

    __slots__ = ("ids", "order")

    def __init__(self) -> None:
        self.ids: set[Hashable] = set()
        self.order: deque[Hashable] = deque()

    def add(self, key: Hashable) -> bool:
        if key in self.ids:
            return False
        self.ids.add(key)
        self.order.append(key)
        if len(self.order) > SET_WINDOW:
            self.ids.discard(self.order.popleft())
        return True


class _ConnTrack:
    """What one connection delivered, per symbol: [first key, last key, count]."""

    __slots__ = ("per_symbol", "keys", "recording", "overlapped")

    def __init__(self) -> None:
        self.per_symbol: dict[str, list] = {}
        self.keys: dict[str, set[Hashable]] = {}  # opaque mode, while this is the new side of a handover
        self.recording = False
        self.overlapped: set[str] = set()  # symbols where this new side and the old one delivered one same id


class Deduplicator:
    """accept() says whether a trade is new; handover_ready() whether an old connection may close."""

    def __init__(self, sequential: bool) -> None:
        self.sequential = sequential
        self._seen: dict[str, _Bitmap | _RecentSet] = {}
        self._conns: dict[int, _ConnTrack] = {}
        self._baseline: dict[str, int] = {}  # old connection's counts when the handover began
        self._handover: tuple[int, int] | None = None  # (old, new) while a rotation overlaps them
        self.duplicates = 0
        self.backfill_duplicates = 0  # backfilled trades dropped as already seen
        self.jumps: list[tuple[str, int, int]] = []  # (symbol, first, last) gaps noted, taken by the backfill
        self._resume: dict[str, int] = {}  # symbol -> last id already in the topic (a restart's start point)

    def accept(self, conn: int, symbol: str, key: Hashable) -> bool:
        """Record that `conn` delivered `key` for `symbol`; True if no connection delivered it before."""
        track = self._conns.get(conn)
        if track is None:
            track = self._conns[conn] = _ConnTrack()
        entry = track.per_symbol.get(symbol)
        if entry is None:
            track.per_symbol[symbol] = [key, key, 1]
        else:
            entry[1] = key
            entry[2] += 1
        new_here = True
        if track.recording:
            own = track.keys.setdefault(symbol, set())
            new_here = key not in own
            own.add(key)
        seen = self._seen.get(symbol)
        if seen is None:
            if self.sequential:
                self._seen[symbol] = _Bitmap(key, symbol, self.jumps)  # type: ignore[arg-type]
                gap = resume_gap(self._resume.pop(symbol, None), key)  # type: ignore[arg-type]
                if gap is not None:  # the ids since the run that wrote the topic's last one
                    self.jumps.append((symbol, *gap))
                return True
            seen = self._seen[symbol] = _RecentSet()
        if seen.add(key):  # type: ignore[arg-type]
            return True
        self.duplicates += 1
        if self._handover is not None and not self.sequential:
            self._note_overlap(conn, symbol, key, new_here)
        return False

    def _note_overlap(self, conn: int, symbol: str, key: Hashable, new_here: bool) -> None:
        """A duplicate during a handover: does it show the old and new connections delivered one same id?"""
        old, new = self._handover  # type: ignore[misc]
        if conn == new and new_here:  # first delivered by another connection, i.e. at or before the old one's
            self._conns[new].overlapped.add(symbol)
        elif conn == old:
            new_track = self._conns.get(new)
            if new_track is not None and key in new_track.keys.get(symbol, ()):
                new_track.overlapped.add(symbol)

    def begin_handover(self, old: int, new: int) -> None:
        """Mark the start of a rotation from connection `old` to `new`."""
        old_track = self._conns.setdefault(old, _ConnTrack())
        self._baseline = {s: e[2] for s, e in old_track.per_symbol.items()}
        new_track = self._conns.setdefault(new, _ConnTrack())
        new_track.recording = not self.sequential
        self._handover = (old, new)

    def delivered(self, conn: int) -> bool:
        """Whether `conn` has delivered any trade."""
        track = self._conns.get(conn)
        return bool(track and track.per_symbol)

    def handover_ready(self, old: int, new: int, quiet_ok: bool) -> tuple[bool, list[str]]:
        """(ready, symbols still waiting): may connection `old` close without losing a trade?"""
        new_track = self._conns.get(new) or _ConnTrack()
        old_track = self._conns.get(old)
        waiting = []
        if not new_track.per_symbol and not quiet_ok:
            waiting.append("(a first trade from the new connection)")
        for symbol, (_first, last, count) in (old_track.per_symbol.items() if old_track else ()):
            got = new_track.per_symbol.get(symbol)
            if got is None:
                active = count > self._baseline.get(symbol, 0)
                if active or not quiet_ok:
                    waiting.append(symbol)
            elif self.sequential:
                if last < got[0] - 1:
                    waiting.append(symbol)
            elif symbol not in new_track.overlapped:
                waiting.append(symbol)
        return not waiting, waiting

    def end_handover(self, old: int, new: int) -> None:
        """The rotation is over: forget the old connection and stop recording the new one's keys."""
        self._conns.pop(old, None)
        track = self._conns.get(new)
        if track is not None:
            track.recording = False
            track.keys.clear()
            track.overlapped.clear()
        self._baseline = {}
        self._handover = None

    def resume_from(self, last_ids: dict[str, int]) -> None:
        """The last id per symbol already in the topic: a first live id above it + 1 opens a gap from there."""
        if self.sequential:
            self._resume.update(last_ids)

    def accept_backfilled(self, symbol: str, key: Hashable) -> bool:
        """Whether a backfilled trade is new (and record it, so a live copy is dropped); never moves the window."""
        seen = self._seen.get(symbol)
        if seen is None and not self.sequential:
            seen = self._seen[symbol] = _RecentSet()
        if seen is None or (seen.add_old(key) if isinstance(seen, _Bitmap) else seen.add(key)):  # type: ignore[arg-type]
            return True
        self.backfill_duplicates += 1
        return False

    def seed(self, symbol: str, keys: Iterable[Hashable]) -> None:
        """Opaque mode: ids already in the topic (a restart's last trades), so they are not produced again."""
        if not self.sequential:
            seen = self._seen.setdefault(symbol, _RecentSet())
            for key in keys:
                seen.add(key)  # type: ignore[arg-type]

    def edges(self, conn: int) -> dict[str, tuple[Hashable, Hashable]]:
        """Per symbol, the first and the last key `conn` delivered."""
        track = self._conns.get(conn)
        return {s: (e[0], e[1]) for s, e in track.per_symbol.items()} if track else {}

    def first_keys(self, exclude: int | None = None) -> dict[str, list[Hashable]]:
        """Per symbol, the first key each tracked connection (but `exclude`) delivered."""
        out: dict[str, list[Hashable]] = {}
        for conn, track in self._conns.items():
            if conn != exclude:
                for symbol, entry in track.per_symbol.items():
                    out.setdefault(symbol, []).append(entry[0])
        return out

    def unseen(self, symbol: str, first: int, last: int) -> list[tuple[int, int]]:
        """Runs of ids in first..last of a symbol no connection delivered (sequential mode)."""
        seen = self._seen.get(symbol)
        return seen.unseen(first, last) if isinstance(seen, _Bitmap) else [(first, last)]

    def take_jumps(self) -> list[tuple[str, int, int]]:
        """The gaps noted since the last call, in order."""
        jumps = self.jumps[:]
        self.jumps.clear()  # the same list object: the bitmaps hold it
        return jumps

    def highest_ids(self) -> dict[str, int]:
        """The highest trade id seen per symbol (sequential mode; empty in opaque mode)."""
        return {symbol: seen.hi for symbol, seen in self._seen.items() if isinstance(seen, _Bitmap)}

    def forget(self, conn: int) -> None:
        """Drop what is tracked about a closed connection (ids stay remembered for deduplication)."""
        self._conns.pop(conn, None)

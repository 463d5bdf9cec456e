"""The one market all connections of a simulator see: the tape's events in a ring with global indices, and
every trade printed in a compact per-symbol history for the REST endpoints (none on a recorded file tape).

From the first subscription on, the tape advances at `rate` trades/s whether or not anyone listens (rate 0:
as fast as the fastest client reads); events older than `buffer_events` fall out of the ring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import TextIO

from k2cli.simulator.config import SimulatorConfig, SimulatorStats
from k2cli.simulator.history import TradeHistory
from k2cli.simulator.tape import Event, GeneratedTape, TapeTrade, read_tape_file, record_line

log = logging.getLogger("k2.simulate")
SNAPSHOT_TRADES = 50


class Market:
    """The shared tape: events in a ring with global indices, advanced by rate or by demand."""

    def __init__(self, cfg: SimulatorConfig, stats: SimulatorStats, multi_trade_events: bool = False) -> None:
        self.cfg = cfg
        self.stats = stats
        self.events: deque[Event] = deque()
        self.base = 0  # global index of events[0]
        self.changed = asyncio.Event()
        self._generated_trades = 0
        self._t0: float | None = None  # the clock starts with the first subscriber (a file tape plays from its start)
        self._file: Iterator[Event] | None = iter(read_tape_file(cfg.tape_file)) if cfg.tape_file else None
        self._tape = None if cfg.tape_file else GeneratedTape(cfg.symbols, cfg.seed, cfg.skip_ids_every,
                                                             multi=multi_trade_events)
        self._exhausted = False
        self.history = TradeHistory(cfg.symbols, 0 if cfg.tape_file else cfg.rest_history)
        self._record: TextIO | None = (open(cfg.record_file, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
                                       if cfg.record_file else None)

    @property
    def generated(self) -> bool:
        """True for a generated tape, False for a recorded file."""
        return self._file is None

    @property
    def head(self) -> int:
        """Global index of the next event."""
        return self.base + len(self.events)

    def _append(self, n: int) -> int:
        """Generate up to n more events; returns how many were added."""
        added = 0
        now_us = time.time_ns() // 1000
        file, tape = self._file, self._tape
        history = self.history if self.history.limit else None
        while added < n and not self._exhausted:
            if file is not None:
                event = next(file, None)
                if event is None:
                    self._exhausted = True
                    log.info("tape file finished after %d frames", self.head)
                    break
            elif tape is not None:
                event = tape.next_event(now_us)
            else:  # pragma: no cover - one of the two is always set
                break
            event.at = time.monotonic()
            self.events.append(event)
            added += 1
            self._generated_trades += max(1, len(event.trades))
            self.stats.events += 1
            self.stats.trades += len(event.trades)
            if history is not None:
                history.add(event.trades)
            if self._record is not None:
                for t in event.trades:
                    self._record.write(record_line(t) + "\n")
        overflow = len(self.events) - self.cfg.buffer_events
        for _ in range(max(0, overflow)):
            self.events.popleft()
            self.base += 1
        if added:
            self.changed.set()
            self.changed = asyncio.Event()
        return added

    def open(self) -> None:
        """A client subscribed: start the market clock if it is not running yet."""
        if self._t0 is None:
            self._t0 = time.monotonic()

    def due(self) -> int:
        """How many trades the clock allows beyond those generated (rate mode)."""
        if self._t0 is None:
            return 0
        return int((time.monotonic() - self._t0) * self.cfg.rate) - self._generated_trades

    def demand(self, n: int) -> None:
        """Full-speed mode: a client wants more events."""
        if self.cfg.rate == 0:
            self._append(n)

    async def run_clock(self) -> None:
        """Rate mode: add the trades due every few milliseconds."""
        if self.cfg.rate == 0:
            return
        tick = max(0.002, min(0.05, 1.0 / self.cfg.rate))
        while True:
            await asyncio.sleep(tick)
            due = self.due()
            while due > 0 and not self._exhausted:
                before = self._generated_trades
                self._append(1 if due < 4 else max(1, due // 3))
                due -= self._generated_trades - before
            if self._record is not None:
                self._record.flush()

    def since(self, cursor: int, limit: int) -> list[Event]:
        """Events from global index `cursor` on (at most `limit`)."""
        start = cursor - self.base
        stop = min(len(self.events), start + limit)
        return [self.events[i] for i in range(start, stop)]

    def recent_trades(self, symbol: str, before: int, limit: int = SNAPSHOT_TRADES) -> list[TapeTrade]:
        """The last trades of a symbol in whole events before global index `before` (a snapshot on subscribe)."""
        picked: list[list[TapeTrade]] = []
        total = 0
        i = min(before, self.head) - self.base - 1
        while i >= 0 and total < limit:
            event = self.events[i]
            if event.symbol == symbol:
                if total + len(event.trades) > limit:
                    break
                picked.append(event.trades)
                total += len(event.trades)
            i -= 1
        return [t for trades in reversed(picked) for t in trades]

    def close(self) -> None:
        """Flush and close the record file."""
        self.stats.history_forgotten = self.history.forgotten
        if self._record is not None:
            self._record.close()
            self._record = None

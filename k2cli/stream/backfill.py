"""The stream's gap backfill: a background task that fills gaps in trade ids from the exchange's REST API.

Every POLL seconds it takes the gaps the dedup noted (the live path only appends to a list on the rare branch
where ids jump), waits out their grace, keeps what live trades did not close, and fetches the rest in order
through the exchange's TradeFetcher. Backfilled rows pass the dedup's backfill check (so a live copy of the same
trade is produced once) and go through the live encoder and producer queue (`RowSink`). A gap wider than
K2_BACKFILL_MAX_TRADES, or one the fetcher gives up on, is reported unfilled with its numbers; the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from k2cli.exchanges.base import ROW_SOURCE_SEQUENCE, Row
from k2cli.observe.metrics import StreamMetrics
from k2cli.stream.dedup import Deduplicator
from k2cli.stream.gaps import Fetch, Gap, due, fill_command, narrow, plan_fetches
from k2cli.stream.row_sink import RowSink
from k2cli.stream.summary import StreamSummary

log = logging.getLogger("k2.stream")

POLL = 0.1  # seconds between looks at the dedup's noted gaps
TIME_MARGIN_US = 60_000_000  # a time cursor starts this long before the last trade seen ahead of a gap


class Fetcher(Protocol):
    """What the backfill needs of k2cli.exchanges.rest.TradeFetcher."""

    def fetch_ids(self, symbol: str, from_id: int, to_id: int, *,
                  after_us: int | None = None) -> AsyncIterator[list[Row]]: ...

    async def aclose(self) -> None: ...


class GapBackfill:
    """Takes the dedup's gaps, judges them after a grace, fetches and produces them; counts everything."""

    def __init__(self, *, exchange: str, dedup: Deduplicator, summary: StreamSummary, metrics: StreamMetrics,
                 symbol_label: Callable[[str], str], max_trades: int, fetcher: Fetcher | None,
                 subscription: dict[str, str] | None = None, rows: RowSink | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.exchange = exchange
        self.dedup = dedup
        self.summary = summary
        self.metrics = metrics
        self.symbol_label = symbol_label
        self.max_trades = max_trades
        self.fetcher = fetcher  # None: backfill off, gaps are only counted
        self.subscription = subscription or {}  # the records' symbol -> the form the exchange's API takes
        self.rows = rows  # set once the Kafka side is up
        self.clock = clock
        self.waiting: list[Gap] = []  # in their grace
        self.queue: list[Fetch] = []  # planned fetches not finished yet, in order
        self.busy = False  # a step is under way
        self.settling = False  # the run is stopping: settle() does the last steps
        self._hi_at: dict[str, tuple[int, int]] = {}  # symbol -> (highest id, wall µs when it was first seen)

    @property
    def idle(self) -> bool:
        """Nothing noted, waiting or being fetched."""
        return not (self.waiting or self.busy or self.queue or self.dedup.jumps)

    async def run(self) -> None:
        """The background task: look for gaps every POLL seconds until cancelled."""
        try:
            while True:
                await asyncio.sleep(POLL)
                if not self.settling:
                    await self.step()
        finally:
            if self.fetcher is not None:
                await self.fetcher.aclose()

    async def step(self, force: bool = False) -> None:
        """Take new gaps; judge and fill those whose grace is over (all of them when `force`)."""
        now = self.clock()
        for symbol, first, last in self.dedup.take_jumps():
            self.waiting.append(Gap(symbol, first, last, now, self._after_us(symbol, first)))
        self._note_highest()
        ready, self.waiting = due(self.waiting, float("inf") if force else now)
        gaps = [piece for g in ready for piece in narrow(g, self.dedup.unseen(g.symbol, g.first, g.last))]
        if not gaps:
            return
        self.summary.gaps_seen += len(gaps)
        if self.fetcher is None:
            for g in gaps:
                log.warning("gap in %s trade ids %d..%d (%d ids); backfill is off", g.symbol, g.first, g.last, g.size)
            return
        fetches, too_wide = plan_fetches(gaps, self.max_trades)
        for g in too_wide:
            self._unfilled((g,), f"{g.size:,} ids, more than K2_BACKFILL_MAX_TRADES={self.max_trades:,}")
        self.queue.extend(fetches)
        self.busy = True
        try:
            while self.queue:
                await self._fill(self.queue[0])
                self.queue.pop(0)
        finally:
            self.busy = False

    def _note_highest(self) -> None:
        """Remember when each symbol's highest id was first seen: a time cursor for exchanges paging by time."""
        wall = time.time_ns() // 1000
        for symbol, hi in self.dedup.highest_ids().items():
            seen = self._hi_at.get(symbol)
            if seen is None or seen[0] != hi:
                self._hi_at[symbol] = (hi, wall)

    def note_resume(self, last: dict[str, tuple[int, int]]) -> None:
        """The topic's last (id, trade time µs) per symbol: the time cursor of the gap a restart leaves."""
        self._hi_at.update(last)

    def _after_us(self, symbol: str, first: int) -> int | None:
        """A time before the first missing trade: when the highest id below it was first seen, less a margin."""
        seen = self._hi_at.get(symbol)
        return seen[1] - TIME_MARGIN_US if seen is not None and seen[0] < first else None

    async def _fill(self, fetch: Fetch) -> None:
        """Fetch one range and produce what is new; the gaps it covers are filled, or unfilled if it fails."""
        from k2cli.exchanges.rest import RestGaveUp

        assert self.fetcher is not None and self.rows is not None
        accept, put, rows = self.dedup.accept_backfilled, self.rows.put, self.rows
        symbol, added = fetch.symbol, 0
        try:
            async for page in self.fetcher.fetch_ids(self.subscription.get(symbol, symbol), fetch.first, fetch.last,
                                                     after_us=fetch.after_us):
                for row in page:
                    if accept(symbol, row[ROW_SOURCE_SEQUENCE]):
                        put(row)
                        added += 1
                self._count_trades(symbol, added)
                added = 0
                await rows.room()
        except asyncio.CancelledError:
            self._count_trades(symbol, added)
            raise
        except RestGaveUp as exc:
            self._count_trades(symbol, added)
            self._unfilled(fetch.gaps, f"the REST API gave up: {exc}")
            return
        except Exception as exc:  # a fetch failing must not stop the live stream
            self._count_trades(symbol, added)
            self._unfilled(fetch.gaps, f"{type(exc).__name__}: {exc}")
            return
        self._filled(fetch)

    def count_request(self, label: str) -> None:
        """The fetcher's on_request: one REST call and its outcome (200, 429, 418, 4xx, 5xx, timeout, error)."""
        counts = self.summary.backfill_requests
        counts[label] = counts.get(label, 0) + 1
        self.metrics.backfill_requests.labels(self.exchange, label).inc()

    def _count_trades(self, symbol: str, n: int) -> None:
        if n:
            self.summary.trades_backfilled += n
            self.metrics.backfill_trades.labels(self.exchange, self.symbol_label(symbol)).inc(n)

    def _filled(self, fetch: Fetch) -> None:
        absent = sum(b - a + 1 for g in fetch.gaps for a, b in self.dedup.unseen(g.symbol, g.first, g.last))
        self.summary.gaps_filled += len(fetch.gaps)
        self.summary.gap_ids_absent += absent
        self.metrics.backfill_gaps.labels(self.exchange, "filled").inc(len(fetch.gaps))
        log.info("filled %d gap(s) in %s ids %d..%d%s", len(fetch.gaps), fetch.symbol, fetch.first, fetch.last,
                 f" ({absent} ids the exchange has no trade for)" if absent else "")

    def _unfilled(self, gaps: tuple[Gap, ...], why: str) -> None:
        self.summary.gaps_unfilled += len(gaps)
        self.metrics.backfill_gaps.labels(self.exchange, "unfilled").inc(len(gaps))
        for g in gaps:
            detail = {"symbol": g.symbol, "first_id": g.first, "last_id": g.last, "ids": g.size, "why": why}
            if len(self.summary.unfilled_gaps) < 100:
                self.summary.unfilled_gaps.append(detail)
            log.error("gap in %s trade ids %d..%d (%d ids) not filled: %s; fill it with `%s`", g.symbol, g.first,
                      g.last, g.size, why, fill_command(self.exchange, self.subscription.get(g.symbol, g.symbol), g))

    async def settle(self, timeout: float) -> None:
        """At the stop: fill what is noted or waiting (no grace) for up to `timeout` seconds; the rest is unfilled."""
        self.settling = True
        if self.fetcher is None:
            await self.step(force=True)
            return
        deadline = self.clock() + timeout
        while not self.idle and self.clock() < deadline:
            if self.busy:  # the background task is fetching: let it finish its queue
                await asyncio.sleep(POLL)
                continue
            try:
                await asyncio.wait_for(self.step(force=True), max(0.001, deadline - self.clock()))
            except TimeoutError:
                break
        leftover = [*(g for f in self.queue for g in f.gaps), *self.waiting,
                    *(Gap(s, a, b) for s, a, b in self.dedup.take_jumps())]
        self.queue, self.waiting = [], []
        if leftover:
            self._unfilled(tuple(leftover), "the stream stopped before it was filled")

"""The stream's gap backfill: a background task that fills gaps in trade ids from the exchange's REST API.

Every POLL seconds it takes the gaps the dedup noted (the live path only appends to a list on the rare branch
where ids jump), waits out their grace, keeps what live trades did not close, and fetches the rest in order
through the exchange's TradeFetcher. Backfilled rows pass the dedup's backfill check (so a live copy of the same
trade is produced once) and go through the live encoder and producer queue (`RowSink`). A gap wider than
K2_BACKFILL_MAX_TRADES, or one the fetcher gives up on, is reported unfilled with its numbers; the stream goes on.

Feeds without trade ids (a hash of the fields instead) have no id gaps: their gaps are time windows around
connection breaks and restarts (k2cli.stream.windows), fetched by time through the same fetcher, dedup check and
producer queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any, Protocol

from k2cli.exchanges.base import ROW_SOURCE_SEQUENCE, ROW_TIMESTAMP, ROW_TRADE_ID, Row
from k2cli.observe.metrics import StreamMetrics
from k2cli.stream.dedup import Deduplicator
from k2cli.stream.gaps import Fetch, Gap, due, fill_command, narrow, plan_fetches
from k2cli.stream.row_sink import RowSink
from k2cli.stream.summary import StreamSummary
from k2cli.stream.windows import Window, WindowTracker, window_command

log = logging.getLogger("k2.stream")

POLL = 0.1  # seconds between looks at the dedup's noted gaps
TIME_MARGIN_US = 60_000_000  # a time cursor starts this long before the last trade seen ahead of a gap


class Fetcher(Protocol):
    """What the backfill needs of k2cli.exchanges.rest.TradeFetcher."""

    def fetch_ids(self, symbol: str, from_id: int, to_id: int, *,
                  after_us: int | None = None) -> AsyncIterator[list[Row]]: ...

    def fetch_window(self, symbol: str, since_us: int, until_us: int) -> AsyncIterator[list[Row]]: ...

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
        self.queue: list[Fetch | Window] = []  # planned fetches not finished yet, in order
        self.busy = False  # a step is under way
        self.settling = False  # the run is stopping: settle() does the last steps
        self._hi_at: dict[str, tuple[int, int]] = {}  # symbol -> (highest id, wall µs when it was first seen)
        self.windows: WindowTracker | None = None  # set for feeds without ids: gaps by time window
        self.key_time: Callable[[Any], int] = int  # such a feed's trade time (µs) from its dedup key

    @property
    def idle(self) -> bool:
        """Nothing noted, waiting or being fetched."""
        return not (self.waiting or self.busy or self.queue or self.dedup.jumps
                    or (self.windows is not None and self.windows.ready))

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
        windows = self._ready_windows()
        if not gaps and not windows:
            return
        self.summary.gaps_seen += len(gaps) + len(windows)
        if self.fetcher is None:
            for g in gaps:
                log.warning("gap in %s trade ids %d..%d (%d ids); backfill is off", g.symbol, g.first, g.last, g.size)
            for w in windows:
                log.warning("possible gap in %s between trades at %d and %d µs (a connection break); backfill is off;"
                            " fill it with `%s`", w.symbol, w.since_us, w.until_us, self._window_command(w))
            return
        fetches, too_wide = plan_fetches(gaps, self.max_trades)
        for g in too_wide:
            self._unfilled((g,), f"{g.size:,} ids, more than K2_BACKFILL_MAX_TRADES={self.max_trades:,}")
        self.queue.extend([*fetches, *windows])
        self.busy = True
        try:
            while self.queue:
                item = self.queue[0]
                await (self._fill(item) if isinstance(item, Fetch) else self._fill_window(item))
                self.queue.pop(0)
        finally:
            self.busy = False

    def _ready_windows(self) -> list[Window]:
        """Windows whose first trade after the break has come (feeds without ids)."""
        if self.windows is None:
            return []
        self.windows.first_trades(self._first_times())
        return self.windows.take()

    def _first_times(self, exclude: int | None = None) -> dict[str, int]:
        """Per symbol, the earliest first trade time of the open connections (but `exclude`)."""
        kt = self.key_time
        return {s: min(kt(k) for k in keys) for s, keys in self.dedup.first_keys(exclude).items()}

    def connection_closed(self, conn: int, stopping: bool) -> None:
        """Before the dedup forgets a closed connection: the windows its end opens (feeds without ids)."""
        if self.windows is not None:
            kt = self.key_time
            edges = {s: (kt(a), kt(b)) for s, (a, b) in self.dedup.edges(conn).items()}
            self.windows.closed(edges, self._first_times(exclude=conn), opens=not stopping)

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
        assert self.fetcher is not None
        pages = self.fetcher.fetch_ids(self.subscription.get(fetch.symbol, fetch.symbol), fetch.first, fetch.last,
                                       after_us=fetch.after_us)
        why = await self._produce(fetch.symbol, pages, ROW_SOURCE_SEQUENCE)
        if why:
            self._unfilled(fetch.gaps, why)
        else:
            self._filled(fetch)

    async def _fill_window(self, w: Window) -> None:
        """Fetch one time window (edges included) and produce the trades the stream has not seen."""
        assert self.fetcher is not None
        reached: list[int] = []  # the time of the last trade fetched, when the limit stopped the fetch
        pages = self.fetcher.fetch_window(self.subscription.get(w.symbol, w.symbol), w.since_us, w.until_us + 1)
        why = await self._produce(w.symbol, pages, ROW_TRADE_ID, limit=self.max_trades, reached=reached)
        if why:
            self._unfilled_window(Window(w.symbol, reached[0], w.until_us) if reached else w, why)
            return
        self.summary.gaps_filled += 1
        self.metrics.backfill_gaps.labels(self.exchange, "filled").inc()
        log.info("filled the window of %s between trades at %d and %d µs", w.symbol, w.since_us, w.until_us)

    async def _produce(self, symbol: str, pages: AsyncIterator[list[Row]], key_index: int,
                       limit: int = 0, reached: list[int] | None = None) -> str:
        """Produce the fetched rows the dedup has not seen; why the fetch stopped short ("" when it did not).

        limit: stop once more rows than this were fetched (a window's size is not known before), noting in
        `reached` the time of the last row fetched."""
        from k2cli.exchanges.rest import RestGaveUp

        assert self.rows is not None
        accept, put, rows = self.dedup.accept_backfilled, self.rows.put, self.rows
        added = fetched = 0
        try:
            async for page in pages:
                key: Hashable
                for row in page:
                    key = row[key_index]
                    if accept(symbol, key):
                        put(row)
                        added += 1
                self._count_trades(symbol, added)
                added = 0
                fetched += len(page)
                if limit and fetched > limit and page:
                    if reached is not None:
                        reached.append(page[-1][ROW_TIMESTAMP])
                    return f"more than K2_BACKFILL_MAX_TRADES={limit:,} trades in the window"
                await rows.room()
        except asyncio.CancelledError:
            self._count_trades(symbol, added)
            raise
        except RestGaveUp as exc:
            self._count_trades(symbol, added)
            return f"the REST API gave up: {exc}"
        except Exception as exc:  # a fetch failing must not stop the live stream
            self._count_trades(symbol, added)
            return f"{type(exc).__name__}: {exc}"
        return ""

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

    def _window_command(self, w: Window) -> str:
        return window_command(self.exchange, self.subscription.get(w.symbol, w.symbol), w)

    def _unfilled_window(self, w: Window, why: str) -> None:
        self.summary.gaps_unfilled += 1
        self.metrics.backfill_gaps.labels(self.exchange, "unfilled").inc()
        if len(self.summary.unfilled_gaps) < 100:
            self.summary.unfilled_gaps.append({"symbol": w.symbol, "since_us": w.since_us, "until_us": w.until_us,
                                               "why": why})
        log.error("gap in %s between trades at %d and %d µs not filled: %s; fill it with `%s`", w.symbol,
                  w.since_us, w.until_us, why, self._window_command(w))

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
        if self.windows is not None:
            self.windows.stop(time.time_ns() // 1000)
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
        leftover = [*(g for f in self.queue if isinstance(f, Fetch) for g in f.gaps), *self.waiting,
                    *(Gap(s, a, b) for s, a, b in self.dedup.take_jumps())]
        windows = [*(w for w in self.queue if isinstance(w, Window)), *(self.windows.take() if self.windows else [])]
        self.queue, self.waiting = [], []
        if leftover:
            self._unfilled(tuple(leftover), "the stream stopped before it was filled")
        for w in windows:
            self._unfilled_window(w, "the stream stopped before it was filled")

"""`k2 backfill`'s engine: one historical range of a symbol's trades from the REST API into Kafka.

By trade id (from_id..to_id; no to_id: up to the trades printed once the command started) or by time window
(since..until, `fetch_window`). Rows go through the stream's own encoder and producer queue (`RowSink`), so the
records are those the stream would write (key by symbol, vendor_data source=rest). Stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from k2cli.errors import ConfigError, K2Error
from k2cli.exchanges import registry
from k2cli.exchanges.base import ROW_SOURCE_SEQUENCE, ROW_TIMESTAMP, Row
from k2cli.settings import Settings, ensure_writable_dir
from k2cli.stream.dead_letters import DeadLetterSink

Status = Literal["running", "completed", "interrupted", "failed"]
Progress = Callable[[int, int | None], None]  # (done, total or None): ids or µs covered so far


@dataclass
class RangeSummary:
    """What one `k2 backfill` run did."""

    exchange: str
    symbol: str
    topic: str
    rest_url: str
    from_id: int | None = None
    to_id: int | None = None
    since_us: int | None = None
    until_us: int | None = None
    status: Status = "running"
    fetched: int = 0
    produced: int = 0
    undelivered: int = 0
    produce_errors: int = 0
    dlq_trades: int = 0  # undelivered or refused trades kept in the dead-letter directory (replayable)
    dlq_dir: str = ""
    first_id: int | None = None
    last_id: int | None = None
    requests: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class RangeRequest:
    """What to fill: a symbol (as --symbols takes it) and an id range or a time window."""

    exchange: str
    symbol: str
    topic: str
    rest_url: str
    from_id: int | None = None
    to_id: int | None = None
    since_us: int | None = None
    until_us: int | None = None


def check_request(req: RangeRequest) -> None:
    """Reject a range that cannot be asked for (ConfigError, exit 2 from the command)."""
    desc = registry.get(req.exchange)
    if desc.rest is None:
        raise ConfigError(f"{desc.title} has no REST trade history in k2")
    by_id, by_time = req.from_id is not None, req.since_us is not None
    if by_id == by_time:
        raise ConfigError("give either --from-id (and --to-id) or --since (and --until)")
    if by_id and desc.rest.ids_need_time:
        raise ConfigError(f"{desc.title}'s REST API pages by time: give --since/--until")
    if by_time and not desc.rest.windows:
        raise ConfigError(f"{desc.title}'s REST API pages by trade id only: give --from-id/--to-id")
    if by_id and (req.from_id < 0 or (req.to_id is not None and req.to_id < req.from_id)):  # type: ignore[operator]
        raise ConfigError("--from-id must be 0 or more and --to-id at least --from-id")
    if by_time and req.until_us is not None and req.until_us <= req.since_us:  # type: ignore[operator]
        raise ConfigError("--until must be after --since")


class RangeFill:
    """Fetches one range and produces it; `run()` returns the summary (status failed carries the error)."""

    def __init__(self, settings: Settings, req: RangeRequest, on_progress: Progress | None = None) -> None:
        check_request(req)
        if not req.rest_url.startswith(("http://", "https://")):
            raise ConfigError(f"--rest-url {req.rest_url!r} is not an http:// or https:// URL",
                              setting=registry.get(req.exchange).setting("rest_url"))
        self.settings = settings
        self.req = req
        self.desc = registry.get(req.exchange)
        self.summary = RangeSummary(exchange=req.exchange, symbol=req.symbol, topic=req.topic, rest_url=req.rest_url,
                                    from_id=req.from_id, to_id=req.to_id, since_us=req.since_us,
                                    until_us=req.until_us)
        self.on_progress = on_progress or (lambda done, total: None)
        self.dead_letters = DeadLetterSink(req.exchange, req.topic, self._kept)
        self._stop = False

    def run(self) -> RangeSummary:
        """Fill the range, flush Kafka, and say how it went."""
        from k2cli.stream.row_sink import open_row_sink

        started = time.monotonic()
        ensure_writable_dir(self.settings.dlq_path, "K2_DLQ_DIR")
        self.dead_letters.open(self.settings.dlq_path)
        self.summary.dlq_dir = str(self.settings.dlq_path)
        rows = open_row_sink(self.settings, self.req.topic, self._delivery_failed, self.dead_letters.unacknowledged)
        try:
            asyncio.run(self._main(rows))
        except K2Error as exc:
            self.summary.status, self.summary.error = "failed", str(exc)
        finally:
            self.summary.undelivered = rows.sink.drain(self.settings.stream_flush_timeout)
            self.dead_letters.write_now()
            self.summary.produced = rows.sink.producer.delivered
            self.summary.duration_seconds = round(time.monotonic() - started, 3)
        if self.summary.status == "running":
            self.summary.status = "interrupted" if self._stop else "completed"
        return self.summary

    def _delivery_failed(self, key: bytes | None, value: bytes | None, name: str, message: str) -> None:
        self.summary.produce_errors += 1
        self.dead_letters.delivery_failed(key, value, message)

    def _kept(self, entries: int, trades: int) -> None:
        self.summary.dlq_trades += trades

    def _count_request(self, label: str) -> None:
        self.summary.requests[label] = self.summary.requests.get(label, 0) + 1

    async def _main(self, rows: Any) -> None:
        from k2cli.exchanges.rest import RestGaveUp, TradeFetcher

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._request_stop)
        from k2cli.exchanges.dialer import build_ssl_context

        key = self.settings.exchange(self.req.exchange).rest_api_key
        tls = build_ssl_context(self.settings.ssl_verify, self.settings.ca_bundle)
        fetcher = TradeFetcher(self.desc, self.req.rest_url, api_key=key, on_request=self._count_request, tls=tls)
        try:
            async for page in self._pages(fetcher):
                for row in page:
                    rows.put(row)
                self._note(page)
                await rows.room()
                if self._stop:
                    break
        except RestGaveUp as exc:
            raise K2Error(f"the REST API gave up: {exc}", setting=self.desc.setting("rest_url")) from None
        finally:
            await fetcher.aclose()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    def _request_stop(self) -> None:
        self._stop = True

    async def _pages(self, fetcher: Any) -> AsyncIterator[list[Row]]:
        """The fetcher's pages; an open id range ends at the first page reaching trades printed after the start."""
        req, started_us = self.req, time.time_ns() // 1000
        if req.since_us is not None:
            until = req.until_us if req.until_us is not None else started_us
            async for page in fetcher.fetch_window(req.symbol, req.since_us, until):
                yield page
            return
        assert req.from_id is not None
        to_id = req.to_id if req.to_id is not None else 2**62
        async for page in fetcher.fetch_ids(req.symbol, req.from_id, to_id):
            yield page
            if req.to_id is None and page and page[-1][ROW_TIMESTAMP] >= started_us:
                return

    def _note(self, page: list[Row]) -> None:
        if not page:
            return
        s, req = self.summary, self.req
        s.fetched += len(page)
        ids = [r[ROW_SOURCE_SEQUENCE] for r in page if type(r[ROW_SOURCE_SEQUENCE]) is int]  # none on id-less feeds
        if ids:
            s.first_id = min(ids) if s.first_id is None else min(s.first_id, *ids)
            s.last_id = max(ids) if s.last_id is None else max(s.last_id, *ids)
        if req.from_id is not None and s.last_id is not None:
            total = req.to_id - req.from_id + 1 if req.to_id is not None else None
            self.on_progress(s.last_id - req.from_id + 1, total)
        else:
            assert req.since_us is not None
            until = req.until_us if req.until_us is not None else time.time_ns() // 1000
            self.on_progress(page[-1][ROW_TIMESTAMP] - req.since_us, until - req.since_us)

"""Trade history from an exchange's public REST API, page by page, within its rate limits (httpx, async).

Names no exchange: the descriptor's dialect (`descriptor.rest`, k2cli.exchanges.rest_dialect) builds the
requests and reads the pages. The caller bounds how much it takes (it stops iterating).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from k2cli.exchanges.base import ROW_SOURCE_SEQUENCE, ROW_TIMESTAMP, FrameError, Row, now_us
from k2cli.exchanges.rest_dialect import RestAnswerError, RestDialect, RestPage, RestRequest
from k2cli.exchanges.rest_limits import Decision, decide, pace_wait, weight_pause
from k2cli.reliability.retry import Backoff, Retries

if TYPE_CHECKING:
    import ssl

    import httpx

    from k2cli.exchanges.descriptor import ExchangeDescriptor

__all__ = ["RestDialect", "RestGaveUp", "TradeFetcher"]

BACKOFF = Backoff(initial=0.5, maximum=30.0)
MAX_FAILURES = 8  # consecutive failed calls (5xx, timeouts, rate limits) before RestGaveUp


class RestGaveUp(Exception):
    """The fetcher stopped before the range was complete: why, and how many rows it had yielded."""

    def __init__(self, reason: str, fetched: int) -> None:
        super().__init__(f"{reason} ({fetched} trades fetched)")
        self.reason = reason
        self.fetched = fetched


class TradeFetcher:
    """Pages of trades of one exchange's REST API, as rows the live parser would build (source=rest)."""

    def __init__(self, descriptor: ExchangeDescriptor, base_url: str, *, api_key: str = "",
                 timeout: float = 10.0, on_request: Callable[[str], None] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        dialect = descriptor.rest
        if dialect is None:
            raise ValueError(f"{descriptor.title} has no REST trade history in k2")
        self.dialect: RestDialect = dialect
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.tls = tls  # the WebSocket's TLS context (K2_SSL_VERIFY, K2_CA_BUNDLE); None: httpx's default checks
        self._on_request = on_request
        self._headers = {dialect.api_key_header: api_key} if api_key and dialect.api_key_header else {}
        self.backoff = BACKOFF  # between retries of 5xx and timeouts
        self.max_failures = MAX_FAILURES  # consecutive failed calls of one page before RestGaveUp
        self._client: httpx.AsyncClient | None = None
        self._last_call: float | None = None  # monotonic time of the last call (the venue's pace)
        self._pause_until = 0.0  # monotonic time before which no call goes out (weight budget, Retry-After)

    async def fetch_ids(self, symbol: str, from_id: int, to_id: int, *,
                        after_us: int | None = None) -> AsyncIterator[list[Row]]:
        """Pages of the trades with from_id <= id <= to_id, ids ascending; after_us: time of the trade before."""
        d = self.dialect
        if d.ids_need_time and after_us is None:
            raise RestGaveUp("this REST API pages by time: the time of the trade before the gap is needed", 0)
        fetched = 0
        lowest = from_id  # one above the last id yielded: a page overlapping the one before yields nothing twice
        cursor: int | None = d.ids_start(from_id, to_id, after_us)
        while cursor is not None and lowest <= to_id:
            page = await self._page(d.ids_request(symbol, cursor), symbol, window=False, fetched=fetched)
            rows = [r for r in page.rows if lowest <= r[ROW_SOURCE_SEQUENCE] <= to_id]
            if rows:
                fetched += len(rows)
                lowest = rows[-1][ROW_SOURCE_SEQUENCE] + 1
                yield rows
            cursor = d.ids_next(page, cursor, to_id)

    async def fetch_window(self, symbol: str, since_us: int, until_us: int) -> AsyncIterator[list[Row]]:
        """Pages of every trade with since_us <= timestamp < until_us, in time order (for feeds without ids)."""
        d = self.dialect
        if not d.windows:
            raise RestGaveUp("this exchange's REST API pages by trade id only (no time window)", 0)
        fetched = 0
        cursor: int | None = d.window_start(since_us)
        while cursor is not None and since_us < until_us:
            page = await self._page(d.window_request(symbol, cursor), symbol, window=True, fetched=fetched)
            rows = [r for r in page.rows if since_us <= r[ROW_TIMESTAMP] < until_us]
            if rows:
                fetched += len(rows)
                yield rows
            cursor = d.window_next(page, cursor, until_us)

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _page(self, request: RestRequest, symbol: str, *, window: bool, fetched: int) -> RestPage:
        """One page, retried through rate limits, 5xx and timeouts; RestGaveUp when it cannot be had."""
        retries = Retries(self.backoff)
        while True:
            decision, page = await self._attempt(request, symbol, window)
            if decision.action == "ok" and page is not None:
                return page
            if decision.action == "give_up":
                raise RestGaveUp(decision.reason, fetched)
            wait = retries.failed()
            if retries.failures >= self.max_failures:
                raise RestGaveUp(f"{retries.failures} failed calls in a row, last: {decision.reason}", fetched)
            if decision.action == "wait":  # Retry-After is a floor: repeated limits wait longer, as backoff grows
                wait = max(wait, decision.wait)
            self._pause_until = max(self._pause_until, time.monotonic() + wait)

    async def _attempt(self, request: RestRequest, symbol: str, window: bool) -> tuple[Decision, RestPage | None]:
        """One HTTP call after the venue's pace: its decision, and the page when it is usable."""
        import httpx

        await self._wait_turn()
        client = self._client_()
        self._last_call = time.monotonic()
        try:
            answer = await client.get(request.path, params=list(request.params))
        except httpx.TimeoutException as exc:
            return self._count(Decision("backoff", "timeout", reason=f"timeout: {type(exc).__name__}")), None
        except httpx.HTTPError as exc:
            return self._count(Decision("backoff", "error", reason=f"{type(exc).__name__}: {exc}")), None
        headers = answer.headers
        self._pause_until = max(self._pause_until,
                                time.monotonic() + weight_pause(headers, self.dialect.limits, time.time()))
        body = answer.content
        reason = "" if answer.status_code == 200 else self.dialect.error_text(answer.status_code, body)
        decision = self._count(decide(answer.status_code, headers, reason, time.time()))
        if decision.action != "ok":
            return decision, None
        try:
            return decision, self.dialect.parse(symbol, body, headers, now_us(), window)
        except RestAnswerError as exc:
            action = {"rate_limited": "wait", "unavailable": "backoff", "refused": "give_up"}[exc.kind]
            return Decision(action, "200", 1.0, exc.reason), None  # type: ignore[arg-type]  # the map's values
        except FrameError as exc:
            return Decision("give_up", "200", reason=f"unusable answer: {exc.reason}"), None

    def _count(self, decision: Decision) -> Decision:
        if self._on_request is not None:
            self._on_request(decision.label)
        return decision

    async def _wait_turn(self) -> None:
        """Sleep until the venue's pace and any pause (weight budget, Retry-After, backoff) allow a call."""
        now = time.monotonic()
        wait = max(pace_wait(self._last_call, now, self.dialect.limits), self._pause_until - now)
        if wait > 0:
            await asyncio.sleep(wait)

    def _client_(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, headers=self._headers,
                                             follow_redirects=True, verify=self.tls if self.tls is not None else True)
        return self._client

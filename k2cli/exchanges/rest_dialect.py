"""What one exchange's REST trade history looks like to k2: requests, pages, cursors, limits. Pure: no I/O.

Each exchange's module holds a dialect (`descriptor.rest`); `k2cli.exchanges.rest.TradeFetcher` drives it.
Cursors are plain ints whose meaning the dialect alone knows (Binance: the next fromId; Kraken: `since` in
ns; Coinbase: `after`, one above the newest id a page may hold).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol

from k2cli.exchanges.base import ROW_TIMESTAMP, FrameError, Row

SOURCE_REST = ("source", "rest")  # the vendor_data entry every backfilled row ends with

# what an error inside an answer means: wait and retry, retry with backoff, or stop
ErrorKind = Literal["rate_limited", "unavailable", "refused"]


@dataclass(frozen=True)
class RestRequest:
    """One GET: the path under the base URL and its query parameters, in order."""

    path: str
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RestPage:
    """The trades of one answer as rows, ascending, and the venue's own cursor for the next page (or None)."""

    rows: list[Row]
    cursor: int | None = None


@dataclass(frozen=True)
class RestLimits:
    """How fast a venue may be asked: a minimum interval between calls, and a request-weight budget per minute."""

    min_interval: float = 0.0  # seconds between two calls (Kraken's public endpoints: about one per second)
    weight_header: str = ""  # the answer header with the weight used this minute (Binance X-MBX-USED-WEIGHT-1M)
    weight_limit: int = 0  # weight allowed per minute
    call_weight: int = 0  # weight of one trade-history call
    weight_share: float = 0.8  # the part of the limit k2 allows itself (the live stream and others use the rest)


class RestAnswerError(Exception):
    """An answer that carries the venue's error instead of trades; `kind` says what the fetcher does."""

    def __init__(self, kind: ErrorKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class RestDialect(Protocol):
    """One venue's trade-history API, pure: the fetcher does the I/O, pacing and retries."""

    limits: RestLimits
    api_key_header: str  # header carrying the optional API key ("" when the venue has none)
    ids_need_time: bool  # fetch_ids pages by time and needs the time of the last trade before the gap
    windows: bool  # whether fetch_window is available (paging by time)

    def ids_start(self, from_id: int, to_id: int, after_us: int | None) -> int:
        """The cursor of the first page holding from_id."""
        ...

    def ids_request(self, symbol: str, cursor: int) -> RestRequest:
        """The request of the page at `cursor` (symbol in the stream's subscription form)."""
        ...

    def ids_next(self, page: RestPage, cursor: int, to_id: int) -> int | None:
        """The cursor of the page after `page` (fetched at `cursor`), or None when to_id is reached or none is left."""
        ...

    def window_start(self, since_us: int) -> int:
        """The cursor of the first page of trades at or after since_us."""
        ...

    def window_request(self, symbol: str, cursor: int) -> RestRequest:
        """The request of the time page at `cursor`."""
        ...

    def window_next(self, page: RestPage, cursor: int, until_us: int) -> int | None:
        """The cursor after a time page, or None when until_us is reached or no trade is left."""
        ...

    def parse(self, symbol: str, body: bytes, headers: Mapping[str, str], ingest_us: int, window: bool) -> RestPage:
        """The rows of a 200 answer, ascending (window: rows as the id-less live feed builds them);
        raises RestAnswerError for an error inside the answer, FrameError for one that is not usable."""
        ...

    def error_text(self, status: int, body: bytes) -> str:
        """One line from the venue's error answer (its message, or the status when there is none)."""
        ...


def with_source(row: Row, replace: Mapping[str, str] | None = None) -> Row:
    """A live parser's row as a backfilled one: vendor_data values in `replace` swapped, ("source", "rest") added."""
    vendor = row[14]
    if replace:
        vendor = tuple((k, replace.get(k, v)) for k, v in vendor)
    return (*row[:14], (*vendor, SOURCE_REST))


def last_time(page: RestPage) -> int | None:
    """The timestamp (µs) of a page's last row, or None for an empty page."""
    return page.rows[-1][ROW_TIMESTAMP] if page.rows else None


def load_json(body: bytes, parse_float: type[Decimal] | None = None) -> Any:
    """An answer's JSON (numbers with a fraction as Decimal when asked), or a FrameError."""
    try:
        return json.loads(body, parse_float=parse_float) if parse_float else json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError("invalid_json", f"not JSON: {exc}") from None


def error_field(status: int, body: bytes, *keys: str) -> str:
    """One line from a JSON error answer: the first of `keys` present (else a short text, else the status)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        for key in keys:
            if data.get(key):
                value = data[key]
                return "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    text = body[:200].decode("utf-8", "replace").strip().splitlines()
    return text[0] if text else f"HTTP {status}"


class IdsOnly:
    """Part of a dialect whose venue pages by trade id only: no time windows."""

    windows = False

    def window_start(self, since_us: int) -> int:
        """Not available: the fetcher checks `windows` first."""
        raise NotImplementedError("this venue's trade history pages by id only")

    def window_request(self, symbol: str, cursor: int) -> RestRequest:
        """Not available: the fetcher checks `windows` first."""
        raise NotImplementedError("this venue's trade history pages by id only")

    def window_next(self, page: RestPage, cursor: int, until_us: int) -> int | None:
        """Not available: the fetcher checks `windows` first."""
        raise NotImplementedError("this venue's trade history pages by id only")

"""Coinbase Exchange REST trade history (`GET /products/P/trades`) as rows of the live parser. Pure: no I/O.

The venue pages backwards: `after=N` answers the trades with trade_id < N, newest first. Ids being
consecutive per product, k2 walks forwards instead: the page at cursor N holds ids N-1000 .. N-1, so the
first cursor is from_id + 1000 and each next one 1000 higher; each page is reversed to ascending ids.
A REST trade has no feed `sequence` nor order ids: those vendor_data values are empty, `event_type` is
"match", and ("source", "rest") ends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from k2cli.exchanges.base import ROW_SOURCE_SEQUENCE, FrameError
from k2cli.exchanges.rest_dialect import (
    IdsOnly,
    RestLimits,
    RestPage,
    RestRequest,
    error_field,
    load_json,
    with_source,
)

if TYPE_CHECKING:
    from k2cli.exchanges.coinbase import CoinbaseParser

PAGE = 1000
FIELDS = ("trade_id", "price", "size", "side", "time")
_NO_FEED_FIELDS = {"sequence": ""}  # the REST answer has no feed sequence


class CoinbaseRest(IdsOnly):
    """Trades by `after` (exclusive upper trade_id); public calls about 10 a second per IP."""

    limits = RestLimits(min_interval=0.1)
    api_key_header = ""
    ids_need_time = False

    def __init__(self) -> None:
        self._parser: CoinbaseParser | None = None

    def ids_start(self, from_id: int, to_id: int, after_us: int | None) -> int:
        """The page whose oldest id is from_id."""
        return from_id + PAGE

    def ids_request(self, symbol: str, cursor: int) -> RestRequest:
        """`/products/BTC-USD/trades?limit=1000&after=N`."""
        return RestRequest(f"/products/{symbol}/trades", (("limit", str(PAGE)), ("after", str(cursor))))

    def ids_next(self, page: RestPage, cursor: int, to_id: int) -> int | None:
        """1000 ids higher, until the page covers to_id or holds the newest trade (it ends below cursor - 1)."""
        if cursor > to_id or not page.rows or page.rows[-1][ROW_SOURCE_SEQUENCE] < cursor - 1:
            return None
        return cursor + PAGE

    def parse(self, symbol: str, body: bytes, headers: Mapping[str, str], ingest_us: int, window: bool) -> RestPage:
        """The trades of an answer as the live parser's rows, ids ascending."""
        data = load_json(body)
        if not isinstance(data, list):
            raise FrameError("unknown_event", f"expected a JSON array of trades, got {type(data).__name__}")
        parser = self._live()
        rows = [with_source(parser.trade_row(_as_match(symbol, t), "match", ingest_us), _NO_FEED_FIELDS)
                for t in data]
        rows.sort(key=lambda r: r[ROW_SOURCE_SEQUENCE])
        return RestPage(rows, _int_header(headers, "cb-after"))

    def error_text(self, status: int, body: bytes) -> str:
        """Coinbase's `{"message": "..."}` as one line."""
        return error_field(status, body, "message")

    def _live(self) -> CoinbaseParser:
        if self._parser is None:  # imported here: coinbase.py imports this module for its descriptor
            from k2cli.exchanges.coinbase import CoinbaseParser

            self._parser = CoinbaseParser()
        return self._parser


def _as_match(product: str, t: object) -> dict[str, Any]:
    """A REST trade in the WebSocket match message's shape (sequence 0 stands in; emptied afterwards)."""
    if not isinstance(t, dict):
        raise FrameError("invalid_value", f"trade {t!r} is not an object")
    missing = [k for k in FIELDS if k not in t]
    if missing:
        raise FrameError("missing_field", f"trade without field(s) {', '.join(missing)}")
    return {"trade_id": t["trade_id"], "sequence": 0, "product_id": product, "price": t["price"],
            "size": t["size"], "side": t["side"], "time": t["time"]}


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header, or None when absent or not an integer."""
    raw = headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None

"""Binance spot REST trade history (`GET /api/v3/historicalTrades`) as rows of the live parser. Pure: no I/O.

A REST trade has no event time: the row's vendor_data `event_time` is the trade time (`time`), as the
WebSocket's `E` would be within milliseconds; `event_type` stays "trade" and ("source", "rest") ends it.
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
    from k2cli.exchanges.binance import BinanceParser

PATH = "/api/v3/historicalTrades"
PAGE = 1000  # the most Binance gives per call
FIELDS = ("id", "price", "qty", "time", "isBuyerMaker")


class BinanceRest(IdsOnly):
    """historicalTrades by fromId; weight 25 a call, 6000 a minute (X-MBX-USED-WEIGHT-1M); optional API key."""

    limits = RestLimits(weight_header="X-MBX-USED-WEIGHT-1M", weight_limit=6000, call_weight=25)
    api_key_header = "X-MBX-APIKEY"
    ids_need_time = False

    def __init__(self) -> None:
        self._parser: BinanceParser | None = None

    def ids_start(self, from_id: int, to_id: int, after_us: int | None) -> int:
        """The first page starts at from_id."""
        return from_id

    def ids_request(self, symbol: str, cursor: int) -> RestRequest:
        """`historicalTrades?symbol=S&fromId=N&limit=1000`."""
        return RestRequest(PATH, (("symbol", symbol), ("fromId", str(cursor)), ("limit", str(PAGE))))

    def ids_next(self, page: RestPage, cursor: int, to_id: int) -> int | None:
        """The id after the page's last, until to_id is reached or a page comes back empty."""
        if not page.rows:
            return None
        last = page.rows[-1][ROW_SOURCE_SEQUENCE]
        return last + 1 if cursor <= last < to_id else None

    def parse(self, symbol: str, body: bytes, headers: Mapping[str, str], ingest_us: int, window: bool) -> RestPage:
        """The trades of an answer as the live parser's rows, ids ascending."""
        data = load_json(body)
        if not isinstance(data, list):
            raise FrameError("unknown_event", f"expected a JSON array of trades, got {type(data).__name__}")
        parser = self._live()
        rows = [with_source(parser.trade_row(_as_event(symbol, t), ingest_us)) for t in data]
        rows.sort(key=lambda r: r[ROW_SOURCE_SEQUENCE])
        return RestPage(rows)

    def error_text(self, status: int, body: bytes) -> str:
        """Binance's `{"code": -1003, "msg": "..."}` as one line ("-1003: ...")."""
        msg = error_field(status, body, "msg")
        code = error_field(status, body, "code") if b'"code"' in body else ""
        return f"{code}: {msg}" if code and code != msg else msg

    def _live(self) -> BinanceParser:
        if self._parser is None:  # imported here: binance.py imports this module for its descriptor
            from k2cli.exchanges.binance import BinanceParser

            self._parser = BinanceParser()
        return self._parser


def _as_event(symbol: str, t: object) -> dict[str, Any]:
    """A REST trade in the WebSocket trade event's shape (no event time: the trade time stands in)."""
    if not isinstance(t, dict):
        raise FrameError("invalid_value", f"trade {t!r} is not an object")
    missing = [k for k in FIELDS if k not in t]
    if missing:
        raise FrameError("missing_field", f"trade without field(s) {', '.join(missing)}")
    return {"e": "trade", "E": t["time"], "s": symbol, "t": t["id"], "p": t["price"], "q": t["qty"],
            "T": t["time"], "m": t["isBuyerMaker"], "M": t.get("isBestMatch")}

"""Kraken spot REST trade history (`GET /0/public/Trades`) as rows of the live parsers. Pure: no I/O.

Kraken pages by time: `since` (ns) returns the trades strictly after it, `last` is the next page's `since`;
each entry ends with the trade id. By id (`fetch_ids`, for WS v2) the rows are those of the WS v2 parser:
the pair as v2 sends it, the time as v2's RFC 3339 µs text, `channel_type` "rest". By time window
(`fetch_window`, for WS v1, which has no trade ids) they are the WS v1 parser's rows, whose ids hash the
raw fields: the REST time is written as v1 writes it (seconds, six decimals), so the same trade gets the same
id from either side when the prices' text matches too. Times are read with Decimal, never float.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from k2cli.exchanges.base import ROW_SOURCE_SEQUENCE, ROW_TIMESTAMP, FrameError
from k2cli.exchanges.rest_dialect import (
    RestAnswerError,
    RestLimits,
    RestPage,
    RestRequest,
    error_field,
    load_json,
    with_source,
)
from k2cli.exchanges.symbols import kraken_v1_pair

if TYPE_CHECKING:
    from k2cli.exchanges.kraken import KrakenV1Parser, KrakenV2Parser

PATH = "/0/public/Trades"
PAGE = 1000
_SIDES = {"b": "buy", "s": "sell"}
_ORDER_TYPES = {"m": "market", "l": "limit"}
_RATE_LIMITED = ("EGeneral:Too many requests", "EAPI:Rate limit exceeded", "EGeneral:Temporary lockout")
_UNAVAILABLE = ("EService:Unavailable", "EService:Busy", "EService:Market in cancel_only mode")


def rest_pair(pair: str) -> str:
    """The REST name of a normalised pair: BTC/USD -> XBTUSD."""
    return kraken_v1_pair(pair).replace("/", "")


def time_us(value: object) -> int:
    """Exact µs of a REST time (a JSON number read as Decimal or int, seconds); digits beyond µs truncated."""
    if type(value) is int or (type(value) is Decimal and value.is_finite()):
        us = int(Decimal(value).scaleb(6))  # int() truncates toward zero; times are positive
        if us > 0:
            return us
    raise FrameError("invalid_value", f"trade time {value!r} is not a positive number of seconds")


def v2_time(us: int) -> str:
    """RFC 3339 with six decimals, as WS v2 writes trade times (2023-07-06T18:53:17.827736Z)."""
    return datetime.fromtimestamp(us // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def v1_time(us: int) -> str:
    """Seconds with six decimals, as WS v1 writes trade times (1688669597.827736)."""
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


class KrakenRest:
    """Trades by `since` (ns) and `last`; about one public call a second; errors inside the answer."""

    limits = RestLimits(min_interval=1.0)
    api_key_header = ""
    ids_need_time = True
    windows = True

    def __init__(self) -> None:
        self._v1: KrakenV1Parser | None = None
        self._v2: KrakenV2Parser | None = None

    def ids_start(self, from_id: int, to_id: int, after_us: int | None) -> int:
        """Just before the µs of the trade before the gap: that trade and everything after (clipped by id)."""
        return self.window_start(after_us or 0)

    def ids_request(self, symbol: str, cursor: int) -> RestRequest:
        """`Trades?pair=XBTUSD&since=<ns>&count=1000`."""
        return RestRequest(PATH, (("pair", rest_pair(symbol)), ("since", str(cursor)), ("count", str(PAGE))))

    def ids_next(self, page: RestPage, cursor: int, to_id: int) -> int | None:
        """`last` until a trade id reaches to_id, a page is empty or `last` stops moving."""
        if not page.rows or max(r[ROW_SOURCE_SEQUENCE] for r in page.rows) >= to_id:
            return None
        return page.cursor if page.cursor is not None and page.cursor > cursor else None

    def window_start(self, since_us: int) -> int:
        """One ns before since_us: `since` is exclusive, and a trade at since_us belongs to the window."""
        return max(0, since_us * 1000 - 1)

    def window_request(self, symbol: str, cursor: int) -> RestRequest:
        """The same call as by id: Kraken pages by time either way."""
        return self.ids_request(symbol, cursor)

    def window_next(self, page: RestPage, cursor: int, until_us: int) -> int | None:
        """`last` until a trade reaches until_us, a page is empty or `last` stops moving."""
        if not page.rows or page.rows[-1][ROW_TIMESTAMP] >= until_us:
            return None
        return page.cursor if page.cursor is not None and page.cursor > cursor else None

    def parse(self, symbol: str, body: bytes, headers: Mapping[str, str], ingest_us: int, window: bool) -> RestPage:
        """The entries of an answer as WS v2 rows (by id) or WS v1 rows (window), in the answer's order."""
        entries, last = _result(load_json(body, parse_float=Decimal))
        if not entries:
            return RestPage([], last)
        if window:
            v1pair = kraken_v1_pair(symbol)
            rows = self._parsers()[0].trade_rows([0, [_v1_entry(e) for e in entries], "trade", v1pair], ingest_us)
        else:
            data = [_v2_trade(symbol, e) for e in entries]
            rows = self._parsers()[1].trade_rows({"channel": "trade", "type": "rest", "data": data}, ingest_us)
        return RestPage([with_source(r) for r in rows.trades], last)

    def error_text(self, status: int, body: bytes) -> str:
        """Kraken's `{"error": ["EQuery:Unknown asset pair"]}` as one line."""
        return error_field(status, body, "error")

    def _parsers(self) -> tuple[KrakenV1Parser, KrakenV2Parser]:
        if self._v1 is None or self._v2 is None:  # imported here: kraken.py imports this module for its descriptor
            from k2cli.exchanges.kraken import KrakenV1Parser, KrakenV2Parser

            self._v1, self._v2 = KrakenV1Parser(), KrakenV2Parser()
        return self._v1, self._v2


def _result(msg: object) -> tuple[list[Any], int | None]:
    """(entries, last) of an answer; RestAnswerError for the errors Kraken puts inside it."""
    if not isinstance(msg, dict):
        raise FrameError("unknown_event", f"expected a JSON object, got {type(msg).__name__}")
    errors = msg.get("error") or []
    if errors:
        text = "; ".join(map(str, errors))
        if any(str(e).startswith(_RATE_LIMITED) for e in errors):
            raise RestAnswerError("rate_limited", text)
        if any(str(e).startswith(_UNAVAILABLE) for e in errors):
            raise RestAnswerError("unavailable", text)
        raise RestAnswerError("refused", text)
    result = msg.get("result")
    if not isinstance(result, dict):
        raise FrameError("missing_field", "answer without result")
    keys = [k for k in result if k != "last"]
    if len(keys) != 1 or not isinstance(result[keys[0]], list):
        raise FrameError("invalid_value", f"expected one pair in the result, got {keys}")
    last = result.get("last")
    try:
        cursor = int(str(last)) if last is not None else None
    except ValueError:
        raise FrameError("invalid_value", f"last {last!r} is not an integer") from None
    return result[keys[0]], cursor


def _fields(e: object) -> tuple[Any, ...]:
    """price, volume, µs, side, order type, misc, trade id of an entry."""
    if not isinstance(e, list) or len(e) < 7:
        raise FrameError("missing_field", f"trade {e!r} has fewer than 7 fields")
    return e[0], e[1], time_us(e[2]), e[3], e[4], e[5], e[6]


def _v1_entry(e: object) -> list[Any]:
    """An entry in the WS v1 trade array's form: [price, volume, "sec.µs", side, type, misc]."""
    price, vol, us, side, kind, misc, _ = _fields(e)
    return [price, vol, v1_time(us), side, kind, misc]


def _v2_trade(pair: str, e: object) -> dict[str, Any]:
    """An entry in the WS v2 trade object's form (exact Decimals, RFC 3339 µs time, buy/sell, market/limit)."""
    price, vol, us, side, kind, _, trade_id = _fields(e)
    if type(price) is not str or type(vol) is not str:
        raise FrameError("invalid_value", "price and volume must be strings")
    try:
        return {"symbol": pair, "side": _SIDES.get(side, side), "price": Decimal(price), "qty": Decimal(vol),
                "trade_id": trade_id, "timestamp": v2_time(us), "ord_type": _ORDER_TYPES.get(kind, kind)}
    except ArithmeticError:
        raise FrameError("invalid_value", f"price {price!r} or volume {vol!r} is not a number") from None

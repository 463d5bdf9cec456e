"""The REST trade fetcher against the simulator's REST endpoints (a real `k2 simulate` process): every id of a
range exactly once with exact values vs its --record file, 429 with Retry-After and 5xx retried, and Kraken
v1's time windows giving the ids the live v1 parser gives."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest
from websockets.sync.client import connect

from k2cli.exchanges import registry
from k2cli.exchanges.base import ROW_SOURCE_SEQUENCE, ROW_TIMESTAMP, Row, row_to_record
from k2cli.exchanges.kraken import KrakenV1Parser
from k2cli.exchanges.rest import RestGaveUp, TradeFetcher
from tests.integration.stream_support import read_record_file, simulator

pytestmark = pytest.mark.integration

SYMBOLS = {"binance": "BTCUSDT", "kraken": "BTC/USD", "coinbase": "BTC-USD"}
RATE = "1200"  # trades a second: about 3,000 in the run, three pages of 1,000


def _run_market(exchange: str, url: str, seconds: float, ws_path: str = "") -> list[str]:
    """Subscribe over the WebSocket (the simulator's market clock starts with a subscriber); its frames."""
    plan = registry.get(exchange).plan((url.rstrip("/") + ws_path,), (SYMBOLS[exchange],))
    frames: list[str] = []
    with connect(plan.urls[0]) as ws:
        for message in plan.subscribe:
            ws.send(message)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                frames.append(str(ws.recv(timeout=0.5)))
            except TimeoutError:
                continue
    time.sleep(0.3)  # the record file is flushed on the market's next tick
    return frames


def _rest_base(url: str) -> str:
    """The simulator's REST base URL: http on the WebSocket's host and port."""
    return "http://" + url.split("//", 1)[1].split("/", 1)[0]


def _fetch_ids(exchange: str, base: str, lo: int, hi: int, after_us: int | None) -> tuple[list[Row], list[str]]:
    labels: list[str] = []

    async def run() -> list[Row]:
        fetcher = TradeFetcher(registry.get(exchange), base, on_request=labels.append)
        rows: list[Row] = []
        try:
            async for page in fetcher.fetch_ids(SYMBOLS[exchange], lo, hi, after_us=after_us):
                assert [r[ROW_SOURCE_SEQUENCE] for r in page] == sorted(r[ROW_SOURCE_SEQUENCE] for r in page)
                rows += page
        finally:
            await fetcher.aclose()
        return rows

    return asyncio.run(run()), labels


def _recorded(path: Path, exchange: str) -> list[dict]:
    records = [r for r in read_record_file(path) if r["symbol"] == SYMBOLS[exchange]]
    assert len(records) > 2_000, f"the simulator printed only {len(records)} trades"
    return records


def _assert_exact(rows: list[Row], expected: list[dict], exchange: str) -> None:
    """Each expected trade once, in order, with its exact price, quantity and time, marked source=rest."""
    assert [r[ROW_SOURCE_SEQUENCE] for r in rows] == [t["seq"] for t in expected]
    for row, trade in zip(rows, expected, strict=True):
        record = row_to_record(row)
        assert record["price"] == Decimal(trade["price"]) and record["quantity"] == Decimal(trade["qty"])
        assert type(record["price"]) is Decimal and type(record["quantity"]) is Decimal
        ts = trade["ts_us"] // 1000 * 1000 if exchange == "binance" else trade["ts_us"]  # Binance REST: ms
        assert record["timestamp"] == ts
        assert record["vendor_data"]["source"] == "rest"


@pytest.mark.parametrize("exchange", list(SYMBOLS))
def test_fetch_ids_is_exact(exchange, tmp_path, k2_env):
    record = tmp_path / "record.jsonl"
    with simulator(exchange, ["--symbols", SYMBOLS[exchange], "--rate", RATE, "--record", str(record)],
                   k2_env, tmp_path) as url:
        _run_market(exchange, url, 2.5, "/v2" if exchange == "kraken" else "")
        trades = _recorded(record, exchange)
        lo, hi = trades[5]["seq"], trades[-5]["seq"]  # inside the history: the clipping shows at both ends
        rows, labels = _fetch_ids(exchange, _rest_base(url), lo, hi, after_us=trades[4]["ts_us"])
    _assert_exact(rows, trades[5:-4], exchange)
    assert set(labels) == {"200"} and len(labels) >= 3


@pytest.mark.parametrize("exchange", list(SYMBOLS))
def test_429_and_5xx_are_retried(exchange, tmp_path, k2_env):
    record = tmp_path / "record.jsonl"
    faults = ["--rest-429-every", "3", "--rest-5xx-every", "4"]
    with simulator(exchange, ["--symbols", SYMBOLS[exchange], "--rate", RATE, "--record", str(record), *faults],
                   k2_env, tmp_path) as url:
        _run_market(exchange, url, 2.5)
        trades = _recorded(record, exchange)
        rows, labels = _fetch_ids(exchange, _rest_base(url), trades[0]["seq"], trades[-1]["seq"],
                                  after_us=trades[0]["ts_us"] - 1)
    _assert_exact(rows, trades, exchange)
    assert "429" in labels and "5xx" in labels and "418" not in labels  # waited out Retry-After: never banned
    assert labels.count("200") >= 3


def test_unknown_symbol_gives_up_with_the_venues_words(tmp_path, k2_env):
    labels: list[str] = []

    async def run() -> None:
        fetcher = TradeFetcher(registry.get("binance"), _rest_base(url), on_request=labels.append)
        try:
            async for _ in fetcher.fetch_ids("DOGEUSDT", 1, 10):
                pass
        finally:
            await fetcher.aclose()

    with simulator("binance", ["--symbols", "BTCUSDT"], k2_env, tmp_path) as url, \
            pytest.raises(RestGaveUp) as gave_up:
        asyncio.run(run())
    assert "Invalid symbol" in gave_up.value.reason and gave_up.value.fetched == 0
    assert labels == ["4xx"]


def test_kraken_v1_window_gives_the_live_v1_ids(tmp_path, k2_env):
    record = tmp_path / "record.jsonl"
    with simulator("kraken", ["--symbols", "BTC/USD", "--rate", RATE, "--record", str(record)],
                   k2_env, tmp_path) as url:
        frames = _run_market("kraken", url, 2.5)  # the simulator serves v1 on its root path
        trades = _recorded(record, "kraken")
        parser = KrakenV1Parser()
        live = {row[1]: row for frame in frames if frame.startswith("[")
                for row in parser.parse_rows(frame, 0).trades}
        # up to the last trade the live client read (it may lag the market when it closes)
        since, until = trades[100]["ts_us"], max(row[ROW_TIMESTAMP] for row in live.values())

        async def run() -> list[Row]:
            fetcher = TradeFetcher(registry.get("kraken"), _rest_base(url))
            rows: list[Row] = []
            try:
                async for page in fetcher.fetch_window("BTC/USD", since, until):
                    rows += page
            finally:
                await fetcher.aclose()
            return rows

        rows = asyncio.run(run())
    expected = [t for t in trades if since <= t["ts_us"] < until]
    assert len(rows) == len(expected) and [r[ROW_TIMESTAMP] for r in rows] == [t["ts_us"] for t in expected]
    assert len(rows) > 1_000
    in_window = {tid for tid, row in live.items() if since <= row[ROW_TIMESTAMP] < until}
    assert {r[1] for r in rows} == in_window  # the same trade, the same hashed id, from either side
    assert all(row_to_record(r)["vendor_data"]["source"] == "rest" for r in rows)


@pytest.mark.parametrize(("fault", "timeout", "label"), [
    (["--rest-5xx-every", "1"], 10.0, "5xx"),  # every answer a 503 or 500
    (["--rest-delay-ms", "800"], 0.3, "timeout"),  # every answer later than the client waits
])
def test_a_venue_that_keeps_failing_ends_in_rest_gave_up(fault, timeout, label, tmp_path, k2_env):
    labels: list[str] = []

    async def run() -> None:
        fetcher = TradeFetcher(registry.get("binance"), _rest_base(url), timeout=timeout, on_request=labels.append)
        fetcher.max_failures = 3
        try:
            async for _ in fetcher.fetch_ids("BTCUSDT", 1, 10):
                pass
        finally:
            await fetcher.aclose()

    with simulator("binance", ["--symbols", "BTCUSDT", *fault], k2_env, tmp_path) as url, \
            pytest.raises(RestGaveUp) as gave_up:
        asyncio.run(run())
    assert labels == [label] * 3
    assert gave_up.value.reason.startswith("3 failed calls in a row") and gave_up.value.fetched == 0

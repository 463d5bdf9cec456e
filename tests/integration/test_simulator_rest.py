"""`k2 simulate`'s REST trade history, read with httpx from the real process on its WebSocket's port: pages are
consecutive and agree exactly with the --record file and with what the WebSocket delivered over the same span;
the WebSocket never replays what a client missed; the rate limit, bans, injected 429/5xx and slow answers;
HTTPS when serving wss://."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.integration.stream_support import read_record_file, self_signed_cert, simulator

pytestmark = pytest.mark.integration


def _base(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{'https' if scheme == 'wss' else 'http'}://{rest.split('/', 1)[0]}"


async def _ws_trades(url: str, subscribe: dict | None, n: int) -> list[dict]:
    """The first n data messages of a WebSocket connection (after an optional subscribe message)."""
    import websockets

    out: list[dict] = []
    async with websockets.connect(url) as ws:
        if subscribe is not None:
            await ws.send(json.dumps(subscribe))
        while len(out) < n:
            msg = json.loads(await ws.recv())
            out.append(msg)
    return out


def _record(path: Path, symbol: str) -> dict[int, dict]:
    time.sleep(0.2)  # the simulator flushes the record file every clock tick
    return {r["seq"]: r for r in read_record_file(path) if r["symbol"] == symbol}


def _stats(tmp: Path) -> dict:
    log = max(tmp.glob("sim-*.log"), key=lambda p: p.stat().st_mtime)
    return next(json.loads(line) for line in log.read_text().splitlines() if '"stopped"' in line)["stats"]


def test_binance_pages_agree_with_the_websocket_and_the_record_file(tmp_path, k2_env):
    record = tmp_path / "tape.jsonl"
    args = ["--symbols", "BTCUSDT,ETHUSDT", "--rate", "300", "--skip-ids-every", "11", "--record", str(record),
            "--format", "json"]
    with simulator("binance", args, k2_env, tmp_path) as url:
        stream = url + "?streams=btcusdt@trade/ethusdt@trade"
        first = [m["data"] for m in asyncio.run(_ws_trades(stream, None, 200)) if m["data"]["s"] == "BTCUSDT"]
        time.sleep(0.5)  # trades printed while no one listens
        second = [m["data"] for m in asyncio.run(_ws_trades(stream, None, 50)) if m["data"]["s"] == "BTCUSDT"]
        ws = first + second
        pages, from_id = [], ws[0]["t"]
        with httpx.Client(base_url=_base(url), timeout=10) as client:
            while from_id <= ws[-1]["t"]:
                answer = client.get("/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "fromId": from_id,
                                                                        "limit": 37})
                assert answer.status_code == 200 and answer.headers["X-MBX-USED-WEIGHT-1M"]
                pages.append(answer.json())
                from_id = pages[-1][-1]["id"] + 1
        recorded = _record(record, "BTCUSDT")
    rest = [t for page in pages for t in page]
    ids = sorted(i for i in recorded if ws[0]["t"] <= i <= rest[-1]["id"])
    assert [t["id"] for t in rest] == ids  # consecutive pages: every printed id once, none invented
    assert any(b - a > 1 for a, b in zip(ids, ids[1:], strict=False))  # the tape skipped ids, REST too
    by_id = {t["id"]: t for t in rest}
    for t in ws:  # exactly what the WebSocket printed
        assert by_id[t["t"]] == {"id": t["t"], "price": t["p"], "qty": t["q"], "quoteQty": by_id[t["t"]]["quoteQty"],
                                 "time": t["T"], "isBuyerMaker": t["m"], "isBestMatch": True}
        assert Decimal(by_id[t["t"]]["quoteQty"]) == Decimal(t["p"]) * Decimal(t["q"])
    for t in rest:  # and exactly what --record wrote
        r = recorded[t["id"]]
        assert (Decimal(t["price"]), Decimal(t["qty"]), t["time"], t["isBuyerMaker"]) == \
            (Decimal(r["price"]), Decimal(r["qty"]), r["ts_us"] // 1000, r["side"] == "sell")
    missed = [i for i in ids if first[-1]["t"] < i < second[0]["t"] and i not in {t["t"] for t in ws}]
    assert missed, "trades were printed while no WebSocket listened: only REST has them"
    stats = _stats(tmp_path)
    assert stats["rest_requests"] == {"200": len(pages)}


def test_kraken_pages_by_since_agree_with_ws_v2(tmp_path, k2_env):
    record = tmp_path / "tape.jsonl"
    with simulator("kraken", ["--symbols", "BTC/USD,ETH/USD", "--rate", "300", "--kraken-version", "2",
                              "--record", str(record)], k2_env, tmp_path) as url:
        subscribe = {"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"],
                                                       "snapshot": False}}
        msgs = asyncio.run(_ws_trades(url, subscribe, 120))
        ws = [t for m in msgs if m.get("channel") == "trade" for t in m["data"] if t["symbol"] == "BTC/USD"]
        first_us = _us(ws[0]["timestamp"])
        rows, since = [], str(first_us * 1000 - 1)
        with httpx.Client(base_url=_base(url), timeout=10) as client:
            while not rows or rows[-1][6] < ws[-1]["trade_id"]:
                body = client.get("/0/public/Trades", params={"pair": "XBTUSD", "since": since, "count": 25}).json()
                assert body["error"] == []
                rows.extend(body["result"]["XXBTZUSD"])
                since = body["result"]["last"]
        recorded = _record(record, "BTC/USD")
    ids = [r[6] for r in rows]
    assert ids == sorted(i for i in recorded if ws[0]["trade_id"] <= i <= ids[-1])
    by_id = {r[6]: r for r in rows}
    for t in ws:
        r = by_id[t["trade_id"]]
        assert (Decimal(r[0]), Decimal(r[1]), r[3], r[4]) == (Decimal(str(t["price"])), Decimal(str(t["qty"])),
                                                             t["side"][0], t["ord_type"][0])
        assert round(Decimal(str(r[2])) * 1_000_000) == _us(t["timestamp"])


def _us(rfc: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp()) * 1_000_000 + int(rfc[20:26])


def test_coinbase_pages_newest_first_agree_with_the_matches(tmp_path, k2_env):
    record = tmp_path / "tape.jsonl"
    with simulator("coinbase", ["--symbols", "BTC-USD,ETH-USD", "--rate", "300", "--record", str(record)],
                   k2_env, tmp_path) as url:
        msgs = asyncio.run(_ws_trades(url, {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"],
                                            "channels": ["matches"]}, 150))
        ws = [m for m in msgs if m.get("type") == "match" and m["product_id"] == "BTC-USD"]
        got: list[dict] = []
        with httpx.Client(base_url=_base(url), timeout=10) as client:
            after = str(ws[-1]["trade_id"] + 1)
            while not got or got[-1]["trade_id"] > ws[0]["trade_id"]:
                answer = client.get("/products/BTC-USD/trades", params={"limit": 20, "after": after})
                page = answer.json()
                assert answer.status_code == 200 and answer.headers["CB-AFTER"] == str(page[-1]["trade_id"])
                assert answer.headers["CB-BEFORE"] == str(page[0]["trade_id"])
                got.extend(page)
                after = answer.headers["CB-AFTER"]
        recorded = _record(record, "BTC-USD")
    span = [t for t in got if t["trade_id"] >= ws[0]["trade_id"]]
    assert [t["trade_id"] for t in span] == sorted((i for i in recorded if i >= ws[0]["trade_id"]
                                                    and i <= ws[-1]["trade_id"]), reverse=True)
    assert [{k: t[k] for k in ("time", "trade_id", "price", "size", "side")} for t in reversed(ws)] == span


def test_injected_faults_and_counts(tmp_path, k2_env):
    args = ["--symbols", "BTC/USD", "--rest-429-every", "3", "--rest-5xx-every", "5", "--format", "json"]
    with simulator("kraken", args, k2_env, tmp_path) as url, httpx.Client(base_url=_base(url), timeout=10) as client:
        answers = [client.get("/0/public/Trades", params={"pair": "XBTUSD"}) for _ in range(10)]
    assert [a.status_code for a in answers] == [200, 200, 429, 200, 503, 429, 200, 200, 429, 500]
    assert answers[2].headers["Retry-After"] == "1" and answers[2].json() == {"error": ["EGeneral:Too many requests"]}
    assert answers[4].json() == {"error": ["EService:Unavailable"]}
    assert _stats(tmp_path)["rest_requests"] == {"200": 5, "429": 3, "503": 1, "500": 1}


def test_binance_rate_limit_ban_and_slow_answers_over_tls(tmp_path, k2_env):
    cert, key = self_signed_cert(tmp_path)
    args = ["--symbols", "BTCUSDT", "--rest-rate-limit", "1", "--rest-delay-ms", "300", "--tls-cert", str(cert),
            "--tls-key", str(key), "--format", "json"]
    context = ssl.create_default_context(cafile=str(cert))
    with simulator("binance", args, k2_env, tmp_path) as url:
        assert url.startswith("wss://")
        with httpx.Client(base_url=_base(url), timeout=10, verify=context) as client:
            get = lambda: client.get("/api/v3/historicalTrades", params={"symbol": "BTCUSDT"})  # noqa: E731
            started = time.monotonic()
            first = get()
            assert time.monotonic() - started >= 0.3  # the answer waited --rest-delay-ms
            limited = get()  # 0.3 s later: over 1 request per second
            banned = get()  # within the Retry-After of the 429
            time.sleep(int(banned.headers["Retry-After"]) + 0.1)
            after = get()
    assert first.status_code == 200 and first.json() == []  # no WebSocket subscriber yet: the market has not started
    assert limited.status_code == 429 and limited.json()["code"] == -1003 and limited.headers["Retry-After"] == "1"
    assert banned.status_code == 418 and banned.headers["Retry-After"] == "2"
    weight = int(after.headers["X-MBX-USED-WEIGHT-1M"])
    assert after.status_code == 200 and weight % 25 == 0 and 0 < weight <= 4 * 25  # (a minute may turn meanwhile)
    assert _stats(tmp_path)["rest_requests"] == {"200": 2, "429": 1, "418": 1}

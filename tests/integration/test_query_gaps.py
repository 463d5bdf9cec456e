"""`k2 query gaps` against a real Iceberg table (SQLite catalog, local warehouse) written here with pyiceberg."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from k2cli.timespec import from_micros, iso, to_micros
from tests.conftest import run_k2

pytestmark = pytest.mark.integration

T0 = to_micros(dt.datetime(2024, 5, 1, tzinfo=dt.UTC))
SECOND = 1_000_000


def _trade(exchange: str, symbol: str, trade_id: str, seq: int | None, at: int) -> dict[str, Any]:
    from k2cli.trade import new_trade

    return new_trade(trade_id=trade_id, symbol=symbol, exchange=exchange, timestamp_us=T0 + at * SECOND,
                     price="100.5", quantity="0.25", currency="USD", side="BUY",
                     ingestion_timestamp_us=T0 + at * SECOND + 5, source_sequence=seq)


def _lake(root: Path, batches: list[list[dict[str, Any]]]) -> dict[str, str]:
    import pyarrow as pa

    from k2cli.lake.catalog import ensure_trades_table, open_catalog
    from k2cli.settings import load_settings
    from k2cli.trade import arrow_schema

    settings = load_settings(data_dir=root / "data")
    name = f"k2test_{uuid.uuid4().hex[:8]}.trades_v2"
    table = ensure_trades_table(open_catalog(settings), name)
    for batch in batches:
        table.append(pa.Table.from_pylist(batch, schema=arrow_schema()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update({"K2_HOME": str(root / "home"), "K2_DATA_DIR": str(root / "data"), "K2_TABLE": name})
    return env


@pytest.fixture(scope="module")
def holes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """BINANCE BTCUSDT 1..100 without 40..44 and 77, trade 10 twice; KRAKEN BTCUSD 500..520 clean (written in
    two batches, the older ids last); hash-id KRAKEN XBTEUR trades, one twice."""
    binance = [_trade("BINANCE", "BTCUSDT", f"BINANCE-{i}", i, i) for i in range(1, 101)
               if not 40 <= i <= 44 and i != 77]
    binance.append(_trade("BINANCE", "BTCUSDT", "BINANCE-10", 10, 10))
    kraken = [_trade("KRAKEN", "BTCUSD", f"KRAKEN-BTC/USD-{i}", i, i - 400) for i in range(500, 521)]
    hashed = [_trade("KRAKEN", "XBTEUR", f"KRAKEN-{T0 + i}-{i:012x}", None, i) for i in range(5)]
    hashed.append(dict(hashed[2], message_id=str(uuid.uuid4())))
    return _lake(tmp_path_factory.mktemp("gaps"), [binance[:50], kraken[10:], binance[50:], kraken[:10], hashed])


def _gaps(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    proc = run_k2(["query", "gaps", *args, "--format", "json"], env=env)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_a_hole_and_a_duplicate_exit_1_with_exact_ranges(holes: dict[str, str]) -> None:
    rc, report = _gaps(holes)
    assert rc == 1 and report["ok"] is False
    by_symbol = {(s["exchange"], s["symbol"]): s for s in report["symbols"]}
    assert set(by_symbol) == {("BINANCE", "BTCUSDT"), ("KRAKEN", "BTCUSD"), ("KRAKEN", "XBTEUR")}
    btc = by_symbol[("BINANCE", "BTCUSDT")]
    assert btc == {"exchange": "BINANCE", "symbol": "BTCUSDT", "rows": 95, "trades": 94, "first_id": 1,
                   "last_id": 100, "ids": 94, "missing_ids": 6, "missing": [[40, 44], [77, 77]],
                   "duplicate_trades": 1, "duplicate_rows": 1, "duplicates": [{"trade_id": "BINANCE-10", "rows": 2}],
                   "ok": False}
    kraken = by_symbol[("KRAKEN", "BTCUSD")]
    assert (kraken["first_id"], kraken["last_id"], kraken["ids"], kraken["missing"], kraken["ok"]) == (
        500, 520, 21, [], True)
    hashed = by_symbol[("KRAKEN", "XBTEUR")]
    assert hashed["first_id"] is None and hashed["missing"] == []
    assert hashed["duplicates"] == [{"trade_id": f"KRAKEN-{T0 + 2}-{2:012x}", "rows": 2}]
    assert report["missing_ids"] == 6 and report["duplicate_trades"] == 2


@pytest.mark.parametrize("symbol", ["BTC/USD", "btc-usd", "BTCUSD", "XBT/USD"])
def test_symbols_as_stored_or_as_typed(holes: dict[str, str], symbol: str) -> None:
    rc, report = _gaps(holes, "--exchange", "kraken", "--symbol", symbol)
    assert rc == 0 and report["ok"] is True
    assert [(s["exchange"], s["symbol"], s["ids"]) for s in report["symbols"]] == [("KRAKEN", "BTCUSD", 21)]


def test_the_window_bounds_the_ids_checked(holes: dict[str, str]) -> None:
    since, until = iso(from_micros(T0 + 45 * SECOND)), iso(from_micros(T0 + 77 * SECOND))
    rc, report = _gaps(holes, "--symbol", "BTCUSDT", "--since", since, "--until", until)
    assert rc == 0, report
    assert [(s["first_id"], s["last_id"], s["ids"]) for s in report["symbols"]] == [(45, 76, 32)]
    rc, report = _gaps(holes, "--symbol", "BTCUSDT", "--since", since)
    assert rc == 1 and report["symbols"][0]["missing"] == [[77, 77]] and not report["symbols"][0]["duplicates"]


def test_rich_output_lists_the_ranges(holes: dict[str, str]) -> None:
    proc = run_k2(["query", "gaps", "--exchange", "BINANCE"], env=holes)
    assert proc.returncode == 1, proc.stderr
    assert "40..44" in proc.stdout and "BINANCE-10 ×2" in proc.stdout
    assert "6 ids missing, 1 trades duplicated" in proc.stdout


def test_a_clean_table_exits_0(tmp_path: Path) -> None:
    env = _lake(tmp_path, [[_trade("BINANCE", "ETHUSDT", f"BINANCE-{i}", i, i) for i in range(7, 30)]])
    rc, report = _gaps(env)
    assert rc == 0 and report["ok"] is True and report["missing_ids"] == 0 and report["duplicate_trades"] == 0
    assert report["symbols"][0]["missing"] == [] and report["symbols"][0]["ids"] == 23
    proc = run_k2(["query", "gaps"], env=env)
    assert proc.returncode == 0 and "every id present once" in proc.stdout
    rc, report = _gaps(env, "--symbol", "NOSUCH")
    assert rc == 0 and report["symbols"] == []

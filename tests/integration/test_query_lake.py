"""k2 query against a real Iceberg table (SQLite catalog, local warehouse) written here with pyiceberg appends.

Every expectation is computed from the records written, not from the query engine.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from k2cli.timespec import from_micros, iso, to_micros
from tests.conftest import run_k2

pytestmark = pytest.mark.integration

DAY0 = to_micros(dt.datetime(2024, 3, 1, tzinfo=dt.UTC))
MINUTE = 60_000_000
MARKETS = [("BTCUSDT", "BINANCE", "USDT"), ("ETHUSDT", "BINANCE", "USDT"), ("BTCUSD", "KRAKEN", "USD"),
           ("SOLUSDT", "BINANCE", "USDT")]


def _trades(count: int = 1200) -> list[dict[str, Any]]:
    """Deterministic v2 trades over three days: exact 8-place decimals, nulls, lists, maps and timestamp ties."""
    from k2cli.trade import new_trade

    rng = random.Random(7)
    out = []
    for i in range(count):
        symbol, exchange, currency = MARKETS[i % 3]  # SOLUSDT is kept for the OHLCV set
        ts = DAY0 + i * 3 * MINUTE + rng.randrange(1_000_000)
        if i % 97 == 0 and out:
            ts = out[-3]["timestamp"]  # a tie with the previous trade of the same symbol
        out.append(new_trade(
            trade_id=f"{exchange}-{i:06d}", symbol=symbol, exchange=exchange, timestamp_us=ts,
            price=f"{rng.randrange(1, 99_999)}.{rng.randrange(10**8):08d}",
            quantity=f"{rng.randrange(0, 50)}.{rng.randrange(1, 10**8):08d}", currency=currency,
            side=rng.choice(["BUY", "SELL"]), ingestion_timestamp_us=ts + rng.randrange(1, 5_000_000),
            source_sequence=None if i % 11 == 0 else 1000 + i,
            platform_sequence=i if i % 2 else None,
            vendor_data=None if i % 5 == 0 else {"is_buyer_maker": str(i % 2 == 0), "n": str(i)},
            trade_conditions=["ODD_LOT"] if i % 13 == 0 else [],
            message_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        ))
    return out


def _ohlcv_trades() -> list[dict[str, Any]]:
    """The hand-computed OHLCV set (see EXPECTED_1M / EXPECTED_5M)."""
    from k2cli.trade import new_trade

    t0 = DAY0 + 10 * 86_400_000_000  # 2024-03-11 00:00:00
    rows = [  # (µs after t0, price, quantity, source_sequence, symbol, exchange)
        (10_000_000, "100.5", "2", 1, "SOLUSDT", "BINANCE"),
        (30_000_000, "101.25", "1", 2, "SOLUSDT", "BINANCE"),
        (59_999_999, "99.75", "0.5", 3, "SOLUSDT", "BINANCE"),
        (60_000_000, "100", "3", 4, "SOLUSDT", "BINANCE"),
        (90_000_000, "102.12345678", "0.00000001", 5, "SOLUSDT", "BINANCE"),
        (300_000_000, "98", "1", 11, "SOLUSDT", "BINANCE"),  # same time as the next one, later sequence
        (300_000_000, "97.5", "2", 10, "SOLUSDT", "BINANCE"),
        (20_000_000, "5000", "7", 1, "SOLUSDT", "KRAKEN"),  # another exchange: its own bars
        (20_000_000, "1", "1", 1, "ETHUSDT", "BINANCE"),  # another symbol: never in SOLUSDT bars
    ]
    return [new_trade(trade_id=f"{ex}-SOL-{n}", symbol=sym, exchange=ex, timestamp_us=t0 + off, price=p, quantity=q,
                      currency="USDT", side="BUY", ingestion_timestamp_us=t0 + off + 1, source_sequence=seq)
            for n, (off, p, q, seq, sym, ex) in enumerate(rows)]


def _ts(day: int, minute: int = 0, second: int = 0) -> str:
    return f"2024-03-{11 + day:02d}T00:{minute:02d}:{second:02d}.000000+00:00"


D = Decimal
EXPECTED_1M = [  # computed by hand from _ohlcv_trades (BINANCE only)
    {"interval_start": _ts(0, 0), "open": D("100.5"), "high": D("101.25"), "low": D("99.75"), "close": D("99.75"),
     "volume": D("3.5"), "notional": D("352.125"), "vwap": D("100.60714286"), "trade_count": 3},
    {"interval_start": _ts(0, 1), "open": D("100"), "high": D("102.12345678"), "low": D("100"),
     "close": D("102.12345678"), "volume": D("3.00000001"), "notional": D("300.0000010212345678"),
     "vwap": D("100.00000001"), "trade_count": 2},
    {"interval_start": _ts(0, 5), "open": D("97.5"), "high": D("98"), "low": D("97.5"), "close": D("98"),
     "volume": D("3"), "notional": D("293"), "vwap": D("97.66666667"), "trade_count": 2},
]
EXPECTED_5M = [
    {"interval_start": _ts(0, 0), "open": D("100.5"), "high": D("102.12345678"), "low": D("99.75"),
     "close": D("102.12345678"), "volume": D("6.50000001"), "notional": D("652.1250010212345678"),
     "vwap": D("100.32692308"), "trade_count": 5},  # 100.326923079686…
    {"interval_start": _ts(0, 5), "open": D("97.5"), "high": D("98"), "low": D("97.5"), "close": D("98"),
     "volume": D("3"), "notional": D("293"), "vwap": D("97.66666667"), "trade_count": 2},
]


def _append(table: Any, records: list[dict[str, Any]], offsets: dict[str, Any]) -> None:
    import pyarrow as pa

    from k2cli.trade import arrow_schema

    table.append(pa.Table.from_pylist(records, schema=arrow_schema()),
                 snapshot_properties={"k2.offsets": json.dumps(offsets), "k2.commit-id": uuid.uuid4().hex})


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A table written in consumer-like batches (each batch spans symbols and day boundaries)."""
    from k2cli.lake.catalog import ensure_trades_table, open_catalog
    from k2cli.settings import load_settings

    root = tmp_path_factory.mktemp("lake")
    settings = load_settings(data_dir=root / "data")
    name = f"k2test_{uuid.uuid4().hex[:8]}.trades_v2"
    table = ensure_trades_table(open_catalog(settings), name)
    records = _trades()
    batches = [records[i:i + 300] for i in range(0, len(records), 300)]
    for n, batch in enumerate(batches):
        _append(table, batch, {"market.crypto.trades.binance": {"0": (n + 1) * 300}})
    ohlcv = _ohlcv_trades()
    _append(table, ohlcv, {"market.crypto.trades.binance": {"0": len(records) + len(ohlcv)}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update({"K2_HOME": str(root / "home"), "K2_DATA_DIR": str(root / "data"), "K2_TABLE": name})
    return {"settings": settings, "name": name, "records": records + ohlcv, "env": env, "root": root,
            "batches": len(batches) + 1}


def _open(lake: dict[str, Any], planner: str = "auto") -> Any:
    from k2cli.lake.query import TradesLake

    return TradesLake.open(lake["settings"], lake["name"], planner=planner)


def _expected(records: list[dict[str, Any]], *, symbol: str | None = None, exchange: str | None = None,
              since: int | None = None, until: int | None = None, order: str = "desc",
              limit: int | None = None) -> list[dict[str, Any]]:
    rows = [r for r in records if (symbol is None or r["symbol"] == symbol)
            and (exchange is None or r["exchange"] == exchange)
            and (since is None or r["timestamp"] >= since) and (until is None or r["timestamp"] < until)]
    rows.sort(key=lambda r: (r["timestamp"], r["trade_id"]), reverse=order == "desc")
    return rows[:limit] if limit is not None else rows


def _as_json(record: dict[str, Any]) -> dict[str, Any]:
    """A written record as `k2 query trades --format json` must print it."""
    out = dict(record)
    for name in ("timestamp", "ingestion_timestamp"):
        out[name] = iso(from_micros(record[name]))
    for name in ("price", "quantity"):
        out[name] = format(record[name].quantize(Decimal("1e-8")), "f")
    return out


def _engine_row_as_written(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in ("timestamp", "ingestion_timestamp"):
        out[name] = to_micros(row[name])
    if out["vendor_data"] == []:  # an empty Arrow map
        out["vendor_data"] = {}
    return out


def _written_as_engine(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    out["price"] = record["price"].quantize(Decimal("1e-8"))
    out["quantity"] = record["quantity"].quantize(Decimal("1e-8"))
    return out


# ---------------------------------------------------------------- trades


def test_cli_trades_json_returns_exactly_the_rows_written(lake: dict[str, Any]) -> None:
    proc = run_k2(["query", "trades", "--symbol", "BTCUSDT", "--limit", "25", "--order", "desc", "--format", "json"],
                  env=lake["env"], check=True)
    got = json.loads(proc.stdout)
    want = [_as_json(r) for r in _expected(lake["records"], symbol="BTCUSDT", limit=25)]
    assert got == want
    assert len(got) == 25


@pytest.mark.parametrize("planner", ["metadata", "pyiceberg"])
def test_engine_trades_match_for_filters_orders_and_limits(lake: dict[str, Any], planner: str) -> None:
    engine = _open(lake, planner)
    assert engine.plan().planner == planner
    day2 = DAY0 + 86_400_000_000
    cases = [
        {"symbol": "ETHUSDT", "order": "asc", "limit": 7},
        {"symbol": "BTCUSD", "exchange": "KRAKEN", "order": "desc", "limit": 1000},  # more than exist
        {"symbol": "BTCUSDT", "exchange": "KRAKEN", "order": "desc", "limit": 10},  # none
        {"order": "desc", "limit": 400},  # all symbols, crosses files and days
        {"order": "asc", "limit": 450},
        {"symbol": "BTCUSDT", "since": day2, "until": day2 + 86_400_000_000, "order": "asc", "limit": 100_000},
    ]
    from k2cli.lake.query import TradeFilter

    for case in cases:
        flt = TradeFilter(symbol=case.get("symbol"), exchange=case.get("exchange"), since_us=case.get("since"),
                          until_us=case.get("until"))
        got = [_engine_row_as_written(r) for r in engine.trades(flt, limit=case["limit"], order=case["order"]).rows()]
        want = [_written_as_engine(r) for r in _expected(
            lake["records"], symbol=case.get("symbol"), exchange=case.get("exchange"), since=case.get("since"),
            until=case.get("until"), order=case["order"], limit=case["limit"])]
        for row in want:
            row["vendor_data"] = row["vendor_data"] if row["vendor_data"] is not None else None
        assert [g["trade_id"] for g in got] == [w["trade_id"] for w in want], case
        assert got == [{**w, "vendor_data": w["vendor_data"] if w["vendor_data"] is not None else None}
                       for w in want], case


def test_since_is_inclusive_and_until_exclusive_to_the_microsecond(lake: dict[str, Any]) -> None:
    btc = _expected(lake["records"], symbol="BTCUSDT", order="asc")
    first, second, third = btc[10], btc[11], btc[12]
    proc = run_k2(["query", "trades", "-s", "btcusdt", "--since", iso(from_micros(second["timestamp"])),
                   "--until", iso(from_micros(third["timestamp"])), "--order", "asc", "-f", "json"],
                  env=lake["env"], check=True)
    got = [r["trade_id"] for r in json.loads(proc.stdout)]
    assert first["trade_id"] not in got and third["trade_id"] not in got
    assert got == [r["trade_id"] for r in btc if second["timestamp"] <= r["timestamp"] < third["timestamp"]]


FILTERS = [
    {},
    {"symbol": "ETHUSDT"},
    {"symbol": "SOLUSDT"},
    {"symbol": "NOPE"},
    {"exchange": "KRAKEN"},
    {"since_us": DAY0 + 86_400_000_000},
    {"until_us": DAY0 + 86_400_000_000},
    {"since_us": DAY0 + 86_400_000_000, "until_us": DAY0 + 86_400_000_000 + 1},
    {"symbol": "BTCUSDT", "since_us": DAY0 + 36 * 3_600_000_000, "until_us": DAY0 + 40 * 3_600_000_000},
    {"since_us": DAY0 + 30 * 86_400_000_000},
]


@pytest.mark.parametrize("flt", FILTERS, ids=[str(f) for f in FILTERS])
def test_metadata_planner_keeps_every_file_pyiceberg_keeps(lake: dict[str, Any], flt: dict[str, Any]) -> None:
    """The fast reader prunes soundly: never a file pyiceberg would read; on this table, exactly the same files."""
    from k2cli.lake.query import TradeFilter

    mine = _open(lake, "metadata").plan(TradeFilter(**flt))
    reference = _open(lake, "pyiceberg").plan(TradeFilter(**flt))
    assert sorted(reference.paths) == sorted(mine.paths)
    assert mine.snapshot_id == reference.snapshot_id and mine.total_files == reference.total_files
    by_path = {f.path: f for f in reference.files}
    for f in mine.files:
        assert (f.record_count, f.lower_ts, f.upper_ts) == (by_path[f.path].record_count, by_path[f.path].lower_ts,
                                                            by_path[f.path].upper_ts)


def test_both_planners_see_the_same_snapshots(lake: dict[str, Any]) -> None:
    assert _open(lake, "metadata").snapshots(limit=100) == _open(lake, "pyiceberg").snapshots(limit=100)


def test_one_day_query_reads_only_that_days_files(lake: dict[str, Any]) -> None:
    from k2cli.lake.query import TradeFilter

    engine = _open(lake)
    everything = engine.plan(TradeFilter())
    day = engine.plan(TradeFilter(symbol="ETHUSDT", since_us=DAY0 + 86_400_000_000, until_us=DAY0 + 2 * 86_400_000_000))
    assert everything.total_files == len(everything.files) > len(day.files) > 0
    assert all("timestamp_day=2024-03-02" in f.path for f in day.files)
    # the newest 5 trades of a symbol are found without reading every file
    result = engine.trades(TradeFilter(symbol="ETHUSDT"), limit=5, order="desc")
    assert result.files_read < len(everything.files)


def test_csv_and_parquet_outputs_hold_the_same_exact_values(lake: dict[str, Any], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    want = _expected(lake["records"], symbol="BTCUSD", limit=40)
    proc = run_k2(["query", "trades", "-s", "BTCUSD", "-n", "40", "-f", "csv"], env=lake["env"], check=True)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["trade_id"] for r in rows] == [w["trade_id"] for w in want]
    for row, rec in zip(rows, want, strict=True):
        assert Decimal(row["price"]) == rec["price"] and Decimal(row["quantity"]) == rec["quantity"]
        assert row["timestamp"] == iso(from_micros(rec["timestamp"]))
        assert json.loads(row["trade_conditions"]) == rec["trade_conditions"]
        assert (json.loads(row["vendor_data"]) if row["vendor_data"] else None) == rec["vendor_data"]
        assert row["source_sequence"] == ("" if rec["source_sequence"] is None else str(rec["source_sequence"]))
    out = tmp_path / "t.parquet"
    run_k2(["query", "trades", "-s", "BTCUSD", "-n", "40", "-f", "parquet", "-o", str(out)], env=lake["env"],
           check=True)
    table = pq.read_table(out)
    assert table.column("trade_id").to_pylist() == [w["trade_id"] for w in want]
    assert table.column("price").to_pylist() == [w["price"] for w in want]
    assert [to_micros(t) for t in table.column("timestamp").to_pylist()] == [w["timestamp"] for w in want]


def test_table_output_is_the_default_and_shows_exact_prices(lake: dict[str, Any]) -> None:
    want = _expected(lake["records"], symbol="ETHUSDT", limit=3)
    proc = run_k2(["query", "trades", "--symbol", "ETHUSDT", "--limit", "3"], env=lake["env"], check=True)
    for rec in want:
        assert rec["trade_id"] in proc.stdout
        assert format(rec["price"].quantize(Decimal("1e-8")), "f") in proc.stdout


# ---------------------------------------------------------------- OHLCV


def _bars(stdout: str) -> list[dict[str, Any]]:
    keep = ("interval_start", "open", "high", "low", "close", "volume", "notional", "vwap", "trade_count")
    return [{k: (Decimal(v) if k not in ("interval_start", "trade_count") else v) for k, v in bar.items() if k in keep}
            for bar in json.loads(stdout)]


def test_ohlcv_matches_the_hand_computed_bars(lake: dict[str, Any]) -> None:
    proc = run_k2(["query", "ohlcv", "--symbol", "SOLUSDT", "--exchange", "BINANCE", "--interval", "1m",
                   "--format", "json"], env=lake["env"], check=True)
    assert _bars(proc.stdout) == EXPECTED_1M
    proc = run_k2(["query", "ohlcv", "-s", "SOLUSDT", "-e", "binance", "-i", "5m", "-f", "json", "--since",
                   "2024-03-11", "--until", "2024-03-12"], env=lake["env"], check=True)
    assert _bars(proc.stdout) == EXPECTED_5M


def test_ohlcv_keeps_exchanges_apart(lake: dict[str, Any]) -> None:
    from k2cli.lake.query import TradeFilter

    rows = _open(lake).ohlcv(TradeFilter(symbol="SOLUSDT"), "1d").rows()
    assert [(r["exchange"], r["trade_count"]) for r in rows] == [("BINANCE", 7), ("KRAKEN", 1)]
    kraken = rows[1]
    assert kraken["open"] == kraken["close"] == kraken["vwap"] == Decimal("5000")
    assert kraken["volume"] == Decimal("7")


def test_ohlcv_1h_of_random_trades_agrees_with_python(lake: dict[str, Any]) -> None:
    from k2cli.lake.query import TradeFilter

    rows = _open(lake).ohlcv(TradeFilter(symbol="ETHUSDT"), "1h").rows()
    buckets: dict[int, list[dict[str, Any]]] = {}
    for r in _expected(lake["records"], symbol="ETHUSDT", order="asc"):
        buckets.setdefault(r["timestamp"] // 3_600_000_000, []).append(r)
    assert len(rows) == len(buckets)
    for row, (hour, trades) in zip(rows, sorted(buckets.items()), strict=True):
        trades.sort(key=lambda t: (t["timestamp"], t["source_sequence"] is None, t["source_sequence"] or 0,
                                   t["trade_id"]))
        assert to_micros(row["interval_start"]) == hour * 3_600_000_000
        assert row["open"] == trades[0]["price"] and row["close"] == trades[-1]["price"]
        assert row["high"] == max(t["price"] for t in trades) and row["low"] == min(t["price"] for t in trades)
        assert row["volume"] == sum(t["quantity"] for t in trades)
        assert row["notional"] == sum(t["price"] * t["quantity"] for t in trades)
        assert row["trade_count"] == len(trades)


# ---------------------------------------------------------------- SQL and injection


def test_sql_reads_the_trades_view(lake: dict[str, Any]) -> None:
    proc = run_k2(["query", "sql", "SELECT symbol, count(*) AS n, sum(quantity) AS q FROM trades "
                   "GROUP BY symbol ORDER BY symbol", "--format", "json"], env=lake["env"], check=True)
    got = {r["symbol"]: (r["n"], Decimal(r["q"])) for r in json.loads(proc.stdout)}
    want: dict[str, tuple[int, Decimal]] = {}
    for r in lake["records"]:
        n, q = want.get(r["symbol"], (0, Decimal(0)))
        want[r["symbol"]] = (n + 1, q + r["quantity"])
    assert got == want


@pytest.mark.parametrize("sql", [
    "COPY (SELECT * FROM trades) TO '{leak}'",
    "SELECT * FROM trades; COPY (SELECT 1) TO '{leak}'",
    "ATTACH '{leak}' AS evil",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "CREATE TABLE stolen AS SELECT * FROM trades",
    "DROP VIEW trades",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM query('COPY (SELECT 1) TO ''{leak}''')",
    "WITH x AS (SELECT 1) SELECT * FROM read_parquet('/tmp/*.parquet')",
])
def test_sql_that_writes_or_touches_files_is_refused(lake: dict[str, Any], tmp_path: Path, sql: str) -> None:
    leak = tmp_path / "leak.out"
    proc = run_k2(["query", "sql", sql.format(leak=leak), "--format", "json"], env=lake["env"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("k2: error:")
    assert "Traceback" not in proc.stderr
    assert not leak.exists()


@pytest.mark.parametrize("args", [
    ["--limit", "1; DROP VIEW trades"],
    ["--limit", "100 OR 1=1"],
    ["--limit", "0"],
    ["--order", "desc; DROP VIEW trades"],
    ["--since", "2024-03-01' OR '1'='1"],
])
def test_flag_injection_is_refused(lake: dict[str, Any], args: list[str]) -> None:
    proc = run_k2(["query", "trades", "--symbol", "BTCUSDT", *args, "--format", "json"], env=lake["env"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_quoted_symbol_is_just_a_value(lake: dict[str, Any]) -> None:
    proc = run_k2(["query", "trades", "--symbol", "BTCUSDT' OR '1'='1", "-f", "json"], env=lake["env"])
    assert json.loads(proc.stdout) == []
    assert proc.returncode == 1 and "no trades of symbol BTCUSDT' OR '1'='1" in proc.stderr


def test_symbols_in_the_exchanges_own_notation_find_the_stored_trades(lake: dict[str, Any]) -> None:
    def ids(*args: str) -> list[str]:
        proc = run_k2(["query", "trades", "--limit", "1000", "-f", "json", *args], env=lake["env"], check=True)
        return [r["trade_id"] for r in json.loads(proc.stdout)]

    stored = ids("-s", "BTCUSD")
    assert len(stored) == sum(1 for r in lake["records"] if r["symbol"] == "BTCUSD") > 0
    assert ids("-s", "BTC/USD") == stored and ids("-s", "xbt/usd", "--exchange", "kraken") == stored
    bars = run_k2(["query", "ohlcv", "-s", "BTC/USD", "-i", "1d", "-f", "json"], env=lake["env"], check=True)
    assert sum(b["trade_count"] for b in json.loads(bars.stdout)) == len(stored)


@pytest.mark.parametrize(("args", "why"), [
    (["trades", "--exchange", "coinbase"], "no trades of exchange COINBASE in the table (it has BINANCE, KRAKEN)"),
    (["trades", "-s", "DOGEUSDT"], "no trades of symbol DOGEUSDT in the table (it has BTCUSD, BTCUSDT, ETHUSDT"),
    (["ohlcv", "-s", "BTCUSDT", "--exchange", "kraken"], "no trades of symbol BTCUSDT on KRAKEN in the table (it has "
                                                         "BTCUSD, SOLUSDT)"),
    (["freshness", "-s", "ETH/EUR"], "no trades of symbol ETHEUR"),
])
def test_a_query_matching_no_exchange_or_symbol_says_so(lake: dict[str, Any], args: list[str], why: str) -> None:
    proc = run_k2(["query", *args, "-f", "json"], env=lake["env"])
    assert proc.returncode == 1 and json.loads(proc.stdout) == []
    assert proc.stderr.strip().splitlines()[-1].startswith(f"k2: {why}"), proc.stderr


# ---------------------------------------------------------------- snapshots, freshness, errors


def test_snapshots_show_each_append_and_its_offsets(lake: dict[str, Any]) -> None:
    proc = run_k2(["query", "snapshots", "--limit", "100", "--format", "json"], env=lake["env"], check=True)
    snaps = json.loads(proc.stdout)
    assert len(snaps) == lake["batches"]
    assert snaps[0]["current"] is True and not any(s["current"] for s in snaps[1:])
    assert snaps[0]["total_records"] == len(lake["records"])
    assert [s["added_records"] for s in reversed(snaps)] == [300, 300, 300, 300, len(_ohlcv_trades())]
    assert [s["offsets"]["market.crypto.trades.binance"]["0"] for s in reversed(snaps)] == [
        300, 600, 900, 1200, 1200 + len(_ohlcv_trades())]


def test_freshness_reports_the_newest_trade_per_market(lake: dict[str, Any]) -> None:
    proc = run_k2(["query", "freshness", "--format", "json"], env=lake["env"], check=True)
    got = {(r["exchange"], r["symbol"]): r for r in json.loads(proc.stdout)}
    newest: dict[tuple[str, str], int] = {}
    for r in lake["records"]:
        key = (r["exchange"], r["symbol"])
        newest[key] = max(newest.get(key, 0), r["timestamp"])
    assert set(got) == set(newest)
    for key, ts in newest.items():
        assert got[key]["newest_trade"] == iso(from_micros(ts))
        assert got[key]["lag_seconds"] > 0


def test_freshness_max_age_exits_1_when_any_symbol_is_older(lake: dict[str, Any]) -> None:
    stale = run_k2(["query", "freshness", "--max-age", "1d", "--format", "json"], env=lake["env"])
    assert stale.returncode == 1, stale.stderr
    rows = json.loads(stale.stdout)
    assert rows and all(r["stale"] is True for r in rows)
    assert f"{len(rows)} of {len(rows)} symbols" in stale.stderr and "older than 1d" in stale.stderr
    fresh = run_k2(["query", "freshness", "--max-age", "10000w", "--format", "json"], env=lake["env"])
    assert fresh.returncode == 0, fresh.stderr
    assert not any(r["stale"] for r in json.loads(fresh.stdout))
    bad = run_k2(["query", "freshness", "--max-age", "soon"], env=lake["env"])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--max-age" in bad.stderr


def test_notional_sums_exactly_without_overflow(lake: dict[str, Any]) -> None:
    proc = run_k2(["query", "sql", "SELECT sum(price*quantity) AS n, sum(notional) AS m FROM trades", "--format",
                   "json"], env=lake["env"])
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)[0]
    want = sum((r["price"] * r["quantity"] for r in lake["records"]), Decimal(0))
    assert Decimal(row["n"]) == want and Decimal(row["m"]) == want


def test_missing_table_is_one_clear_line(lake: dict[str, Any]) -> None:
    env = {**lake["env"], "K2_TABLE": "nowhere.trades_v2"}
    proc = run_k2(["query", "trades", "--symbol", "BTCUSDT"], env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("k2: error: table nowhere.trades_v2 does not exist")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_postgres_catalog_is_read_the_same_way(tmp_path: Path) -> None:
    """The PostgreSQL catalog: the metadata reader finds the table through psycopg2 and returns what was written."""
    from tests.conftest import require

    require("postgres")
    from k2cli.lake.catalog import ensure_trades_table, open_catalog
    from k2cli.lake.query import TradeFilter, TradesLake
    from k2cli.settings import load_settings

    uri = "postgresql+psycopg2://k2:k2@localhost:5432/k2_catalog"
    settings = load_settings(iceberg_catalog_uri=uri, iceberg_warehouse=f"file://{tmp_path / 'wh'}",
                             data_dir=tmp_path / "data")
    name = f"k2test_pg_{uuid.uuid4().hex[:8]}.trades_v2"
    catalog = open_catalog(settings)
    table = ensure_trades_table(catalog, name)
    try:
        records = _trades(90)
        _append(table, records[:50], {"t": {"0": 50}})
        _append(table, records[50:], {"t": {"0": 90}})
        mine = TradesLake.open(settings, name, planner="auto")
        assert mine.plan().planner == "metadata"
        reference = TradesLake.open(settings, name, planner="pyiceberg")
        for flt in (TradeFilter(), TradeFilter(symbol="BTCUSD"), TradeFilter(since_us=DAY0 + 86_400_000_000)):
            assert sorted(mine.plan(flt).paths) == sorted(reference.plan(flt).paths)
        env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
        env.update({"K2_HOME": str(tmp_path / "home"), "K2_ICEBERG_CATALOG_URI": uri,
                    "K2_ICEBERG_WAREHOUSE": f"file://{tmp_path / 'wh'}", "K2_TABLE": name})
        proc = run_k2(["query", "trades", "--symbol", "ETHUSDT", "--limit", "1000", "-f", "json"], env=env, check=True)
        assert json.loads(proc.stdout) == [_as_json(r) for r in _expected(records, symbol="ETHUSDT")]
    finally:
        catalog.drop_table(name)
        catalog.drop_namespace(name.split(".")[0])

"""k2 query latency on realistic tables: `trades --symbol S --limit 100` and a one-day 1m OHLCV for one symbol.

Tables are built with pyiceberg appends of --batch rows (a consumer writing 50k-row batches by default), 10
symbols interleaved in time over --days days, in a SQLite catalog under --workdir. For each size it measures:

- engine: the in-process call (`TradesLake.trades` / `.ohlcv`, table loaded once; planning, DuckDB, fetch),
- engine+open: the same with the catalog opened and the table loaded on every call,
- cli: the whole command, `python -m k2cli query ... --format json`, as a subprocess (interpreter start-up
  and imports included); `k2 --help`, `k2 query trades --help` and `k2 dlq stats` on an empty DLQ are
  measured too: what any k2 command / any k2 subcommand pays before a query does anything.

    python benchmarks/query_bench.py --rows 200000,2000000
    python benchmarks/query_bench.py --rows 200000 --batch 500      # the many-small-files case
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT",
           "LINKUSDT"]
DAY0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
DAY_US = 86_400_000_000


def _decimals(unscaled: list[int]) -> Any:
    """decimal128(18,8) from unscaled integers, exactly, without building Decimal objects."""
    import pyarrow as pa

    whole = pa.array(unscaled, pa.int64()).cast(pa.decimal128(19, 0))  # same 16-byte layout
    return pa.Array.from_buffers(pa.decimal128(18, 8), len(whole), whole.buffers())


def build_batch(start: int, count: int, total: int, days: int, rng: random.Random) -> Any:
    """Rows start..start+count of a table of `total` trades spread evenly over `days` days, in time order."""
    import pyarrow as pa

    from k2cli.trade import arrow_schema

    step = days * DAY_US / total
    base = int(DAY0.timestamp() * 1_000_000)
    ts = [base + int((start + i) * step) for i in range(count)]
    symbols = [SYMBOLS[(start + i) % len(SYMBOLS)] for i in range(count)]
    prices = [rng.randrange(1_00000000, 90_000_00000000) for _ in range(count)]
    qty = [rng.randrange(1, 5_00000000) for _ in range(count)]
    n = count
    cols = {
        "message_id": pa.array([str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]),
        "trade_id": pa.array([f"BINANCE-{start + i}" for i in range(n)]),
        "symbol": pa.array(symbols),
        "exchange": pa.array(["BINANCE"] * n),
        "asset_class": pa.array(["crypto"] * n),
        "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "price": _decimals(prices),
        "quantity": _decimals(qty),
        "currency": pa.array(["USDT"] * n),
        "side": pa.array([("BUY", "SELL")[i & 1] for i in range(n)]),
        "trade_conditions": pa.array([[] for _ in range(n)], pa.list_(pa.field("element", pa.string(), False))),
        "source_sequence": pa.array([start + i for i in range(n)], pa.int64()),
        "ingestion_timestamp": pa.array([t + 1500 for t in ts], pa.timestamp("us", tz="UTC")),
        "platform_sequence": pa.array([None] * n, pa.int64()),
        "vendor_data": pa.array([[("is_buyer_maker", "True")]] * n, pa.map_(pa.string(), pa.string())),
    }
    return pa.Table.from_arrays(list(cols.values()), schema=arrow_schema())


def build_table(workdir: Path, rows: int, days: int, batch: int) -> dict[str, str]:
    """Create (or reuse) the table and return the K2_* environment that points at it."""
    from k2cli.lake.catalog import ensure_trades_table, open_catalog
    from k2cli.settings import load_settings

    data = workdir / f"rows{rows}-days{days}-batch{batch}"
    env = {"K2_DATA_DIR": str(data), "K2_HOME": str(workdir / "home"), "K2_TABLE": "bench.trades_v2"}
    done = data / ".complete"
    if done.exists():
        return env
    settings = load_settings(data_dir=data, table="bench.trades_v2")
    table = ensure_trades_table(open_catalog(settings), "bench.trades_v2")
    rng = random.Random(rows)
    started = time.perf_counter()
    for n, start in enumerate(range(0, rows, batch)):
        table.append(build_batch(start, min(batch, rows - start), rows, days, rng),
                     snapshot_properties={"k2.offsets": f'{{"bench":{{"0":{start + batch}}}}}'})
        if n % 25 == 24 and len(table.metadata.snapshots) > 50:  # keep commits flat, as the consumer does
            table.maintenance.expire_snapshots().older_than(dt.datetime.now(dt.UTC)).commit()
        if n % 50 == 0:
            print(f"  appended {min(start + batch, rows):,} / {rows:,} rows "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    done.write_text("ok")
    return env


def _quantiles(samples: list[float]) -> str:
    s = sorted(samples)
    q = statistics.quantiles(s, n=100, method="inclusive") if len(s) > 1 else s * 99
    return f"p50 {statistics.median(s) * 1000:7.1f} ms  p90 {q[89] * 1000:7.1f}  p99 {q[98] * 1000:7.1f}  " \
           f"max {s[-1] * 1000:7.1f}  (n={len(s)})"


def _summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    q = statistics.quantiles(s, n=100, method="inclusive") if len(s) > 1 else s * 99
    return {"p50": statistics.median(s), "p90": q[89], "p99": q[98], "max": s[-1], "n": len(s)}


def bench_engine(env: dict[str, str], runs: int) -> dict[str, list[float]]:
    """In-process engine calls."""
    from k2cli.lake.query import TradeFilter, TradesLake
    from k2cli.settings import load_settings

    settings = load_settings(data_dir=Path(env["K2_DATA_DIR"]), table=env["K2_TABLE"])
    lake = TradesLake.open(settings)
    plan = lake.plan(TradeFilter())
    print(f"  table: {sum(f.record_count for f in plan.files):,} rows in {len(plan.files)} data files, "
          f"{sum(f.size_bytes for f in plan.files) / 1e6:.1f} MB")
    day = int((DAY0 + dt.timedelta(days=1)).timestamp() * 1_000_000)
    rng = random.Random(1)
    out: dict[str, list[float]] = {"trades": [], "ohlcv": [], "trades+open": [], "ohlcv+open": []}
    lake.trades(TradeFilter(symbol="BTCUSDT"), limit=100)  # warm imports
    files_read = set()
    for _ in range(runs):
        sym = rng.choice(SYMBOLS)
        t = time.perf_counter()
        res = lake.trades(TradeFilter(symbol=sym), limit=100, order="desc")
        out["trades"].append(time.perf_counter() - t)
        files_read.add(res.files_read)
        assert res.num_rows == 100
        t = time.perf_counter()
        bars = lake.ohlcv(TradeFilter(symbol=sym, since_us=day, until_us=day + DAY_US), "1m")
        out["ohlcv"].append(time.perf_counter() - t)
        assert bars.num_rows > 0
    for _ in range(max(10, runs // 5)):
        sym = rng.choice(SYMBOLS)
        t = time.perf_counter()
        TradesLake.open(settings).trades(TradeFilter(symbol=sym), limit=100)
        out["trades+open"].append(time.perf_counter() - t)
        t = time.perf_counter()
        TradesLake.open(settings).ohlcv(TradeFilter(symbol=sym, since_us=day, until_us=day + DAY_US), "1m")
        out["ohlcv+open"].append(time.perf_counter() - t)
    print(f"  trades --limit 100 read {sorted(files_read)} of {len(plan.files)} files; one-day OHLCV read "
          f"{bars.files_read} files, {bars.num_rows} bars")
    return out


def bench_cli(env: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Whole commands as subprocesses."""
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("K2_")}, **env,
            "K2_DLQ_DIR": str(Path(env["K2_DATA_DIR"]) / "empty-dlq")}
    commands = {
        "k2 --help (floor)": ["--help"],
        "k2 query trades --help": ["query", "trades", "--help"],
        "k2 dlq stats (no-op floor)": ["dlq", "stats", "--format", "json"],
        "cli trades": ["query", "trades", "--symbol", "ETHUSDT", "--limit", "100", "--format", "json"],
        "cli ohlcv": ["query", "ohlcv", "--symbol", "ETHUSDT", "--interval", "1m", "--since",
                      (DAY0 + dt.timedelta(days=1)).date().isoformat(), "--until",
                      (DAY0 + dt.timedelta(days=2)).date().isoformat(), "--format", "json"],
    }
    out: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "k2cli", *args], env=full, capture_output=True)
            out[name].append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed: {proc.stderr.decode()[-500:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="200000,2000000", help="comma-separated table sizes")
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--batch", type=int, default=50_000, help="rows per append (consumer batch)")
    parser.add_argument("--runs", type=int, default=100, help="in-process runs per query")
    parser.add_argument("--cli-runs", type=int, default=20, help="subprocess runs per command")
    parser.add_argument("--workdir", default="/tmp/k2-query-bench")
    parser.add_argument("--json", type=Path, default=None, help="also write the results (seconds) to this file")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    import warnings

    warnings.simplefilter("ignore")
    workdir = Path(args.workdir)
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} CPUs")
    for rows in (int(r) for r in args.rows.split(",")):
        print(f"\n== {rows:,} trades, {len(SYMBOLS)} symbols, {args.days} days, {args.batch:,}-row appends")
        t = time.perf_counter()
        env = build_table(workdir, rows, args.days, args.batch)
        print(f"  table ready in {time.perf_counter() - t:.0f} s")
        results = bench_engine(env, args.runs)
        if args.cli_runs:
            results.update(bench_cli(env, args.cli_runs))
        for name, samples in results.items():
            print(f"  {name:<28} {_quantiles(samples)}")
        report[str(rows)] = {name: _summary(samples) for name, samples in results.items()}
        print(f"  load average: {os.getloadavg()}")
    if args.json:
        import json

        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

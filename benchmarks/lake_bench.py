"""Query latency before and after `k2 lake compact` on a table built by many small commits.

The table is query_bench's (10 symbols over --days days) written as --commits appends of --batch rows (a consumer
at batch 500 writes one small Parquet file per day touched per commit). The table is compacted with the engine
of `k2 lake compact`; then query_bench's engine queries (`trades --symbol S --limit 100`, a one-day 1m OHLCV for
one symbol, and the trades query with the table opened each time) are timed against both metadata versions of
the table, before and after the compaction (compaction deletes no file, so the old version is still readable),
alternating between the two so that both see the same machine load.

    python benchmarks/lake_bench.py                      # 2,000 commits of 500 rows
    python benchmarks/lake_bench.py --commits 200 --runs 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import query_bench  # the benchmark next to this one


def _settings(env: dict[str, str]) -> Any:
    from k2cli.settings import load_settings

    return load_settings(data_dir=Path(env["K2_DATA_DIR"]), table=env["K2_TABLE"])


def _shape(env: dict[str, str]) -> dict[str, Any]:
    from k2cli.lake.maintenance import open_table, table_stats

    stats = table_stats(open_table(_settings(env)), 96 * 1024 * 1024)
    return {**stats.totals(), "snapshots": stats.snapshots, "manifests": stats.manifests}


def _location(env: dict[str, str]) -> str:
    from k2cli.lake import metadata

    return metadata.metadata_location(_settings(env).catalog_uri, env["K2_TABLE"])


def _compact(env: dict[str, str], target: int) -> dict[str, Any]:
    from dataclasses import asdict

    from k2cli.lake import compaction
    from k2cli.lake.maintenance import open_table

    started = time.perf_counter()
    result = compaction.compact(open_table(_settings(env)), target)
    return {**asdict(result), "seconds": time.perf_counter() - started, "snapshots": []}


def _round(lake: Any, location: str, name: str, sym: str, day_us: int, got: dict[str, list[float]]) -> None:
    """One run of each query on one version of the table."""
    from k2cli.lake.metadata import MetadataTable
    from k2cli.lake.query import TradeFilter, TradesLake

    t = time.perf_counter()
    assert lake.trades(TradeFilter(symbol=sym), limit=100, order="desc").num_rows == 100
    got["trades"].append(time.perf_counter() - t)
    t = time.perf_counter()
    assert lake.ohlcv(TradeFilter(symbol=sym, since_us=day_us, until_us=day_us + query_bench.DAY_US), "1m").num_rows
    got["ohlcv"].append(time.perf_counter() - t)
    t = time.perf_counter()
    TradesLake(MetadataTable(location, name)).trades(TradeFilter(symbol=sym), limit=100)
    got["trades+open"].append(time.perf_counter() - t)


def bench_pair(name: str, locations: dict[str, str], runs: int) -> dict[str, dict[str, list[float]]]:
    """The queries against the table before and after compaction (two metadata versions of one table), run in
    alternating order so both see the same machine load."""
    import random

    from k2cli.lake.metadata import MetadataTable
    from k2cli.lake.query import TradeFilter, TradesLake

    lakes = {phase: TradesLake(MetadataTable(loc, name)) for phase, loc in locations.items()}
    out: dict[str, dict[str, list[float]]] = {p: {"trades": [], "ohlcv": [], "trades+open": []} for p in lakes}
    day = int((query_bench.DAY0 + dt.timedelta(days=1)).timestamp() * 1_000_000)
    rng = random.Random(1)
    for lake in lakes.values():
        lake.trades(TradeFilter(symbol="BTCUSDT"), limit=100)  # warm imports and caches
    for n in range(runs):
        sym = rng.choice(query_bench.SYMBOLS)
        for phase in (list(lakes) if n % 2 == 0 else list(reversed(list(lakes)))):
            _round(lakes[phase], locations[phase], name, sym, day, out[phase])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--runs", type=int, default=50, help="in-process runs per query")
    ap.add_argument("--target-mb", type=int, default=128)
    ap.add_argument("--workdir", default="/tmp/k2-lake-bench")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    workdir = Path(args.workdir)
    rows = args.commits * args.batch
    built = workdir / f"rows{rows}-days{args.days}-batch{args.batch}"
    if (built / ".compacted").exists():  # an earlier run compacted it: "before" needs the small files again
        shutil.rmtree(built)
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} CPUs")
    print(f"== {args.commits:,} commits of {args.batch} rows ({rows:,} trades, {args.days} days)")
    t = time.perf_counter()
    env = query_bench.build_table(workdir, rows, args.days, args.batch)
    print(f"  table ready in {time.perf_counter() - t:.0f} s")
    report: dict[str, Any] = {"before": {"shape": _shape(env)}}
    before = _location(env)
    report["compaction"] = _compact(env, args.target_mb * 1024 * 1024)
    (built / ".compacted").write_text("yes")
    print(f"  compacted {report['compaction']['files_removed']:,} files into {report['compaction']['files_added']} "
          f"in {report['compaction']['seconds']:.1f} s")
    report["after"] = {"shape": _shape(env)}
    timings = bench_pair(env["K2_TABLE"], {"before": before, "after": _location(env)}, args.runs)
    for phase in ("before", "after"):
        report[phase]["queries"] = {k: query_bench._summary(v) for k, v in timings[phase].items()}
        print(f"  {phase}: {report[phase]['shape']}")
        for name, q in report[phase]["queries"].items():
            print(f"    {name:<14} p50 {q['p50'] * 1000:8.1f} ms  p99 {q['p99'] * 1000:8.1f} ms  (n={q['n']})")
    print(f"  load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

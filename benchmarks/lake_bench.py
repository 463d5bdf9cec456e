"""Query latency before and after `k2 lake compact` on a table built by many small commits.

The table is query_bench's (10 symbols over --days days) written as --commits appends of --batch rows (a consumer
at batch 500 writes one small Parquet file per day touched per commit). The engine queries of query_bench
(`trades --symbol S --limit 100`, a one-day 1m OHLCV) are timed, the table is compacted with the engine of
`k2 lake compact`, and the same queries are timed again.

    python benchmarks/lake_bench.py                      # 2,000 commits of 500 rows
    python benchmarks/lake_bench.py --commits 200 --runs 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import query_bench  # the benchmark next to this one


def _shape(env: dict[str, str]) -> dict[str, Any]:
    from k2cli.lake.maintenance import open_table, table_stats
    from k2cli.settings import load_settings

    stats = table_stats(open_table(load_settings(data_dir=Path(env["K2_DATA_DIR"]), table=env["K2_TABLE"])),
                        96 * 1024 * 1024)
    return {**stats.totals(), "snapshots": stats.snapshots, "manifests": stats.manifests}


def _queries(env: dict[str, str], runs: int) -> dict[str, Any]:
    return {k: query_bench._summary(v) for k, v in query_bench.bench_engine(env, runs).items()}


def _compact(env: dict[str, str], target: int) -> dict[str, Any]:
    from dataclasses import asdict

    from k2cli.lake import compaction
    from k2cli.lake.maintenance import open_table
    from k2cli.settings import load_settings

    table = open_table(load_settings(data_dir=Path(env["K2_DATA_DIR"]), table=env["K2_TABLE"]))
    started = time.perf_counter()
    result = compaction.compact(table, target)
    return {**asdict(result), "seconds": time.perf_counter() - started, "snapshots": []}


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
    report["before"]["queries"] = _queries(env, args.runs)
    report["compaction"] = _compact(env, args.target_mb * 1024 * 1024)
    (built / ".compacted").write_text("yes")
    print(f"  compacted {report['compaction']['files_removed']:,} files into {report['compaction']['files_added']} "
          f"in {report['compaction']['seconds']:.1f} s")
    report["after"] = {"shape": _shape(env)}
    report["after"]["queries"] = _queries(env, args.runs)
    for phase in ("before", "after"):
        print(f"  {phase}: {report[phase]['shape']}")
        for name, q in report[phase]["queries"].items():
            print(f"    {name:<14} p50 {q['p50'] * 1000:8.1f} ms  p99 {q['p99'] * 1000:8.1f} ms  (n={q['n']})")
    print(f"  load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

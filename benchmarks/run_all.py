"""Run every k2 benchmark, print one table of medians with the machine noted, and keep the results.

Each benchmark script runs as a subprocess with `--json FILE` (its own progress lines pass through):

- stream_bench.py: `k2 stream` trades/s landing in the topic (its watermarks) and RSS, simulator at full speed
  (median of --runs runs; a run with undelivered trades fails the benchmark),
- consume_bench.py: `k2 consume` msg/s at batch 500 and at --large-batch beside the raw Kafka read rate of the
  same runs, and commit latency around commit 10 and commit --commits (one series of 500-row commits),
- query_bench.py: `k2 query` p50/p99 at 200k and 2M rows (in-process engine and the whole CLI command),
- startup_bench.py: `k2 --help` start-up time,
- backfill_bench.py: gap backfill trades/s from the simulator's REST API (`k2 backfill` over a deep id range,
  and the stream's in-flight fill of a gap as deep).

Needs the local stack (`k2 stack up`). Results go to benchmarks/results/<UTC time>.json (commit them), and the
table shows the change against the previous results file, so regressions show.

    python benchmarks/run_all.py                 # everything, 3 runs each (about 25-40 minutes on 2 cores)
    python benchmarks/run_all.py --quick         # smaller sizes, 1 run each: checks the harness (~5 minutes)
    python benchmarks/run_all.py --only stream,startup
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BENCHES = ("startup", "stream", "consume", "query", "backfill")


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, load, Python and library versions, the commit."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    libs = {}
    for dist in ("confluent-kafka", "fastavro", "pyiceberg", "pyiceberg-core", "pyarrow", "duckdb", "websockets",
                 "typer", "rich"):
        try:
            libs[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            libs[dist] = None
    try:
        import confluent_kafka

        libs["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    try:
        from k2cli.stack.install import APICURIO_VERSION, KAFKA_VERSION

        libs["kafka (broker)"] = KAFKA_VERSION
        libs["apicurio-registry"] = APICURIO_VERSION
    except ImportError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": ram_gib, "os": platform.platform(),
            "python": platform.python_version(), "libraries": libs, "commit": commit.stdout.strip(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def run_script(name: str, args: list[str], out: Path) -> dict[str, Any] | None:
    """Run one benchmark script with --json; its parsed results (None when it failed)."""
    cmd = [sys.executable, str(HERE / name), *args, "--json", str(out)]
    print(f"\n$ {' '.join(cmd[1:])}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or not out.exists():
        print(f"!! {name} failed (exit {proc.returncode}) after {seconds:.0f} s", flush=True)
        return None
    data = json.loads(out.read_text())
    data["_seconds"] = round(seconds, 1)
    data["_command"] = " ".join(["python", f"benchmarks/{name}", *args])
    return data


def plan(quick: bool, runs: int, large_batch: int, commits: int) -> dict[str, tuple[str, list[str]]]:
    """Script and arguments of each benchmark."""
    if quick:
        return {
            "startup": ("startup_bench.py", ["5"]),
            "stream": ("stream_bench.py", ["--runs", "1", "--duration", "8"]),
            "consume": ("consume_bench.py", ["--records", "100000", "--batches", f"{large_batch},500",
                                             "--small-batch-records", "20000", "--runs", "1", "--commits", "200"]),
            "query": ("query_bench.py", ["--rows", "200000", "--runs", "20", "--cli-runs", "3"]),
            "backfill": ("backfill_bench.py", ["--trades", "20000", "--runs", "1"]),
        }
    return {
        "startup": ("startup_bench.py", ["21"]),
        "stream": ("stream_bench.py", ["--runs", str(runs), "--duration", "20"]),
        "consume": ("consume_bench.py", ["--records", "500000", "--batches", f"{large_batch},500",
                                         "--small-batch-records", "100000", "--runs", str(runs),
                                         "--commits", str(commits)]),
        "query": ("query_bench.py", ["--rows", "200000,2000000", "--runs", "100", "--cli-runs", "20"]),
        "backfill": ("backfill_bench.py", ["--trades", "100000", "--runs", str(runs)]),
    }


def rows_of(results: dict[str, Any]) -> list[tuple[str, str, float | None, str]]:
    """(benchmark, figure, value, unit) rows of the table."""
    rows: list[tuple[str, str, float | None, str]] = []
    st = results.get("startup")
    if st:
        rows.append(("startup", "k2 --help, median", st["median_s"] * 1000, "ms"))
    sb = results.get("stream")
    if sb:
        n = len(sb.get("runs", []))
        rows.append(("stream", f"trades/s into the topic (its watermarks; full-speed simulator, "
                                f"{sb.get('duration_s')} s runs, median of {n}, 0 undelivered)",
                     sb["median"]["trades_per_sec"], "trades/s"))
        rows.append(("stream", "peak RSS", sb["median"]["peak_rss_mb"], "MB"))
    cb = results.get("consume")
    if cb:
        for batch, r in sorted(cb.get("throughput", {}).items(), key=lambda kv: int(kv[0])):
            n = len(r["runs"])
            med = r["median"]
            label = f"batch {int(batch):,} ({r['records']:,} records, median of {n})"
            rows.append(("consume", f"{label}: msg/s sustained", med["sustained"], "msg/s"))
            rows.append(("consume", f"{label}: msg/s end to end", med["end_to_end"], "msg/s"))
            rows.append(("consume", f"{label}: raw Kafka read (bare consumer, after its first batch)", med["raw"],
                         "msg/s"))
            rows.append(("consume", f"{label}: peak RSS", med["rss_mb"], "MB"))
            if "tree_pss_mb" in med:
                rows.append(("consume", f"{label}: peak PSS with decode workers", med["tree_pss_mb"], "MB"))
        cl = cb.get("commit_latency")
        if cl:
            rows += commit_rows(cl)
    qb = results.get("query")
    if qb:
        labels = {"trades": "trades --symbol S --limit 100 (engine)", "ohlcv": "one-day 1m OHLCV (engine)",
                  "cli trades": "k2 query trades ... (whole command)",
                  "cli ohlcv": "k2 query ohlcv ... (whole command)"}
        for size, figures in sorted(((k, v) for k, v in qb.items() if k.isdigit()), key=lambda kv: int(kv[0])):
            for key, label in labels.items():
                f = figures.get(key)
                if f:
                    rows.append(("query", f"{int(size):,} rows: {label} p50 (n={f['n']})", f["p50"] * 1000, "ms"))
                    rows.append(("query", f"{int(size):,} rows: {label} p99 (n={f['n']})", f["p99"] * 1000, "ms"))
    bb = results.get("backfill")
    if bb:
        deep = f"{bb['trades']:,} trades deep, median of {len(bb.get('runs', []))}"
        rows.append(("backfill", f"k2 backfill binance --from-id --to-id ({deep})",
                     bb["median"]["command_trades_per_s"], "trades/s"))
        rows.append(("backfill", f"k2 backfill, whole command incl. start-up ({deep})",
                     bb["median"]["command_wall_trades_per_s"], "trades/s"))
        rows.append(("backfill", f"k2 stream in-flight gap fill ({deep})", bb["median"]["stream_trades_per_s"],
                     "trades/s"))
    return rows


def commit_rows(cl: dict[str, Any]) -> list[tuple[str, str, float | None, str]]:
    """The commit-latency rows, labelled with the commits each median covers (as consume_bench.py reports them)."""
    def covers(key: str) -> str:
        window = cl.get(key)
        return f"median of commits {window[0]:,}-{window[1]:,}" if window else "median; window not recorded"

    points = cl.get("points") or [{}]
    return [("consume", f"commit latency at commit {points[0].get('commit', 10):,} ({cl['rows']} rows, "
                        f"{covers('early_window')})", cl["early_ms"], "ms"),
            ("consume", f"commit latency at commit {cl['commits']:,} ({covers('late_window')}; "
                        f"{cl['snapshots']} snapshots kept)", cl["late_ms"], "ms")]


def previous_results(exclude: Path) -> dict[str, Any] | None:
    """The newest earlier results file, if any."""
    files = sorted(p for p in RESULTS.glob("*.json") if p != exclude)
    if not files:
        return None
    try:
        return json.loads(files[-1].read_text()) | {"_file": files[-1].name}
    except ValueError:
        return None


def render(rows: list[tuple[str, str, float | None, str]], mach: dict[str, Any], before: dict[str, Any] | None,
           ) -> str:
    """The plain-text table (with the change against the previous run when it measured the same figure)."""
    old = {(r[0], r[1]): r[2] for r in (before or {}).get("table", [])}
    lines = [f"machine: {mach['cpu']}, {mach['cores']} cores, {mach['ram_gib']} GiB RAM, {mach['os']}",
             f"python {mach['python']}; " + ", ".join(f"{k} {v}" for k, v in mach["libraries"].items() if v),
             f"commit {mach['commit']}; load average at start {mach['load_average_start']}, "
             f"at end {mach.get('load_average_end')}"]
    if before:
        lines.append(f"change: against {before['_file']}")
    width = max((len(r[1]) for r in rows), default=10)
    lines.append("")
    lines.append(f"{'benchmark':<9}  {'figure':<{width}}  {'median':>12}  {'unit':<8}  change")
    lines.append("-" * (width + 45))
    for bench, figure, value, unit in rows:
        prev = old.get((bench, figure))
        change = f"{(value - prev) / prev * 100:+.0f}%" if prev and value is not None else ""
        shown = f"{value:,.1f}" if value is not None and value < 100 else f"{value:,.0f}"
        lines.append(f"{bench:<9}  {figure:<{width}}  {shown:>12}  {unit:<8}  {change}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per throughput figure (its median is shown)")
    ap.add_argument("--large-batch", type=int, default=50_000, help="the large consumer batch size")
    ap.add_argument("--commits", type=int, default=2000, help="length of the commit-latency series")
    ap.add_argument("--quick", action="store_true", help="small sizes and 1 run each (checks the harness)")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/<time>.json")
    args = ap.parse_args()
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        ap.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")

    sys.path.insert(0, str(ROOT))
    started = dt.datetime.now(dt.UTC)
    mach = machine()
    print(f"k2 benchmarks on {mach['cpu']} ({mach['cores']} cores, {mach['ram_gib']} GiB), "
          f"load {mach['load_average_start']}", flush=True)
    steps = plan(args.quick, args.runs, args.large_batch, args.commits)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="k2-run-all-") as tmp:
        for name in chosen:
            script, script_args = steps[name]
            results[name] = run_script(script, script_args, Path(tmp) / f"{name}.json")
    mach["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = rows_of({k: v for k, v in results.items() if v})
    out = RESULTS / f"{started:%Y%m%dT%H%M%SZ}{'-quick' if args.quick else ''}.json"
    before = previous_results(out)
    if before and before.get("quick") != args.quick:
        before = None  # do not compare quick runs with full ones
    table = render(rows, mach, before)
    print("\n" + table)
    failed = [name for name in chosen if results.get(name) is None]
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "started": started.isoformat(), "finished": dt.datetime.now(dt.UTC).isoformat(), "quick": args.quick,
            "machine": mach, "failed": failed, "table": [list(r) for r in rows], "results": results,
        }, indent=2) + "\n")
        print(f"\nresults: {out.relative_to(ROOT)}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

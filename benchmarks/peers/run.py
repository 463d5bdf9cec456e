"""k2 beside the peers it replaces, in one run on this machine: `k2 consume`, Apache Iceberg's Kafka Connect sink
and Spark Structured Streaming read ONE topic of Confluent-Avro v2 trades (6 partitions) into tables of their own
in one SQLite JDBC catalog, one after the other.

For each reader: steady rows/s between commits (its table's snapshot times and row counts), time from process
start to the last row committed, peak RSS of its process tree, exactly once after a kill -9 at about half (a
second pass into another table: restarted, then rows == distinct ids == records), and fidelity (rows, exact
decimal sums of price and quantity, microsecond timestamps) against what was produced. Also the raw Kafka read
rate and the Parquet write rate of the same rows, and k2's rate as a fraction of each.

Commit cadence: k2 commits every --k2-batch records (50,000: its fastest setting here, each commit written while the
next batch is read; 1M records ran at ~390k rows/s whole-process at 50,000, ~375k at 200,000 and ~345k at 500,000,
with ~540, ~730 and ~1,000 MB peak RSS) or every 10 s (K2_FLUSH_INTERVAL) when slower; the Connect sink every
--commit-s seconds (10); Spark commits micro-batches of --spark-batch records (1,000,000 at 3M records: about
10-12 s each at its rate here) back to back (--spark-trigger-s sets a processing-time trigger instead; a trigger
longer than a batch takes caps Spark's rate at batch/trigger).

Installs the peers from Maven Central and PyPI into the cache on first use (~/.k2/cache/peers, and the
stack's Spark install). Needs the local stack (`k2 stack up`). Runs by hand, not in CI:

    python benchmarks/peers/run.py                       # 3,000,000 records, every reader, kill passes
    python benchmarks/peers/run.py --records 300000 --only k2,connect --no-kill
    python benchmarks/peers/run.py --only stream         # benchmarks/peers/stream_peer.py's run(), if present
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]

import connect_peer  # noqa: E402
import install  # noqa: E402
import k2_peer  # noqa: E402
import limits  # noqa: E402
import report  # noqa: E402
import spark_peer  # noqa: E402
from drive import drive  # noqa: E402
from lake import Lake, fidelity  # noqa: E402
from procs import install_cleanup  # noqa: E402
from topic import create_topic, delete_topics, produce  # noqa: E402

READERS = ("k2", "connect", "spark")
CHOICES = (*READERS, "stream")
RESULTS = ROOT / "benchmarks" / "results" / "peers"
KILL_COMMIT_S = 2.0  # Connect's commit interval in its kill pass


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=3_000_000, help="records in the topic (300000 for a quick run)")
    ap.add_argument("--only", default="k2,connect,spark", help=f"comma-separated subset of {','.join(CHOICES)}")
    ap.add_argument("--no-kill", action="store_true", help="skip the kill -9 / restart passes (exactly once)")
    ap.add_argument("--kill-at", type=float, default=0.5, help="kill -9 once this fraction is committed")
    ap.add_argument("--k2-batch", type=int, default=50_000, help="k2's K2_BATCH_SIZE")
    ap.add_argument("--commit-s", type=float, default=10.0, help="Connect's commit interval (s)")
    ap.add_argument("--spark-trigger-s", type=float, default=0.0, help="Spark's processing-time trigger (0: none)")
    ap.add_argument("--connect-tasks", type=int, default=2, help="the sink's tasks.max (<= 6: every one gets data)")
    ap.add_argument("--spark-batch", type=int, default=0,
                    help="Spark's maxOffsetsPerTrigger (default: records/3, at most 1,000,000)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (tables, logs) and the topic")
    ap.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/peers/<time>.json")
    args = ap.parse_args(argv)
    args.chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(args.chosen) - set(CHOICES)
    if unknown:
        ap.error(f"--only: unknown reader(s) {', '.join(sorted(unknown))} (choose from {', '.join(CHOICES)})")
    if not 1 <= args.connect_tasks <= 6:
        ap.error("--connect-tasks must be 1..6 (more tasks than partitions with data stall every commit)")
    args.spark_batch = args.spark_batch or min(1_000_000, max(50_000, args.records // 3))
    return args


def run_reader(peer: str, mode: str, args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    """One pass of one reader into its own table; its figures and its table's fidelity."""
    topic, lake, work, records = ctx["topic"], ctx["lake"], ctx["work"] / f"{peer}-{mode}", args.records
    table = f"peers.{peer}_{mode}"
    kill_at = args.kill_at if mode == "kill" else None
    timeout = 180 + records / 4000
    if peer == "k2":
        start = k2_peer.starter(topic, lake, table, f"peers-k2-{mode}-{ctx['run']}", records, args.k2_batch, work)
    elif peer == "connect":
        name = f"peers-connect-{mode}-{ctx['run']}"
        create_topic(f"{name}-control", 1)
        ctx["topics"].append(f"{name}-control")
        lake.create_trades_table(table)
        # the kill pass commits more often: at one commit per 10 s a 3M run has two, and the kill can come after both
        commit_s = min(args.commit_s, KILL_COMMIT_S) if mode == "kill" else args.commit_s
        start = connect_peer.starter(topic, lake, table, name, args.connect_tasks, commit_s, work,
                                     ctx["installed"].connect_jars)
    else:
        lake.create_trades_table(table)
        start = spark_peer.starter(topic, lake, table, args.spark_batch, args.spark_trigger_s, work,
                                   ctx["installed"].spark, ctx["installed"].spark_extra_jars)
    figures = drive(start, lake, table, records, exits_itself=peer == "k2", kill_at=kill_at, timeout=timeout)
    if figures["rows_committed"]:
        figures["fidelity"] = fidelity(lake, table, ctx["expected"])
    print(f"  {peer} ({mode}): {figures['status'][:200]}; {figures['rows_committed']:,} rows in "
          f"{figures['commits']} commits, steady {figures.get('steady_rows_per_s')} rows/s, last commit at "
          f"{figures.get('to_last_commit_s')} s, peak RSS {figures['peak_rss_mb']} MB, fidelity "
          f"{(figures.get('fidelity') or {}).get('checks')}", flush=True)
    return figures


def run_stream(args: argparse.Namespace) -> dict[str, Any] | None:
    """The stream peer (cryptofeed beside `k2 stream`, benchmarks/peers/stream_peer.py), when it is here."""
    if not (HERE / "stream_peer.py").is_file():
        print("stream: benchmarks/peers/stream_peer.py is not here; skipped", flush=True)
        return None
    import stream_peer

    offered = {"runs": 1 if args.records < 3_000_000 else 3}  # a quick run (--records below 3M): one run each
    params = inspect.signature(stream_peer.run).parameters
    return stream_peer.run(**{k: v for k, v in offered.items() if k in params})


def run_readers(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Produce the topic, measure the machine's limits and run each chosen reader (clean, then kill)."""
    readers = [r for r in READERS if r in args.chosen]
    installed = install.ensure(lambda msg: print(f"install: {msg}", flush=True),
                               connect="connect" in readers, spark="spark" in readers)
    run = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix=f"k2-peers-{run}-"))
    ctx: dict[str, Any] = {"run": run, "work": work, "lake": Lake.under(work), "topic": f"bench.peers.{run}",
                           "topics": [], "installed": installed}
    ctx["topics"].append(ctx["topic"])
    print(f"work directory {work}; producing {args.records:,} records into {ctx['topic']}", flush=True)
    try:
        ctx["expected"] = expected = produce(ctx["topic"], args.records)
        results["expected"] = {k: str(v) for k, v in vars(expected).items()}
        print(f"  produced in {expected.produce_seconds:.1f} s", flush=True)
        results["limits"]["kafka_read_rows_per_s"] = round(limits.kafka_read_rate(ctx["topic"], args.records), 1)
        for peer in readers:
            results["peers"][peer] = {}
            for mode in ("clean",) if args.no_kill else ("clean", "kill"):
                results["peers"][peer][mode] = run_reader(peer, mode, args, ctx)
        if "k2" in readers and results["peers"]["k2"]["clean"]["rows_committed"]:
            results["limits"]["parquet_write"] = limits.parquet_write_rate(ctx["lake"], "peers.k2_clean")
    finally:
        if not args.keep:
            delete_topics(ctx["topics"])
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    install_cleanup()
    from benchmarks.run_all import machine

    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "started": started.isoformat(), "records": args.records, "machine": machine(), "peers": {}, "limits": {},
        "settings": f"k2 batch {args.k2_batch:,} (or 10 s); Connect {args.connect_tasks} tasks, commits every "
                    f"{args.commit_s:g} s (kill pass {min(args.commit_s, KILL_COMMIT_S):g} s); "
                    f"Spark micro-batches of {args.spark_batch:,}"
                    + (f" every {args.spark_trigger_s:g} s" if args.spark_trigger_s else " back to back"),
    }
    t0 = time.perf_counter()
    if any(r in args.chosen for r in READERS):
        run_readers(args, results)
    if "stream" in args.chosen:
        results["stream"] = run_stream(args)
    results["ratios"] = report.ratios(results["peers"], results["limits"])
    results["machine"]["load_average_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    results["finished"] = dt.datetime.now(dt.UTC).isoformat()
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["table"] = report.table_rows(results)
    print("\n" + report.render(results))
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"{started:%Y%m%dT%H%M%SZ}{'-quick' if args.records < 3_000_000 else ''}.json"
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nresults: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

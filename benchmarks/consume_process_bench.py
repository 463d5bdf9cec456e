"""Whole `k2 consume` processes timed from outside: start-up, steady rows/s, exit — compiled vs pure decoder.

Produces --records v2 trades into fresh topics (`consume_bench.produce`): "by-symbol" (10 symbols, each on one of
--partitions partitions) and "interleaved" (one symbol's trades spread round-robin over the partitions, so each
partition holds every --partitions-th trade of one sequence). Then runs `python -m k2cli consume --max-messages N
--batch-size B -v --log-format json` as a subprocess per configuration (fresh SQLite lake and group each time,
runs alternating) and reads the times of its log lines:

- start -> first fetch: from just before the process is spawned to the "first ... records fetched" line,
- steady rows/s: rows committed after the first commit / time from the first to the last commit,
- work rows/s: records / (last commit - first fetch),
- last commit -> exit: from the last "committed snapshot" line to the process's end (wait4),
- wall: spawn to end. Medians over --runs. Log times have millisecond resolution.

    python benchmarks/consume_process_bench.py                       # 500k records, batch 50,000, 3 runs
    python benchmarks/consume_process_bench.py --records 200000 --runs 1 --decoders native
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consume_bench import delete_topic, produce  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def _when(line: dict) -> float:
    return dt.datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def run(topic: str, records: int, batch: int, decoder: str) -> dict:
    """One whole `k2 consume` process over the topic into a fresh lake; its times."""
    work = Path(tempfile.mkdtemp(prefix="k2-consume-proc-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update({"K2_HOME": str(work / "home"), "K2_DATA_DIR": str(work / "data"), "K2_DLQ_DIR": str(work / "dlq"),
                "K2_CONSUMER_DECODER": decoder})
    cmd = [sys.executable, "-m", "k2cli", "consume", "--topics", topic, "--max-messages", str(records),
           "--batch-size", str(batch), "--flush-interval", "30", "--group", f"proc-{uuid.uuid4().hex[:8]}",
           "--metrics-port", "0", "--format", "json", "-v", "--log-format", "json"]
    spawned = time.time()
    proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    ended = time.time()
    shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"k2 consume failed ({proc.returncode}): {err.decode()[-2000:]}")
    lines = [json.loads(x) for x in err.decode().splitlines() if x.startswith("{")]
    # versions before this benchmark do not log their first fetch: NaN there
    fetched = next((_when(x) for x in lines if x["message"].startswith("first ")), float("nan"))
    commits = [(_when(x), int(x["message"].split(": ")[1].split(" rows")[0]))
               for x in lines if x["message"].startswith("committed snapshot")]
    stats = json.loads(out)
    first, last = commits[0][0], commits[-1][0]
    after_first = sum(rows for _, rows in commits[1:])
    return {
        "first_fetch_s": fetched - spawned,
        "steady_rows_s": after_first / (last - first) if last > first else float("nan"),
        "work_rows_s": stats["messages_written"] / (last - fetched) if last > fetched else float("nan"),
        "first_commit_s": first - spawned,
        "exit_s": ended - last,
        "wall_s": ended - spawned,
        "written": stats["messages_written"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--decoders", default="native,python", help="comma-separated: native, python")
    ap.add_argument("--cases", default="by-symbol,interleaved", help="comma-separated: by-symbol, interleaved")
    args = ap.parse_args()
    decoders = [d for d in args.decoders.split(",") if d]
    cases = [c for c in args.cases.split(",") if c]
    topics = {}
    try:
        for case in cases:
            topic = topics[case] = f"bench-proc-{case}-{uuid.uuid4().hex[:8]}"
            took = produce(topic, args.records, args.partitions, symbols=1 if case == "interleaved" else 10,
                           spread=case == "interleaved")
            print(f"produced {args.records:,} records ({case}, {args.partitions} partitions) in {took:.1f}s",
                  flush=True)
        results: dict[tuple[str, str], list[dict]] = {}
        for i in range(args.runs):
            for case in cases:
                for decoder in decoders:
                    r = run(topics[case], args.records, args.batch, decoder)
                    assert r["written"] == args.records, r
                    results.setdefault((case, decoder), []).append(r)
                    print(f"run {i + 1} {case:11} {decoder:6} " + "  ".join(f"{k} {v:,.2f}" for k, v in r.items()),
                          flush=True)
    finally:
        for topic in topics.values():
            delete_topic(topic)
    print(f"\nmedians of {args.runs} run(s), {args.records:,} records, batch {args.batch:,}, "
          f"{args.partitions} partitions, {os.cpu_count()} cores")
    print(f"{'case':12} {'decoder':8} {'first fetch s':>14} {'steady rows/s':>14} {'work rows/s':>12} "
          f"{'exit s':>7} {'wall s':>7}")
    for (case, decoder), runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{case:12} {decoder:8} {med['first_fetch_s']:14.2f} {med['steady_rows_s']:14,.0f} "
              f"{med['work_rows_s']:12,.0f} {med['exit_s']:7.2f} {med['wall_s']:7.2f}")


if __name__ == "__main__":
    main()

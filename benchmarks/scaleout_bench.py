"""Throughput of 1, 2 and 3 `k2 consume` processes in one group: Iceberg REST catalog + S3 warehouse (the stack's
`--with rest-catalog,s3`) beside the SQL catalog (SQLite) + local warehouse.

Pre-produces --records trades over --partitions partitions of one fresh topic (consume_bench's producer), then per
configuration starts N consumers at once (static instance ids, `--until-caught-up`) into a fresh table with a fresh
group, and times launch -> the table's last commit. Prints the median rows/s over --runs runs per configuration.

    python benchmarks/scaleout_bench.py                     # 60,000 records, 6 partitions, 3 runs each
    python benchmarks/scaleout_bench.py --records 20000 --runs 1 --consumers 1,3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.consume_bench import delete_topic, produce  # noqa: E402

BACKENDS = ("sql+local", "rest+s3")


def backend_env(backend: str, work: Path, table: str) -> dict[str, str]:
    """The environment of one run's consumers: its own data dir, and for rest+s3 the stack's REST catalog and S3."""
    from k2cli.stack.lake_services import client_settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_") or k.startswith("K2_STACK_")}
    env.update({"K2_HOME": str(work / "home"), "K2_DATA_DIR": str(work / "data"), "K2_DLQ_DIR": str(work / "dlq"),
                "K2_TABLE": table})
    if backend == "rest+s3":
        env.update(client_settings())
    return env


def last_commit_ms(env: dict[str, str], table: str) -> int:
    """The commit time of the table's current snapshot."""
    from tests.integration.consume_support import load_table

    snap = load_table(env, table).current_snapshot()
    return snap.timestamp_ms if snap is not None else 0


def run(backend: str, topic: str, consumers: int, records: int, batch: int) -> float:
    """N consumers over the whole topic into a fresh table; rows/s from launch to the last commit."""
    work = Path(tempfile.mkdtemp(prefix="k2-scaleout-bench-"))
    tag = uuid.uuid4().hex[:8]
    table = f"bench_{tag}.trades_v2"
    env = backend_env(backend, work, table)
    group = f"bench-scale-{tag}"
    launched = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", "k2cli", "consume", "--topics", topic, "--group", group,
                               "--instance-id", f"{group}-{n}", "--until-caught-up", "--batch-size", str(batch),
                               "--flush-interval", "2", "--metrics-port", "0", "--format", "json"],
                              env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for n in range(consumers)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"k2 consume failed ({p.returncode}): {err.decode()[-1500:]}")
    from tests.faults.support import iceberg_columns

    written = len(iceberg_columns(env, table, "message_id"))
    if written != records:
        raise SystemExit(f"{backend} x{consumers}: {written} rows in the table, {records} produced")
    return records / (last_commit_ms(env, table) / 1000 - launched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--consumers", default="1,2,3")
    args = parser.parse_args()
    counts = [int(n) for n in args.consumers.split(",")]
    topic = f"bench.scaleout.{uuid.uuid4().hex[:8]}"
    print(f"producing {args.records:,} records over {args.partitions} partitions of {topic}", flush=True)
    produce(topic, args.records, args.partitions)
    results: dict[tuple[str, int], list[float]] = {}
    try:
        for _ in range(args.runs):  # configurations interleaved, so load from elsewhere hits them alike
            for n in counts:
                for backend in BACKENDS:
                    rate = run(backend, topic, n, args.records, args.batch)
                    results.setdefault((backend, n), []).append(rate)
                    print(f"  {backend:9} x{n}: {rate:,.0f} rows/s", flush=True)
    finally:
        delete_topic(topic)
    print(f"\nmedian rows/s, launch -> last commit ({args.records:,} records, {args.partitions} partitions, "
          f"batch {args.batch:,}, {args.runs} runs, {os.cpu_count()} cores)")
    print("| consumers | " + " | ".join(BACKENDS) + " |")
    print("| --- | " + " | ".join("---" for _ in BACKENDS) + " |")
    for n in counts:
        print(f"| {n} | " + " | ".join(f"{statistics.median(results[(b, n)]):,.0f}" for b in BACKENDS) + " |")


if __name__ == "__main__":
    main()

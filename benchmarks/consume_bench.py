"""`k2 consume` throughput and commit latency on this machine, against the real broker and registry.

Throughput: pre-produces --records framed v2 trades (10 symbols, sequences, vendor data) over --partitions
partitions of a fresh topic, reads them once with a bare confluent-kafka consumer (the raw Kafka read rate of
the same run), then runs `python -m k2cli consume --max-messages N` as a subprocess per configuration, each
time into a fresh SQLite catalog with a fresh group, with trade-id deduplication on and (`--dedup both`, the
default) off (`K2_CONSUMER_DEDUP=false`), runs alternating, and reports:

- sustained msg/s: records / (time from the first record to the end of the run), from the run's statistics,
- end-to-end msg/s: records / (subscribe to end), group join and first fetch included,
- raw Kafka read msg/s: a bare consumer's rate after its first batch (see `raw_read_rate`),
- the ratio of the sustained rates with and without deduplication (medians),
- peak RSS of the consumer process (wait4 ru_maxrss); with its decode workers, the peak of the summed RSS
  and of the summed PSS (shared library pages counted once), sampled every 0.2 s; its commit latency median.

Commit latency: `TableWriter.commit` of --commit-rows rows, --commits times into one table with the default
snapshot retention (100 kept, expired every 20 commits), reporting the median wall and CPU time (and p95 wall)
of commits 1-20 for commit 10, of the 100 commits around commits 100 and 1,000 (51-150, 951-1,050), and of the
last 50 for the last commit (the table holds ~10 snapshots at commit 10, 100-120 from commit 100 on).

    python benchmarks/consume_bench.py                       # 500k records, batch 50,000 and 500, 3 runs each
    python benchmarks/consume_bench.py --records 100000 --runs 1 --commits 300
    python benchmarks/consume_bench.py --dedup on --commits 0   # deduplication on only, no commit latency
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT",
           "LINKUSDT"]
T0 = 1_767_225_600_000_000


def produce(topic: str, records: int, partitions: int, symbols: int = len(SYMBOLS), spread: bool = False) -> float:
    """Create the topic and fill it (symbol s on partition s % partitions; spread: record i on partition
    i % partitions, so one symbol's sequence interleaves over all of them); returns seconds spent producing."""
    import fastavro
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from k2cli import trade
    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import frame, strip_logical_types

    admin = AdminClient({"bootstrap.servers": "localhost:9092"})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)
    schema_id = RegistryClient("http://localhost:8081").register(f"{topic}-value", trade.avro_schema())
    parsed = fastavro.parse_schema(strip_logical_types(trade.avro_schema()))
    producer = Producer({"bootstrap.servers": "localhost:9092", "linger.ms": 50, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 1_048_576,
                         "compression.type": "lz4"})
    started = time.perf_counter()
    seqs = [0] * symbols
    for i in range(records):
        s = i % symbols
        seqs[s] += 1
        rec = {
            # trade_id names the per-symbol id, as Binance's does (the consumer's dedup keys on it)
            "message_id": str(uuid.UUID(int=i + 1, version=4)), "trade_id": f"BINANCE-{seqs[s]}",
            "symbol": SYMBOLS[s], "exchange": "BINANCE", "asset_class": "crypto", "timestamp": T0 + i * 1000,
            "price": (4_321_012_345_678 + i).to_bytes(8, "big", signed=True),
            "quantity": (120_000 + i % 1000).to_bytes(8, "big", signed=True), "currency": "USDT",
            "side": "BUY" if i % 2 else "SELL", "trade_conditions": [], "source_sequence": seqs[s],
            "ingestion_timestamp": T0 + i * 1000 + 250, "platform_sequence": None,
            "vendor_data": {"is_buyer_maker": "true" if i % 2 else "false", "event_type": "trade"},
        }
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, rec)
        while True:
            try:
                producer.produce(topic, key=SYMBOLS[s].encode(), value=frame(schema_id, buf.getvalue()),
                                 partition=(i if spread else s) % partitions)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    return time.perf_counter() - started


def delete_topic(topic: str) -> None:
    """Remove the benchmark topic (hundreds of thousands of records) from the shared broker."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": "localhost:9092"})
    with contextlib.suppress(Exception):
        admin.delete_topics([topic], operation_timeout=30)[topic].result(60)


def raw_read_rate(topic: str, records: int, partitions: int, conf: dict | None = None) -> float:
    """msg/s of a bare consumer reading every record (consume(1000), value touched): the records after its first
    batch over the time from the end of that batch (the clock cannot start before the first record arrives, so
    the first batch, read before the clock, is not counted)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": "localhost:9092", "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, **(conf or {})})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    n, timed, started = 0, 0, None
    while n < records:
        msgs = c.consume(num_messages=1000, timeout=1.0)
        read = 0
        for m in msgs:
            if m.error() is None:
                m.value()
                read += 1
        n += read
        if started is not None:
            timed += read
        elif read:
            started = time.perf_counter()
    elapsed = time.perf_counter() - (started or time.perf_counter())
    c.close()
    return timed / elapsed if elapsed > 0 and timed else 0.0


def consume_run(topic: str, records: int, batch: int, dedup: bool = True) -> dict:
    """One `k2 consume` subprocess over the whole topic into a fresh lake; its statistics plus peak RSS."""
    work = Path(tempfile.mkdtemp(prefix="k2-consume-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update({"K2_HOME": str(work / "home"), "K2_DATA_DIR": str(work / "data"), "K2_DLQ_DIR": str(work / "dlq"),
                "K2_CONSUMER_DEDUP": "true" if dedup else "false"})
    group = f"bench-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-m", "k2cli", "consume", "--topics", topic, "--max-messages",
                             str(records), "--batch-size", str(batch), "--flush-interval", "30", "--group", group,
                             "--metrics-port", "0", "--format", "json"], env=env, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tree_peak = [0, 0]  # RSS summed over the processes, PSS summed (shared library pages counted once)
    done = threading.Event()

    def sample_tree() -> None:  # the consumer process plus its decode workers, every 0.2 s
        import psutil

        try:
            root = psutil.Process(proc.pid)
            while not done.is_set():
                procs = [root, *root.children(recursive=True)]
                rss = pss = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        info = p.memory_full_info()
                        rss += info.rss
                        pss += info.pss
                tree_peak[0] = max(tree_peak[0], rss)
                tree_peak[1] = max(tree_peak[1], pss)
                time.sleep(0.2)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample_tree, daemon=True)
    sampler.start()
    errs: list[bytes] = []
    reader = threading.Thread(target=lambda: errs.append(proc.stderr.read()))
    reader.start()
    out = proc.stdout.read()
    reader.join()
    err = errs[0] if errs else b""
    _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 gives this child's peak RSS
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"k2 consume failed ({proc.returncode}): {err.decode()[-2000:]}")
    stats = json.loads(out)
    active = stats["duration_seconds"] - (stats["first_record_seconds"] or 0)
    return {
        "sustained": stats["messages_consumed"] / active,
        "end_to_end": stats["throughput_msg_per_sec"],
        "rss_mb": usage.ru_maxrss / 1024,
        "tree_rss_mb": tree_peak[0] / 2**20,
        "tree_pss_mb": tree_peak[1] / 2**20,
        "commit_ms": stats["commit_latency_ms"]["median"],
        "snapshots": stats["snapshots_committed"],
        "written": stats["messages_written"],
        "duplicates": stats.get("duplicates_skipped", 0),
    }


def window(at: int, commits: int) -> tuple[int, int]:
    """The commits (1-based, inclusive) whose figures make the point at commit `at`: commits 1-20 for commit 10;
    the 100 commits around a later point (at-49 .. at+50); fewer where the series ends (the last 50 for the last)."""
    half = 10 if at <= 10 else 50
    return max(0, at - half) + 1, min(commits, at + half)


def commit_latency(commits: int, rows: int) -> tuple[list[tuple[int, int, int, float, float, float]], int]:
    """Commit latency around commits 10, 100, 1,000 and the last (the commits of `window`):
    (commit, first and last commit of its window, median wall ms, median CPU ms, p95 wall ms); snapshots kept."""
    from decimal import Decimal

    import pyarrow as pa

    from k2cli import trade
    from k2cli.lake.catalog import open_catalog
    from k2cli.lake.writer import TableWriter
    from k2cli.settings import Settings

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="k2-commit-bench-")))
    writer = TableWriter(open_catalog(settings), "market_data.trades_v2",
                         snapshots_to_keep=settings.snapshots_to_keep, expire_step=settings.snapshot_expire_step)
    recs = [trade.new_trade(trade_id=f"B-{i}", symbol=SYMBOLS[i % 10], exchange="BINANCE",
                            timestamp_us=T0 + i * 1000, price=Decimal("43210.12345678"),
                            quantity=Decimal("0.0012"), currency="USDT", side="BUY",
                            ingestion_timestamp_us=T0 + i * 1000 + 5, source_sequence=i) for i in range(rows)]
    table = pa.Table.from_pylist(recs, schema=trade.arrow_schema())
    wall, cpu = [], []
    for i in range(commits):
        c0 = time.process_time()
        result = writer.commit(table, {("bench", 0): (i * rows, (i + 1) * rows)},
                               {("bench", 0): i * rows if i else None}, records=rows)
        cpu.append((time.process_time() - c0) * 1000)
        wall.append(result.seconds * 1000)
    points = []
    for at in sorted({10, 100, 1000, commits}):
        if at <= commits:
            first, last = window(at, commits)
            walls = sorted(wall[first - 1:last])
            points.append((at, first, last, statistics.median(walls), statistics.median(cpu[first - 1:last]),
                           walls[min(len(walls) - 1, int(len(walls) * 0.95))]))
    return points, writer.snapshot_count()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--batches", default="50000,500", help="comma-separated batch sizes")
    ap.add_argument("--small-batch-records", type=int, default=100_000,
                    help="records consumed in runs with batches under 5,000 (they commit far more often)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dedup", choices=("both", "on", "off"), default="both",
                    help="trade-id deduplication in the consumer: both (compare, alternating runs), on, off")
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--commit-rows", type=int, default=500)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this file as JSON")
    args = ap.parse_args()
    report: dict = {"throughput": {}, "commit_latency": None}

    if not args.skip_throughput:
        topic = f"bench.consume.{uuid.uuid4().hex[:8]}"
        secs = produce(topic, args.records, args.partitions)
        print(f"produced {args.records:,} records to {topic} ({args.partitions} partitions) in {secs:.1f}s")
        modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.dedup]
        for batch in (int(b) for b in args.batches.split(",")):
            n = args.records if batch >= 5000 else min(args.records, args.small_batch_records)
            by_mode: dict[bool, list[dict]] = {m: [] for m in modes}
            for run in range(args.runs):
                for dedup in modes:
                    raw = raw_read_rate(topic, n, args.partitions)
                    r = consume_run(topic, n, batch, dedup)
                    r["raw"] = raw
                    by_mode[dedup].append(r)
                    print(f"  batch {batch:>6,} dedup {'on ' if dedup else 'off'} run {run + 1}: "
                          f"sustained {r['sustained']:>8,.0f} msg/s  "
                          f"end-to-end {r['end_to_end']:>8,.0f} msg/s  raw Kafka read {raw:>9,.0f} msg/s  "
                          f"peak RSS {r['rss_mb']:.0f} MB (with decode workers: RSS {r['tree_rss_mb']:.0f} MB, "
                          f"PSS {r['tree_pss_mb']:.0f} MB)  "
                          f"commit median {r['commit_ms']} ms  "
                          f"snapshots {r['snapshots']}  written {r['written']:,}", flush=True)
            entry: dict = {"records": n}
            for dedup, results in by_mode.items():
                med = {k: statistics.median(r[k] for r in results)
                       for k in ("sustained", "end_to_end", "raw", "rss_mb", "tree_rss_mb", "tree_pss_mb")}
                print(f"batch {batch:,} dedup {'on' if dedup else 'off'} over {n:,} records, median of "
                      f"{len(results)}: sustained {med['sustained']:,.0f} msg/s, end-to-end "
                      f"{med['end_to_end']:,.0f} msg/s, raw Kafka read {med['raw']:,.0f} msg/s, peak RSS "
                      f"{med['rss_mb']:.0f} MB (with decode workers: RSS {med['tree_rss_mb']:.0f} MB, "
                      f"PSS {med['tree_pss_mb']:.0f} MB)", flush=True)
                if dedup or len(modes) == 1:  # run_all.py reads "median": deduplication on, the default
                    entry.update({"median": med, "runs": results})
                entry["dedup_on" if dedup else "dedup_off"] = {"median": med, "runs": results}
            if len(modes) == 2:
                ratio = entry["dedup_on"]["median"]["sustained"] / entry["dedup_off"]["median"]["sustained"]
                entry["dedup_ratio"] = ratio
                print(f"batch {batch:,}: with deduplication {ratio:.1%} of the sustained rate without", flush=True)
            report["throughput"][str(batch)] = entry
        delete_topic(topic)
    if args.commits:
        points, snaps = commit_latency(args.commits, args.commit_rows)
        print(f"commit latency ({args.commit_rows} rows; median wall / median CPU / p95 wall of the commits in "
              "each window): " + ", ".join(f"commit {at:,} (commits {lo:,}-{hi:,}): {w:.1f} / {c:.1f} / {p:.0f} ms"
                                           for at, lo, hi, w, c, p in points)
              + f" ({snaps} snapshots retained at the end)")
        report["commit_latency"] = {"rows": args.commit_rows, "commits": args.commits, "snapshots": snaps,
                                    # read by run_all.py: the first and last points with the commits they cover
                                    "early_ms": points[0][3], "late_ms": points[-1][3],
                                    "early_window": list(points[0][1:3]), "late_window": list(points[-1][1:3]),
                                    "points": [{"commit": at, "window": [lo, hi], "wall_ms": w, "cpu_ms": c,
                                                "p95_wall_ms": p} for at, lo, hi, w, c, p in points]}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

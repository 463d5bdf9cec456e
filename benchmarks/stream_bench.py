# NOTE (issue-8 engineer, 2026-11-23 18:31): this file accidentally replaced an uncommitted stream_bench.py
# that another engineer was writing (flags --runs/--seconds, per-run trades/s median/min, RSS median/max, stream
# and simulator CPU %, load average). That version could not be recovered. If it was yours, restore or rewrite
# it; benchmarks/run_all.py only needs `--runs N --duration S --json FILE` writing {"median": {"trades_per_sec",
# "peak_rss_mb", ...}}.
"""`k2 stream` throughput and memory on this machine: the simulator at full speed into the real broker.

Each run starts `k2 simulate binance --rate 0` (trades as fast as the client reads) and `k2 stream binance
--duration S` into a fresh topic, both as subprocesses, and reports the stream's own summary (trades produced
and acknowledged per second over the run, connection set-up included) and its peak RSS (wait4 ru_maxrss).
The simulator is Python too and shares the 2 cores with the stream and the broker, so this is the rate of
the whole local loop, not of the stream alone.

    python benchmarks/stream_bench.py                     # 3 runs of 20 s, BTCUSDT,ETHUSDT
    python benchmarks/stream_bench.py --runs 5 --duration 30 --json /tmp/stream.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update({"K2_HOME": str(work / "home"), "K2_DATA_DIR": str(work / "data"), "K2_DLQ_DIR": str(work / "dlq")})
    return env


def one_run(duration: float, symbols: str) -> dict:
    """One simulator + stream run; the stream's summary figures and peak RSS."""
    work = Path(tempfile.mkdtemp(prefix="k2-stream-bench-"))
    env = _env(work)
    url_file = work / "url"
    sim = subprocess.Popen([sys.executable, "-m", "k2cli", "simulate", "binance", "--port", "0", "--rate", "0",
                            "--symbols", symbols, "--url-file", str(url_file), "--format", "json"],
                           env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    topic = f"bench.stream.{uuid.uuid4().hex[:8]}"
    try:
        deadline = time.monotonic() + 30
        while not (url_file.exists() and url_file.read_text().strip()):
            if sim.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("k2 simulate did not start")
            time.sleep(0.05)
        url = url_file.read_text().strip()
        proc = subprocess.Popen([sys.executable, "-m", "k2cli", "stream", "binance", "--url", url, "--symbols",
                                 symbols, "--topic", topic, "--duration", str(duration), "--metrics-port", "0",
                                 "--format", "json"], env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        out, err = proc.stdout.read(), proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"k2 stream failed ({proc.returncode}): {err.decode()[-2000:]}")
        text = out.decode()
        summary = json.loads(text[text.index("{"):])
    finally:
        if sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
        _delete_topic(topic)
    return {"trades_per_sec": summary["trades_per_second"], "produced": summary["produced"],
            "peak_rss_mb": usage.ru_maxrss / 1024, "final_rss_mb": summary["rss_bytes"] / 2**20,
            "duration_s": summary["duration_seconds"]}


def _delete_topic(topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    with contextlib.suppress(Exception):
        AdminClient({"bootstrap.servers": os.environ.get("K2_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")}) \
            .delete_topics([topic])[topic].result(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per stream run")
    ap.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this file as JSON")
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        r = one_run(args.duration, args.symbols)
        runs.append(r)
        print(f"  run {i + 1}: {r['trades_per_sec']:>8,.0f} trades/s  produced {r['produced']:,}  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB  final RSS {r['final_rss_mb']:.0f} MB", flush=True)
    med = {k: statistics.median(r[k] for r in runs) for k in ("trades_per_sec", "peak_rss_mb", "final_rss_mb")}
    print(f"k2 stream, median of {len(runs)} runs of {args.duration:g} s: {med['trades_per_sec']:,.0f} trades/s, "
          f"peak RSS {med['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": med, "duration_s": args.duration,
                                         "symbols": args.symbols}, indent=2))


if __name__ == "__main__":
    main()

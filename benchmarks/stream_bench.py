"""Benchmark `k2 stream`: the simulator at full speed (--rate 0, its own process) into the real broker.

Measures, after a warm-up, the per-second rate of records landing in the topic (the sum of its partitions'
watermarks, high minus low, read from the broker every second: not k2's own counter) and the stream process's
RSS, and prints medians per run and over runs, with the CPU used by the stream and by the simulator. A run
passes only when the stream reports 0 undelivered (and no produce errors) and the topic holds exactly the
records the stream says it produced; a failed run is printed as FAILED and the script exits 1.

    python benchmarks/stream_bench.py                       # binance, 3 runs of 30 s
    python benchmarks/stream_bench.py --exchange kraken --kraken-version 2 --runs 5 --seconds 20
    python benchmarks/stream_bench.py --runs 3 --duration 20 --json FILE   # as benchmarks/run_all.py calls it

Needs the local stack (Kafka localhost:9092, registry localhost:8081). Each run uses its own topic, deleted
afterwards. Not a test: the figures depend on the machine and on what else runs on it; the load average at
the start of each run is printed next to its figures. The simulator is Python too and shares the cores with
the stream and the broker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

SYMBOLS = {"binance": "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT", "kraken": "BTC/USD,ETH/USD,SOL/USD,DOGE/USD"}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def simulator_url(sim: subprocess.Popen, url_file: Path, timeout: float = 30.0) -> str:
    """The URL a `k2 simulate --url-file` process writes once it serves (SystemExit if it dies or takes too long)."""
    deadline = time.monotonic() + timeout
    while not url_file.exists() or not url_file.read_text().strip():
        if sim.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("k2 simulate failed to start")
        time.sleep(0.05)
    return url_file.read_text().strip()


def _serving(port: int) -> bool:
    """Whether the stream's metrics endpoint answers (it is up and connected to its sink)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class TopicCount:
    """Records in a topic from the broker's watermarks (high minus low, summed over its partitions)."""

    def __init__(self, topic: str, bootstrap: str) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-marks-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False})
        self.partitions: list[int] = []

    def records(self) -> float | None:
        """The records in the topic now; None while it does not exist."""
        from confluent_kafka import TopicPartition

        if not self.partitions:
            meta = self.consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return None
            self.partitions = sorted(meta.partitions)
        total = 0
        for p in self.partitions:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5, cached=False)
            total += high - low
        return float(total)

    def close(self) -> None:
        """Close the consumer used for the watermark requests."""
        self.consumer.close()


def _delete_topic(topic: str, bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.delete_topics([topic], operation_timeout=30)[topic].result(30)
    except Exception as exc:
        print(f"  (could not delete {topic}: {exc})", file=sys.stderr)


def run_once(args: argparse.Namespace, tmp: Path) -> dict:
    """One run: simulator + stream; per-second rates and RSS after the warm-up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update(K2_HOME=str(tmp / "home"), K2_DLQ_DIR=str(tmp / "dlq"), K2_MEMORY_SAMPLE_INTERVAL="1",
               K2_KAFKA_BOOTSTRAP_SERVERS=args.bootstrap, K2_SCHEMA_REGISTRY_URL=args.registry)
    url_file = tmp / f"sim-{uuid.uuid4().hex[:6]}.url"
    sim = subprocess.Popen([sys.executable, "-m", "k2cli", "simulate", args.exchange, "--rate", "0", "--port", "0",
                            "--symbols", args.symbols, "--ping-interval", "0", "--url-file", str(url_file)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    topic = f"bench.stream.{args.exchange}.{uuid.uuid4().hex[:8]}"
    port = free_port()
    stream = None
    count = TopicCount(topic, args.bootstrap)
    try:
        url = simulator_url(sim, url_file) + ("/v2" if args.exchange == "kraken" and args.kraken_version == 2 else "")
        load = os.getloadavg()[0]
        stream = subprocess.Popen([sys.executable, "-m", "k2cli", "stream", args.exchange, "--url", url,
                                   "--symbols", args.symbols, "--topic", topic, "--metrics-port", str(port),
                                   "--duration", str(args.warmup + args.seconds + 2), "--format", "json"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc, sim_proc = psutil.Process(stream.pid), psutil.Process(sim.pid)
        while not _serving(port) or count.records() is None:
            if stream.poll() is not None:
                raise SystemExit(f"k2 stream failed: {stream.stderr.read()[-2000:]}")
            time.sleep(0.1)
        cpu_stream, cpu_sim = proc.cpu_times(), sim_proc.cpu_times()
        started = time.monotonic()
        peak_rss = proc.memory_info().rss
        samples = [(0.0, count.records() or 0.0, peak_rss)]  # (t, records in the topic, rss)
        while time.monotonic() - started < args.warmup + args.seconds and stream.poll() is None:
            time.sleep(1.0)
            with contextlib.suppress(psutil.Error):
                samples.append((time.monotonic() - started, count.records() or 0.0, proc.memory_info().rss))
                peak_rss = max(peak_rss, samples[-1][2])
        cpu_stream_end, cpu_sim_end = proc.cpu_times(), sim_proc.cpu_times()
        out, _err = stream.communicate(timeout=120)
        summary = json.loads(out[out.index("{"):]) if "{" in out else {}
        in_topic = count.records()
    finally:
        if stream is not None and stream.poll() is None:
            stream.send_signal(signal.SIGTERM)
            stream.wait(60)
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
        count.close()
        _delete_topic(topic, args.bootstrap)
    window = [s for s in samples if s[0] > args.warmup]
    mean_rate = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) if len(window) > 1 else 0.0
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(window, window[1:], strict=False)]
    rss = [s[2] for s in window]
    span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 1.0

    def cpu(a, b):
        return round(100 * ((b.user - a.user) + (b.system - a.system)) / span, 1)

    stream_cpu = cpu(cpu_stream, cpu_stream_end)
    return {
        "trades_per_s_median": round(statistics.median(rates), 1) if rates else 0.0,
        "trades_per_s_mean": round(mean_rate, 1),
        # CPU the stream spends per trade (all its threads), CPU and trades both over the whole sampled span
        "stream_cpu_us_per_trade": round(stream_cpu / 100 * span * 1e6 / (samples[-1][1] - samples[0][1]), 1)
        if len(samples) > 1 and samples[-1][1] > samples[0][1] else None,
        "trades_per_s_min": round(min(rates), 1) if rates else 0.0,
        "rss_mib_median": round(statistics.median(rss) / 2**20, 1) if rss else 0.0,
        "rss_mib_max": round(peak_rss / 2**20, 1),
        "stream_cpu_percent": stream_cpu,
        "simulator_cpu_percent": cpu(cpu_sim, cpu_sim_end),
        "load_average_at_start": round(load, 2),
        "produced_total": summary.get("produced"),
        "records_in_topic": in_topic,
        "undelivered": summary.get("undelivered"),
        "produce_errors": sum((summary.get("produce_errors") or {}).values()),
        "status": summary.get("status"),
        "failure": failure(summary, in_topic),
    }


def failure(summary: dict, in_topic: float | None) -> str:
    """Why a run does not count ("" when it does): trades not delivered, or a topic that disagrees with k2."""
    if not summary:
        return "the stream printed no summary"
    not_delivered = (summary.get("undelivered") or 0) + sum((summary.get("produce_errors") or {}).values())
    if not_delivered:
        return f"{not_delivered} trades not delivered to Kafka"
    if in_topic is None or in_topic != summary.get("produced"):
        return f"the topic holds {in_topic} records, the stream says it produced {summary.get('produced')}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exchange", choices=("binance", "kraken"), default="binance")
    parser.add_argument("--kraken-version", type=int, choices=(1, 2), default=1)
    parser.add_argument("--symbols", default=None)
    parser.add_argument("--seconds", "--duration", dest="seconds", type=float, default=30.0,
                        help="measured seconds per run (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--registry", default="http://localhost:8081")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file "
                        '(with "median": {"trades_per_sec", "peak_rss_mb", "steady_rss_mb"} for run_all.py)')
    args = parser.parse_args()
    args.symbols = args.symbols or SYMBOLS[args.exchange]
    label = args.exchange + (f" v{args.kraken_version}" if args.exchange == "kraken" else "")
    print(f"k2 stream benchmark: {label}, symbols {args.symbols}, {args.runs} runs x {args.seconds:g}s "
          f"(+{args.warmup:g}s warm-up), simulator at full speed, {psutil.cpu_count()} CPUs", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="k2-stream-bench-") as tmp:
        for i in range(args.runs):
            r = run_once(args, Path(tmp))
            results.append(r)
            print(f"  run {i + 1}: {r['trades_per_s_median']:>9,.0f} trades/s (min {r['trades_per_s_min']:,.0f})"
                  f"  RSS median {r['rss_mib_median']:.1f} MiB (max {r['rss_mib_max']:.1f})"
                  f"  CPU stream {r['stream_cpu_percent']}% ({r['stream_cpu_us_per_trade']} µs/trade)"
                  f" simulator {r['simulator_cpu_percent']}%"
                  f"  load {r['load_average_at_start']}  [{r['status']}, undelivered {r['undelivered']}, "
                  f"{r['records_in_topic']:,.0f} records in the topic]"
                  + (f"  FAILED: {r['failure']}" if r["failure"] else ""), flush=True)
    overall = {
        "exchange": label,
        "runs": len(results),
        "trades_per_s_median": statistics.median(r["trades_per_s_median"] for r in results),
        "rss_mib_median": statistics.median(r["rss_mib_median"] for r in results),
        "rss_mib_max": max(r["rss_mib_max"] for r in results),
        "per_run": results,
    }
    print(f"median over runs: {overall['trades_per_s_median']:,.0f} trades/s, steady RSS median "
          f"{overall['rss_mib_median']:.1f} MiB (max {overall['rss_mib_max']:.1f} MiB)")
    print(json.dumps(overall))
    if args.json:
        runs = [{"trades_per_sec": r["trades_per_s_median"], "peak_rss_mb": r["rss_mib_max"],
                 "steady_rss_mb": r["rss_mib_median"], **r} for r in results]
        args.json.write_text(json.dumps({
            "runs": runs, "duration_s": args.seconds, "symbols": args.symbols, "exchange": label,
            "median": {"trades_per_sec": overall["trades_per_s_median"],
                       "peak_rss_mb": statistics.median(r["rss_mib_max"] for r in results),
                       "steady_rss_mb": overall["rss_mib_median"]},
        }, indent=2))
    failed = [i + 1 for i, r in enumerate(results) if r["failure"]]
    if failed:
        raise SystemExit(f"stream benchmark FAILED: run(s) {', '.join(map(str, failed))} lost trades or disagree "
                         "with the topic (see above)")


if __name__ == "__main__":
    main()

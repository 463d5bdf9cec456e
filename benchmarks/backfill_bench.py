"""Benchmark the gap backfill: trades/s filled from the simulator's REST API into the real broker.

Each part of a run starts a simulator at full speed (--rate 0, one symbol) and reads --trades trades from its
WebSocket with a bare client, so its REST history holds that deep a range (nothing else runs on it afterwards):

- `k2 backfill binance --symbol S --from-id N --to-id M` over the whole range into a fresh topic; rate = trades
  produced / the command's own duration (its summary), and over the whole command's wall time (start-up,
  first request and flush included);
- the stream's in-flight backfill of a gap of the same depth: one trade of the range is put in a fresh topic
  (`k2 backfill --from-id N --to-id N`), then `k2 stream binance` starts on a second simulator printing the same
  symbol live at 20 trades/s from id M+1 (`--first-id`), with --rest-url on the first one: it resumes from id N,
  meets ids from M+1 live and fills N+1..M from REST while it streams. Rate = k2_backfill_trades_total (scraped
  every 0.1 s) over the time from its first rise to its last.

    python benchmarks/backfill_bench.py                         # 100,000 trades, 3 runs
    python benchmarks/backfill_bench.py --trades 20000 --runs 1
    python benchmarks/backfill_bench.py --runs 3 --json FILE     # as benchmarks/run_all.py calls it

Needs the local stack (Kafka localhost:9092, registry localhost:8081); topics are deleted afterwards. Not a test:
the figures depend on the machine and its load (printed with each run). The simulator is Python too and shares
the cores with k2 and the broker; REST pages are Binance's largest, 1,000 trades. The simulator reports a used
weight of 25 a call and k2 keeps the reported weight under 80 % of 6,000 a minute, pausing to the next minute
beyond: 100,000 trades (100 calls, weight 2,500) fit one minute's budget; a longer fill at that weight is held to
192 calls (192,000 trades) a minute, ~3,200 trades/s, whatever the rate measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from stream_bench import free_port, simulator_url  # benchmarks/ is on sys.path when run as a script

SYMBOL = "BTCUSDT"
LIVE_RATE = "20"


def _env(tmp: Path, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update(K2_HOME=str(tmp / "home"), K2_DLQ_DIR=str(tmp / "dlq"), K2_KAFKA_BOOTSTRAP_SERVERS=args.bootstrap,
               K2_SCHEMA_REGISTRY_URL=args.registry, K2_BACKFILL_MAX_TRADES=str(10 * args.trades))
    return env


@contextmanager
def simulator(env: dict[str, str], tmp: Path, *flags: str) -> Iterator[str]:
    """A `k2 simulate binance` with these flags; its base URL (ws://host:port)."""
    url_file = tmp / f"sim-{uuid.uuid4().hex[:6]}.url"
    sim = subprocess.Popen([sys.executable, "-m", "k2cli", "simulate", "binance", "--symbols", SYMBOL, "--port", "0",
                            "--ping-interval", "0", "--url-file", str(url_file), *flags],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield simulator_url(sim, url_file).rsplit("/", 1)[0]
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)


def pull(base: str, n: int) -> tuple[int, int]:
    """Read n trades from the simulator's raw stream (its market prints them, its REST history keeps them);
    the first and last trade id read."""
    from websockets.sync.client import connect

    first = last = 0
    with connect(f"{base}/ws/{SYMBOL.lower()}@trade", max_size=None) as ws:
        for i in range(n):
            trade = json.loads(ws.recv())
            last = int(trade["t"])
            if i == 0:
                first = last
    return first, last


def k2_backfill(env: dict[str, str], rest: str, topic: str, first: int, last: int) -> dict[str, Any]:
    """`k2 backfill binance` over first..last: its JSON summary, with the command's wall time."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "k2cli", "backfill", "binance", "--symbol", SYMBOL, "--from-id",
                           str(first), "--to-id", str(last), "--topic", topic, "--rest-url", rest, "--format",
                           "json"], env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"k2 backfill exited {proc.returncode}: {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    return {**summary, "wall_seconds": wall}


def _backfilled(port: int) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("k2_backfill_trades_total"))


def stream_backfill(env: dict[str, str], tmp: Path, rest: str, topic: str, first: int, last: int) -> dict[str, Any]:
    """The stream's in-flight fill of first+1..last (the topic holds `first`, live starts at last+1)."""
    k2_backfill(env, rest, topic, first, first)
    gap = last - first
    port = free_port()
    with simulator(env, tmp, "--rate", LIVE_RATE, "--first-id", str(last + 1)) as live:
        stream = subprocess.Popen([sys.executable, "-m", "k2cli", "stream", "binance", "--url", f"{live}/stream",
                                   "--rest-url", rest, "--symbols", SYMBOL, "--topic", topic, "--metrics-port",
                                   str(port), "--format", "json"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            rose = done = None
            deadline = time.monotonic() + 600
            while done is None and time.monotonic() < deadline:
                if stream.poll() is not None:
                    raise SystemExit(f"k2 stream exited {stream.returncode}: {stream.stderr.read()[-2000:]}")
                value, now = _backfilled(port), time.monotonic()
                if value and rose is None:
                    rose = (now, value)
                if value is not None and value >= gap - 1:
                    done = (now, value)
                time.sleep(0.1)
            if rose is None or done is None:
                raise SystemExit(f"the stream did not fill its gap of {gap - 1} trades within 600 s")
        finally:
            stream.send_signal(signal.SIGTERM)
            out, _ = stream.communicate(timeout=120)
    summary = json.loads(out[out.index("{"):]) if "{" in out else {}
    seconds = done[0] - rose[0]
    return {"trades_backfilled": summary.get("trades_backfilled"), "gaps_filled": summary.get("gaps_filled"),
            "seconds": round(seconds, 2), "trades_per_s": round((done[1] - rose[1]) / seconds, 1) if seconds else None,
            "undelivered": summary.get("undelivered")}


def _delete_topics(topics: list[str], bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for topic, future in admin.delete_topics(topics, operation_timeout=30).items():
        try:
            future.result(30)
        except Exception as exc:  # a benchmark goes on; the topic is named in the message
            print(f"  (could not delete {topic}: {exc})", file=sys.stderr)


def run_once(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One run: a deep history, `k2 backfill` over it, then the stream's fill of a gap as deep."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = _env(tmp, args)
    tag = uuid.uuid4().hex[:8]
    topics = [f"bench.backfill.cmd.{tag}", f"bench.backfill.stream.{tag}"]
    load = os.getloadavg()[0]
    try:  # a simulator of its own for each part: each starts its minute with the whole REST weight budget
        with simulator(env, tmp, "--rate", "0") as history:
            first, last = pull(history, args.trades)
            cmd = k2_backfill(env, "http" + history[2:], topics[0], first, last)
        with simulator(env, tmp, "--rate", "0") as history:
            first, last = pull(history, args.trades)
            live = stream_backfill(env, tmp, "http" + history[2:], topics[1], first, last)
    finally:
        _delete_topics(topics, args.bootstrap)
    produced = cmd["produced"]
    return {
        "trades": last - first + 1,
        "command_trades_per_s": round(produced / cmd["duration_seconds"], 1),
        "command_wall_trades_per_s": round(produced / cmd["wall_seconds"], 1),
        "command_produced": produced,
        "command_seconds": round(cmd["duration_seconds"], 2),
        "command_requests": cmd.get("requests"),
        "stream_trades_per_s": live["trades_per_s"],
        "stream_trades_backfilled": live["trades_backfilled"],
        "stream_seconds": live["seconds"],
        "stream_undelivered": live["undelivered"],
        "load_average_at_start": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=100_000, help="depth of the range and of the gap")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--registry", default="http://localhost:8081")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file "
                        '(with "median": {"command_trades_per_s", "stream_trades_per_s"} for run_all.py)')
    args = parser.parse_args()
    print(f"k2 backfill benchmark: binance {SYMBOL}, {args.trades:,} trades deep, {args.runs} runs, "
          f"{os.cpu_count()} CPUs", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="k2-backfill-bench-") as tmp:
        for i in range(args.runs):
            r = run_once(args, Path(tmp) / str(i))
            results.append(r)
            print(f"  run {i + 1}: k2 backfill {r['command_trades_per_s']:>9,.0f} trades/s "
                  f"({r['command_produced']:,} in {r['command_seconds']:.1f} s; whole command "
                  f"{r['command_wall_trades_per_s']:,.0f}/s; requests {r['command_requests']})"
                  f"  stream in-flight {r['stream_trades_per_s'] or 0:>9,.0f} trades/s "
                  f"({r['stream_trades_backfilled']} in {r['stream_seconds']:.1f} s, undelivered "
                  f"{r['stream_undelivered']})  load {r['load_average_at_start']}", flush=True)
    median = {key: statistics.median(r[key] or 0 for r in results)
              for key in ("command_trades_per_s", "command_wall_trades_per_s", "stream_trades_per_s")}
    print(f"median over runs: k2 backfill {median['command_trades_per_s']:,.0f} trades/s (whole command "
          f"{median['command_wall_trades_per_s']:,.0f}), stream in-flight {median['stream_trades_per_s']:,.0f} "
          f"trades/s")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "trades": args.trades, "symbol": SYMBOL,
                                         "median": median}, indent=2))


if __name__ == "__main__":
    main()

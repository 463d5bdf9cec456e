"""The stream peer: `k2 stream` beside cryptofeed 3.0.1 (Binance feed + its Kafka backend) on the same simulator.

Each run starts k2's Binance simulator at full speed (`--rate 0`: as fast as the client reads, over wss:// because
cryptofeed accepts only wss addresses) once per tool, points the tool at it, and measures what reaches Kafka:
the sum of the topic's watermarks read from the broker every second (not the tools' own counters), after a
warm-up, and the tool's peak RSS. The two tools run one after the other (2 cores), each into a topic of its own
with the same partitions; the order alternates between runs. Figures are medians over the runs.

    python benchmarks/peers/stream_peer.py [--runs 3] [--seconds 20] [--warmup 5] [--json FILE]

cryptofeed needs Python >= 3.13: its venv is made on first use under $K2_HOME/cache/peers/cryptofeed-venv from
PyPI (cryptofeed==3.0.1, aiokafka[lz4]) with a python3.13 found on PATH or under ~/.pyenv/versions. How the feed is
pointed at the simulator: benchmarks/peers/cryptofeed/feed_to_kafka.py. Needs the local stack (Kafka, registry).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: stream_bench's helpers
from stream_bench import TopicCount, free_port, simulator_url

CRYPTOFEED = "cryptofeed==3.0.1"
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT"
FEED_SCRIPT = Path(__file__).resolve().parent / "cryptofeed" / "feed_to_kafka.py"
PARTITIONS = 6
TOOLS = ("k2", "cryptofeed")


def _home() -> Path:
    return Path(os.environ.get("K2_HOME") or Path.home() / ".k2").expanduser()


def _python313() -> str:
    """A Python >= 3.13 interpreter (cryptofeed 3.x requires one)."""
    for name in ("python3.14", "python3.13"):
        found = shutil.which(name)
        if found and "/shims/" not in found:
            return found
    pyenv = sorted((Path.home() / ".pyenv" / "versions").glob("3.1[3-9]*/bin/python"))
    if pyenv:
        return str(pyenv[-1])
    raise SystemExit("cryptofeed 3.0.1 needs Python >= 3.13; install one (e.g. `pyenv install 3.13`)")


def ensure_cryptofeed(cache: Path | None = None) -> Path:
    """The python of cryptofeed's venv, made on first use (PyPI: cryptofeed 3.0.1, aiokafka with lz4)."""
    venv = (cache or _home() / "cache") / "peers" / "cryptofeed-venv"
    python = venv / "bin" / "python"
    probe = "import aiokafka, cramjam, importlib.metadata as m; assert m.version('cryptofeed') == '3.0.1'"
    check = [str(python), "-c", probe]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    subprocess.run([_python313(), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", CRYPTOFEED, "aiokafka[lz4]"], check=True)
    subprocess.run(check, check=True)
    return python


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost that is its own CA: (cert.pem, key.pem)."""
    cert, key = directory / "sim-cert.pem", directory / "sim-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:TRUE"], check=True, capture_output=True)
    return cert, key


def _topic(name: str, bootstrap: str, create: bool) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    with contextlib.suppress(Exception):
        if create:
            admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[name].result(30)
        else:
            admin.delete_topics([name], operation_timeout=30)[name].result(30)


@contextlib.contextmanager
def _simulator(env: dict[str, str], tmp: Path, cert: Path, key: Path, symbols: str) -> Iterator[str]:
    """k2's Binance simulator at full speed over wss://; yields its URL."""
    url_file = tmp / f"sim-{uuid.uuid4().hex[:6]}.url"
    sim = subprocess.Popen([sys.executable, "-m", "k2cli", "simulate", "binance", "--rate", "0", "--port", "0",
                            "--symbols", symbols, "--ping-interval", "0", "--tls-cert", str(cert), "--tls-key",
                            str(key), "--url-file", str(url_file)], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        yield simulator_url(sim, url_file)
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()


def _measure(proc: subprocess.Popen, count: TopicCount, warmup: float, seconds: float) -> dict[str, Any]:
    """Per-second rates into the topic after the warm-up, and the process's peak RSS, until `seconds` have passed."""
    ps = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while not count.records():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the tool exited (or delivered nothing in 60 s): {proc.args[:4]}")
        time.sleep(0.2)
    started = time.monotonic()
    peak = ps.memory_info().rss
    samples = [(0.0, count.records() or 0.0)]
    while time.monotonic() - started < warmup + seconds and proc.poll() is None:
        time.sleep(1.0)
        with contextlib.suppress(psutil.Error):
            peak = max(peak, ps.memory_info().rss)
        samples.append((time.monotonic() - started, count.records() or 0.0))
    window = [s for s in samples if s[0] > warmup]
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(window, window[1:], strict=False)]
    return {"trades_per_s": round(statistics.median(rates), 1) if rates else 0.0,
            "peak_rss_mib": round(peak / 2**20, 1), "in_topic": count.records()}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _start_k2(url: str, topic: str, env: dict[str, str], cert: Path, symbols: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "k2cli", "stream", "binance", "--url", url, "--symbols", symbols,
                             "--topic", topic, "--metrics-port", str(free_port()), "--format", "json"],
                            env={**env, "K2_CA_BUNDLE": str(cert)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _start_cryptofeed(python: Path, url: str, topic: str, bootstrap: str, cert: Path,
                      symbols: str, env: dict[str, str]) -> subprocess.Popen:
    base = url.rsplit("/stream", 1)[0]
    return subprocess.Popen([str(python), str(FEED_SCRIPT), base, topic, symbols, bootstrap],
                            env={**env, "SSL_CERT_FILE": str(cert)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _one(tool: str, start: Callable[[str, str], subprocess.Popen], env: dict[str, str], tmp: Path, cert: Path,
         key: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """One tool's run on a fresh simulator and topic."""
    topic = f"bench.streampeer.{tool}.{uuid.uuid4().hex[:8]}"
    _topic(topic, opts["bootstrap"], create=True)
    count = TopicCount(topic, opts["bootstrap"])
    try:
        with _simulator(env, tmp, cert, key, opts["symbols"]) as url:
            proc = start(url, topic)
            try:
                return _measure(proc, count, opts["warmup"], opts["seconds"])
            finally:
                _stop(proc)
    finally:
        count.close()
        _topic(topic, opts["bootstrap"], create=False)


def run(runs: int = 3, seconds: float = 20.0, warmup: float = 5.0, symbols: str = SYMBOLS,
        bootstrap: str = "localhost:9092", registry: str = "http://localhost:8081") -> dict[str, Any]:
    """Median trades/s delivered to Kafka and peak RSS of `k2 stream` and cryptofeed over `runs` runs each."""
    python = ensure_cryptofeed()
    opts = {"seconds": seconds, "warmup": warmup, "symbols": symbols, "bootstrap": bootstrap}
    per_run: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    with tempfile.TemporaryDirectory(prefix="k2-streampeer-") as name:
        tmp = Path(name)
        cert, key = _self_signed(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
        env.update(K2_HOME=str(tmp / "home"), K2_DLQ_DIR=str(tmp / "dlq"), K2_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                   K2_SCHEMA_REGISTRY_URL=registry, K2_BACKFILL="false")
        starts: dict[str, Callable[[str, str], subprocess.Popen]] = {
            "k2": lambda url, topic: _start_k2(url, topic, env, cert, symbols),
            "cryptofeed": lambda url, topic: _start_cryptofeed(python, url, topic, bootstrap, cert, symbols, env),
        }
        for i in range(runs):
            for tool in TOOLS if i % 2 == 0 else tuple(reversed(TOOLS)):
                per_run[tool].append(_one(tool, starts[tool], env, tmp, cert, key, opts))
                print(f"  run {i + 1} {tool}: {per_run[tool][-1]}", file=sys.stderr, flush=True)
    out: dict[str, Any] = {"runs": runs, "seconds": seconds, "warmup": warmup, "symbols": symbols,
                           "cpus": psutil.cpu_count(), "per_run": per_run}
    for tool in TOOLS:
        out[tool] = {"trades_per_s": statistics.median(r["trades_per_s"] for r in per_run[tool]),
                     "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in per_run[tool])}
    cf = out["cryptofeed"]["trades_per_s"]
    out["k2_over_cryptofeed"] = round(out["k2"]["trades_per_s"] / cf, 2) if cf else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--symbols", default=SYMBOLS)
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--registry", default="http://localhost:8081")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    result = run(args.runs, args.seconds, args.warmup, args.symbols, args.bootstrap, args.registry)
    for tool in TOOLS:
        print(f"{tool:>10}: {result[tool]['trades_per_s']:>10,.0f} trades/s to Kafka, "
              f"peak RSS {result[tool]['peak_rss_mib']:.0f} MiB")
    print(f"k2 / cryptofeed: {result['k2_over_cryptofeed']}x (target >= 1.5x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

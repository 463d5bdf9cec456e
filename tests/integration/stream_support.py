"""Helpers for the `k2 stream` integration tests: run the simulator and the stream as real processes,
read a topic back through the real broker and registry, make a self-signed certificate."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
BOOTSTRAP = "localhost:9092"
REGISTRY = "http://localhost:8081"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def simulator(exchange: str, args: list[str], env: dict[str, str], tmp: Path) -> Iterator[str]:
    """Run `k2 simulate EXCHANGE ARGS` and yield its URL; stop it with SIGTERM afterwards."""
    url_file = tmp / f"sim-{time.monotonic_ns()}.url"
    log = open(tmp / f"sim-{exchange}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "k2cli", "simulate", exchange, "--port", "0",
                             "--url-file", str(url_file), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not url_file.exists() or not url_file.read_text().strip():
            if proc.poll() is not None:
                log.flush()
                raise AssertionError(f"k2 simulate exited {proc.returncode}: {Path(log.name).read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("k2 simulate did not start within 20s")
            time.sleep(0.05)
        yield url_file.read_text().strip()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


def stream_cmd(exchange: str, args: list[str]) -> list[str]:
    """The command line of `k2 stream EXCHANGE ARGS --format json --metrics-port 0` (unless given)."""
    extra = [] if "--metrics-port" in args else ["--metrics-port", "0"]
    return [sys.executable, "-m", "k2cli", "stream", exchange, *args, *extra, "--format", "json"]


def run_stream(exchange: str, args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, dict, str]:
    """Run a bounded stream to the end: (exit code, JSON summary or {}, stderr)."""
    proc = subprocess.run(stream_cmd(exchange, args), env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, parse_summary(proc.stdout), proc.stderr


def parse_summary(stdout: str) -> dict:
    """The JSON summary printed by `k2 stream --format json` (empty dict if none)."""
    text = stdout.strip()
    if not text:
        return {}
    try:
        return json.loads(text[text.index("{"):])
    except ValueError:
        return {}


def stream_env(base: dict[str, str], **settings: Any) -> dict[str, str]:
    """A k2 environment plus K2_* settings."""
    env = dict(base)
    for key, value in settings.items():
        env[f"K2_{key.upper()}"] = str(value)
    return env


def create_topic(topic: str, partitions: int = 3, bootstrap: str = BOOTSTRAP) -> None:
    """Create a test topic (idempotent)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
    with contextlib.suppress(Exception):
        future.result(30)


def read_topic(topic: str, bootstrap: str = BOOTSTRAP, timeout: float = 60) -> list[tuple[str, dict]]:
    """Every record of a topic (from the start to the current end), decoded through the registry."""
    from confluent_kafka import Consumer, TopicPartition

    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import AvroDeserializer

    decoder = AvroDeserializer(RegistryClient(REGISTRY))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{os.getpid()}-{time.monotonic_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        positions = {p: 0 for p in partitions}
        out: list[tuple[str, dict]] = []
        deadline = time.monotonic() + timeout
        while any(positions[p] < ends[p] for p in partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic}: only reached {positions} of {ends}")
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error():
                    continue
                positions[msg.partition()] = msg.offset() + 1
                out.append((msg.key().decode(), decoder.decode(msg.value())))
        return out
    finally:
        consumer.close()


def micros(value: Any) -> int:
    """µs since the epoch of a decoded timestamp-micros value."""
    return (value - EPOCH) // dt.timedelta(microseconds=1) if isinstance(value, dt.datetime) else int(value)


def scrape(port: int) -> str:
    """The text of a /metrics endpoint."""
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def metric_value(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample (`name{labels}`) in Prometheus text, or None."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost: (cert.pem, key.pem)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


def read_record_file(path: Path) -> list[dict]:
    """The trades a simulator wrote with --record."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def records_after(recs: list[tuple[str, dict]], seconds_after_first: float) -> int:
    """How many records carry an exchange time later than the first record + seconds."""
    times = sorted(micros(r["timestamp"]) for _, r in recs)
    return sum(1 for t in times if t > times[0] + seconds_after_first * 1_000_000)


def strip_unfixed(rec: dict, started_us: int) -> dict:
    """Check and strip the fields a tape does not fix (message id, ingestion time); the time as µs."""
    assert uuid.UUID(rec.pop("message_id")).version == 4
    ingested = micros(rec.pop("ingestion_timestamp"))
    assert started_us <= ingested <= int(time.time() * 1e6)
    rec["timestamp"] = micros(rec["timestamp"])
    return rec


def stream_tape(exchange: str, tape_lines: list[str], symbols: str, tmp: Path, env: dict[str, str], unique: str,
                n: int, path: str = "") -> tuple[int, list[tuple[str, dict]]]:
    """Stream n trades of a simulator playing `tape_lines` into a fresh topic: (start µs, the records read back)."""
    tape = tmp / "tape.txt"
    tape.write_text("\n".join(tape_lines) + "\n")
    topic = f"test.stream.records.{exchange}.{unique}"
    create_topic(topic, partitions=2)
    started = int(time.time() * 1e6)
    with simulator(exchange, ["--tape", str(tape), "--rate", "50", "--symbols", symbols], env, tmp) as url:
        code, summary, err = run_stream(exchange, ["--url", url + path, "--symbols", symbols, "--topic", topic,
                                                   "--max-messages", str(n)], env, timeout=90)
    assert code == 0, err
    assert summary["status"] == "completed" and summary["produced"] == n and summary["undelivered"] == 0
    got = read_topic(topic)
    assert len(got) == n
    return started, got


def tape_by_symbol(path: Path) -> dict[str, list[dict]]:
    """A simulator's --record file per stored symbol (BTC/USD and BTC-USD as BTCUSD)."""
    tape: dict[str, list[dict]] = defaultdict(list)
    for t in read_record_file(path):
        tape[t["symbol"].replace("/", "").replace("-", "")].append(t)
    return tape


def assert_sequential_prefix(recs: list[tuple[str, dict]], tape: dict[str, list[dict]]) -> list[tuple[dict, dict]]:
    """Kafka holds, per symbol, exactly the first N trades of the tape, none twice; price, quantity and side
    compared. Returns the (record, tape trade) pairs for the caller's own checks."""
    by_symbol = defaultdict(list)
    for key, rec in recs:
        assert key == rec["symbol"]
        by_symbol[rec["symbol"]].append(rec)
    assert set(by_symbol) == set(tape)
    pairs = []
    for symbol, got in by_symbol.items():
        seqs = [r["source_sequence"] for r in got]
        assert len(seqs) == len(set(seqs)), f"{symbol}: {len(seqs) - len(set(seqs))} duplicated trades"
        expected = tape[symbol][:len(got)]
        missing = sorted({t["seq"] for t in expected} - set(seqs))
        assert not missing, f"{symbol}: {len(missing)} trades lost, first {missing[:5]}"
        by_seq = {r["source_sequence"]: r for r in got}
        for t in expected:
            r = by_seq[t["seq"]]
            assert r["price"] == Decimal(t["price"]) and r["quantity"] == Decimal(t["qty"])
            assert r["side"] == t["side"].upper()
            pairs.append((r, t))
    return pairs


def stream_until_pong_timeout(exchange: str, args: list[str], env: dict[str, str], port: int
                              ) -> tuple[int, dict, str, str]:
    """Run `k2 stream EXCHANGE ARGS` (with --metrics-port port) to its end, scraping its metrics until the first
    pong-timeout reconnect is counted: (exit code, JSON summary, stderr, the last metrics text)."""
    proc = subprocess.Popen(stream_cmd(exchange, [*args, "--metrics-port", str(port)]), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            metrics = scrape(port)
        except Exception:
            continue
        if (metric_value(metrics, f"{exchange}_reconnects_total", 'reason="pong_timeout"') or 0) >= 1:
            break
    out, err = proc.communicate(timeout=60)
    return proc.returncode, parse_summary(out), err, metrics


def assert_stream_dlq(directory: Path, errors: dict[str, int], dlq_entries: int, exchange: str) -> list[dict]:
    """The stream's dead-letter files in `directory` hold one entry per frame error, each complete; the entries."""
    files = sorted(directory.glob("dlq-stream-*.jsonl"))
    assert files, "no dead-letter file written"
    entries = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(entries) == dlq_entries == sum(errors.values())
    for entry in entries:
        assert entry["origin"] == "stream" and entry["error_type"] in errors and entry["error"]
        assert entry["raw_frame"] and entry["source"]["exchange"] == exchange
        assert dt.datetime.fromisoformat(entry["timestamp"]).utcoffset() == dt.timedelta(0)
    return entries


def simulated_run(exchange: str, symbols: str, sim_args: list[str], stream_args: list[str], topic: str,
                  env: dict[str, str], tmp: Path, path: str = "") -> tuple[dict, str]:
    """Create `topic`, stream SYMBOLS from a simulator run with SIM_ARGS into it (STREAM_ARGS bound the run) and
    check the stream ended with exit 0: (JSON summary, stderr)."""
    create_topic(topic)
    with simulator(exchange, [*sim_args, "--symbols", symbols], env, tmp) as url:
        code, summary, err = run_stream(exchange, ["--url", url + path, "--symbols", symbols, "--topic", topic,
                                                   *stream_args], env)
    assert code == 0, err
    return summary, err


def assert_garbage_kept(summary: dict, topic: str, tmp: Path, exchange: str, zero_price: str, n: int = 400
                        ) -> dict[str, int]:
    """A --garbage-every run bounded by --max-messages n: every kind of bad frame counted (8 or more each) and
    dead-lettered (the zero-price frame, holding `zero_price`, as not positive), no reconnect, and the n trades in
    the topic with consecutive ids (nothing lost around bad frames). Returns the frame error counts."""
    errors = summary["frame_errors"]
    assert set(errors) == {"invalid_json", "missing_field", "unknown_event", "invalid_value"}, errors
    assert all(count >= 8 for count in errors.values()) and summary["produced"] == n and summary["reconnects"] == {}
    entries = assert_stream_dlq(tmp / "dlq", errors, summary["dlq_entries"], exchange)
    zero = [e for e in entries if e["error_type"] == "invalid_value"]
    assert zero_price in zero[0]["raw_frame"] and "not positive" in zero[0]["error"]
    seqs = sorted(r["source_sequence"] for _, r in read_topic(topic))
    assert len(seqs) == n and seqs == list(range(seqs[0], seqs[0] + n))
    return errors

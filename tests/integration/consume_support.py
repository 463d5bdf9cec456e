"""Helpers for the `k2 consume` tests: topics, framed trades produced directly, the table and the DLQ read back."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro

from k2cli import trade
from k2cli.kafka.serde import frame

BOOTSTRAP = "localhost:9092"
REGISTRY = "http://localhost:8081"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs


def create_topic(name: str, partitions: int = 4) -> None:
    """Create a topic and wait until the broker has it."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(name, timeout=5)
        if name in md.topics and md.topics[name].error is None and len(md.topics[name].partitions) == partitions:
            return
        time.sleep(0.2)
    raise AssertionError(f"topic {name} did not appear")


def delete_topic(name: str) -> None:
    """Best-effort topic deletion."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})  # kept alive until the deletion completes
    with contextlib.suppress(Exception):
        admin.delete_topics([name], operation_timeout=30)[name].result(60)


@contextlib.contextmanager
def scratch_topic(prefix: str, unique: str, partitions: int = 4) -> Iterator[str]:
    """A topic of the test's own (`prefix.unique`), deleted afterwards; the broker and registry must be up."""
    from tests.conftest import require

    require("kafka", "schema-registry")
    name = f"{prefix}.{unique}"
    create_topic(name, partitions=partitions)
    try:
        yield name
    finally:
        delete_topic(name)


def make_trade(i: int, symbol: str = "BTCUSDT", exchange: str = "BINANCE", seq: int | None = None,
               price: str | None = None) -> dict[str, Any]:
    """A deterministic valid v2 trade number i (price and quantity derived from i, exact)."""
    return trade.new_trade(
        message_id=f"00000000-0000-4000-8000-{i:012d}", trade_id=f"{exchange}-{i}", symbol=symbol,
        exchange=exchange, timestamp_us=T0 + i * 1000, price=price or f"{40000 + i % 1000}.{i % 100000000:08d}",
        quantity=f"0.{(i % 99999999) + 1:08d}", currency="USDT", side="BUY" if i % 2 else "SELL",
        ingestion_timestamp_us=T0 + i * 1000 + 7, source_sequence=seq if seq is not None else None,
        vendor_data={"n": str(i)}, trade_conditions=["T"] if i % 5 == 0 else [])


class Producer:
    """Produces framed v2 trades (registered under <topic>-value) and raw poison bytes."""

    def __init__(self, topic: str) -> None:
        from confluent_kafka import Producer as KProducer

        from k2cli.kafka.registry import RegistryClient
        from k2cli.kafka.serde import SerializerCache

        self.topic = topic
        self.registry = RegistryClient(REGISTRY)
        self.serializer = SerializerCache(self.registry).get(f"{topic}-value")
        self._parsed = fastavro.parse_schema(trade.avro_schema())
        self._producer = KProducer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "acks": "all",
                                    "linger.ms": 20, "batch.num.messages": 10000,
                                    "queue.buffering.max.messages": 1_000_000})
        self.sent: list[tuple[int, bytes]] = []  # (partition, value)

    def encode(self, record: dict[str, Any]) -> bytes:
        """The framed bytes of a record."""
        return self.serializer.serialize(record)

    def send(self, value: bytes | None, key: bytes | None = b"BTCUSDT", partition: int | None = None) -> None:
        """Produce one value (optionally to a fixed partition)."""
        kwargs: dict[str, Any] = {"key": key, "value": value}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(self.topic, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def send_trades(self, records: list[dict[str, Any]], partition_of=None) -> None:
        """Produce many records (partition by partition_of(i) when given, else by key)."""
        for i, rec in enumerate(records):
            self.send(self.encode(rec), key=rec["symbol"].encode(),
                      partition=partition_of(i) if partition_of else None)

    def flush(self) -> None:
        """Wait until everything is acknowledged."""
        assert self._producer.flush(60) == 0


def scale10_value(registry_subject: str, record: dict[str, Any], price_unscaled_10: int) -> bytes:
    """A value framed with a writer schema whose decimals have scale 10 (registered under its own subject)."""
    from k2cli.kafka.registry import RegistryClient

    schema = trade.avro_schema()
    for f in schema["fields"]:
        if f["name"] in ("price", "quantity"):
            f["type"] = {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 10}
    schema_id = RegistryClient(REGISTRY).register(registry_subject, schema)
    raw = dict(record)
    raw["price"] = price_unscaled_10.to_bytes(16, "big", signed=True)
    raw["quantity"] = (trade.unscaled(record["quantity"]) * 100).to_bytes(16, "big", signed=True)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(_strip(schema)), raw)
    return frame(schema_id, buf.getvalue())


def _strip(schema: Any) -> Any:
    from k2cli.kafka.serde import strip_logical_types

    return strip_logical_types(schema)


def raw_value(record: dict[str, Any], schema_id: int, **overrides: Any) -> bytes:
    """A v2 value framed by hand, with fields overridden at the wire level (unscaled decimals as ints)."""
    raw = dict(record)
    for name in trade.DECIMAL_FIELDS:
        u = overrides.pop(name, trade.unscaled(record[name]))
        raw[name] = int(u).to_bytes(16, "big", signed=True)
    raw.update(overrides)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(_strip(trade.avro_schema())), raw)
    return frame(schema_id, buf.getvalue())


# ------------------------------------------------------------------ reading results


def table_rows(env: dict[str, str], table: str = "market_data.trades_v2", missing_ok: bool = False,
               ) -> list[dict[str, Any]]:
    """Every row of the table (catalog from the env), as Python values ([] if missing and missing_ok)."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        tbl = load_table(env, table)
    except NoSuchTableError:
        if missing_ok:
            return []
        raise
    return tbl.scan().to_arrow().to_pylist()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll until condition() is true, or fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def load_table(env: dict[str, str], table: str = "market_data.trades_v2") -> Any:
    """The pyiceberg table named in the env's catalog."""
    from k2cli.lake.catalog import open_catalog
    from k2cli.settings import Settings

    s = Settings(data_dir=Path(env["K2_DATA_DIR"]), iceberg_catalog_uri=env.get("K2_ICEBERG_CATALOG_URI", ""),
                 iceberg_warehouse=env.get("K2_ICEBERG_WAREHOUSE", ""), s3_endpoint=env.get("K2_S3_ENDPOINT", ""),
                 s3_access_key=env.get("K2_S3_ACCESS_KEY", ""), s3_secret_key=env.get("K2_S3_SECRET_KEY", ""))
    return open_catalog(s).load_table(table)


def dlq_entries(env: dict[str, str]) -> list[Any]:
    """Every DLQ entry in the env's DLQ dir."""
    from k2cli.reliability.dlq import iter_entries

    return list(iter_entries(Path(env["K2_DLQ_DIR"])))


def run_consume(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    """Run `k2 consume ... --format json --metrics-port 0`; returns (exit code, stats JSON or {}, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "k2cli", "consume", *args, "--format", "json",
                           "--metrics-port", "0"], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=str(Path(__file__).resolve().parents[2]))
    try:
        stats = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        stats = {}
    return proc.returncode, stats, proc.stderr


def start_consume(env: dict[str, str], *args: str, metrics_port: int = 0) -> subprocess.Popen:
    """Start `k2 consume` in the background (stdout: JSON stats at the end)."""
    return subprocess.Popen([sys.executable, "-m", "k2cli", "consume", *args, "--format", "json",
                             "--metrics-port", str(metrics_port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[2]))


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, dict[str, Any], str]:
    """Signal a background consumer and collect its exit code, stats and stderr."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=timeout)
    try:
        stats = json.loads(out) if out.strip() else {}
    except ValueError:
        stats = {}
    return proc.returncode, stats, err


def decimal_of(value: Any) -> Decimal:
    """A Decimal from a table value."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


class TcpRelay:
    """Forwards a local port to a real service until closed; then it refuses and drops every connection (an
    outage that begins while a client is running)."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._conns: list[Any] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._server.accept()
                if self._closed:
                    client.close()
                    return
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: Any, b: Any) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        """Stop forwarding: the port refuses, open connections are cut."""
        import socket

        self._closed = True
        with contextlib.suppress(OSError):  # wakes the accept() blocked in the relay's thread (Linux)
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()

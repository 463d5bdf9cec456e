"""Drive the real pipeline for a check: a `k2 simulate` exchange, `k2 stream` into a scratch topic, read it back.

Everything a check creates (simulator processes, scratch topics and their subjects) is removed when the
checklist ends (Context.on_close).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2cli.checks.context import Context
from k2cli.checks.probes import kafka
from k2cli.checks.probes.proc import Completed, Spawned, StepError, spawn_k2, wait_for
from k2cli.proc import free_port
from k2cli.settings import Settings
from k2cli.soak.scrape import Metrics, ScrapeError, fetch

# `k2 simulate` flags for the simulator's settings and faults (k2cli.simulator.config.SimulatorConfig).
SIM_FLAGS = {
    "rate": "--rate", "symbols": "--symbols", "tls_cert": "--tls-cert", "tls_key": "--tls-key",
    "ping_interval": "--ping-interval", "drop_every": "--drop-every", "no_pong": "--no-pong",
    "stall_after": "--stall-after", "garbage_every": "--garbage-every", "skip_ids_every": "--skip-ids-every",
    "shutdown_every": "--shutdown-every",
}


def scratch_name(ctx: Context, purpose: str) -> str:
    """A unique name for a scratch topic, group or namespace of this run."""
    return f"k2-validate.{ctx.checklist or 'check'}.{purpose}.{uuid.uuid4().hex[:8]}"


def delete_subject(ctx: Context, subject: str) -> None:
    """Remove a scratch subject from the registry (soft, then permanent); best effort."""
    delete_subject_at(ctx.settings, subject)


def delete_subject_at(settings: Settings, subject: str) -> None:
    """Remove a subject from the registry the settings name (soft, then permanent); best effort."""
    from k2cli.kafka.registry import RegistryClient, RegistryError, RegistryRefused, RegistryUnavailable

    try:
        client = RegistryClient.from_settings(settings)
    except RegistryRefused:
        return  # an unreadable CA bundle: the checklist has reported the registry already
    try:
        for permanent in (False, True):
            try:
                client.delete_subject(subject, permanent=permanent)
            except RegistryRefused:
                return
            except RegistryError:
                continue  # e.g. already soft-deleted: the permanent delete still applies
            except RegistryUnavailable as exc:
                if exc.status == 0:
                    return  # nothing answers: clean-up must not hold the checklist up
    finally:
        client.close()


def scratch_topic(ctx: Context, purpose: str, partitions: int = 1) -> str:
    """Create a scratch topic; it and its value subject are deleted when the checklist ends."""
    topic = scratch_name(ctx, purpose)
    kafka.create_topic(ctx.settings, topic, partitions)
    ctx.on_close(kafka.delete_topic, ctx.settings, topic)
    ctx.on_close(delete_subject, ctx, f"{topic}-value")
    return topic


@dataclass
class Simulator:
    """A running `k2 simulate` server."""

    url: str
    process: Spawned
    port: int


def start_simulator(ctx: Context, exchange: str, **settings: Any) -> Simulator:
    """Start `k2 simulate EXCHANGE` on a free port with the given settings/faults; stopped when the checklist ends."""
    sim = launch_simulator(ctx.workdir, exchange, **settings)
    ctx.on_close(sim.process.stop)
    return sim


def launch_simulator(workdir: Path, exchange: str, **settings: Any) -> Simulator:
    """Start `k2 simulate EXCHANGE` on a free port and wait for its URL (the caller stops it; StepError stops it)."""
    url_file = workdir / f"sim-{uuid.uuid4().hex[:8]}.url"
    args = ["simulate", exchange, "--host", "127.0.0.1", "--port", "0", "--url-file", str(url_file)]
    for name, value in settings.items():
        if value is None or value is False:
            continue
        flag = SIM_FLAGS[name]
        if value is True:
            args.append(flag)
        else:
            args += [flag, ",".join(value) if isinstance(value, list | tuple) else str(value)]
    sim = spawn_k2(args, str(workdir))
    try:
        wait_for(lambda: not sim.alive() or (url_file.is_file() and url_file.read_text().strip()), timeout=30)
        if not sim.alive():
            done = sim.finish(5)
            raise StepError(f"`{sim.command}` exited {done.returncode}: {done.stderr.strip()[-300:]}")
        if not url_file.is_file():
            raise StepError(f"`{sim.command}` did not report its URL within 30 s")
    except BaseException:
        sim.stop()
        raise
    url = url_file.read_text().strip()
    return Simulator(url, sim, int(url.rsplit(":", 1)[1].split("/")[0]))


def scrape(port: int, timeout: float = 2.0) -> Metrics:
    """A local process's /metrics (empty when it does not answer)."""
    try:
        return fetch(f"http://127.0.0.1:{port}/metrics", timeout=timeout)
    except ScrapeError:
        return Metrics()


@dataclass
class StreamRun:
    """A finished `k2 stream` run into a scratch topic."""

    topic: str
    started_wall: float  # epoch seconds when the process was started
    completed: Completed
    metrics_port: int
    scrapes: list[tuple[float, Metrics]] = field(default_factory=list)

    @property
    def last_scrape(self) -> Metrics:
        """The last non-empty /metrics scrape taken while it ran (empty when none answered)."""
        for _, metrics in reversed(self.scrapes):
            if metrics.samples:
                return metrics
        return Metrics()


def stream_run(ctx: Context, exchange: str, url: str, *, duration: float, max_messages: int | None = None,
               topic: str | None = None, extra: Sequence[str] = (), env: dict[str, str] | None = None,
               scrape_every: float = 0.5, on_scrape: Callable[[Metrics], None] | None = None) -> StreamRun:
    """Run `k2 stream` into a (scratch) topic with its metrics on a free port, scraping them as it runs."""
    topic = topic or scratch_topic(ctx, f"{exchange}-stream")
    port = free_port()
    args = ["stream", exchange, "--url", url, "--topic", topic, "--duration", f"{duration:g}",
            "--metrics-port", str(port), *extra]
    if max_messages is not None:
        args += ["--max-messages", str(max_messages)]
    started_wall = time.time()
    proc = spawn_k2(args, str(ctx.workdir), env=env)
    ctx.on_close(proc.stop)
    scrapes = []
    deadline = time.monotonic() + duration + 60
    while proc.alive() and time.monotonic() < deadline:
        metrics = scrape(port, timeout=1.0)
        scrapes.append((time.time(), metrics))
        if on_scrape is not None and metrics.samples:
            on_scrape(metrics)
        time.sleep(scrape_every)
    done = proc.finish(timeout=max(1.0, deadline - time.monotonic()))
    return StreamRun(topic, started_wall, done, port, scrapes)


def read_records(ctx: Context, topic: str, timeout: float = 30.0) -> tuple[list[dict], list[str], list[Any]]:
    """Every record of a topic decoded with the registry: (records, decode errors, raw messages)."""
    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import AvroDeserializer, DecodeError

    marks = kafka.watermarks(ctx.settings, topic)
    messages = kafka.read_range(ctx.settings, topic, {p: low for p, (low, _) in marks.items()},
                                {p: high for p, (_, high) in marks.items()}, timeout=timeout)
    registry = RegistryClient.from_settings(ctx.settings)
    decoder = AvroDeserializer(registry)
    records, errors = [], []
    try:
        for msg in messages:
            try:
                records.append(decoder.decode(msg.value()))
            except DecodeError as exc:
                errors.append(f"partition {msg.partition()} offset {msg.offset()}: {exc.error_type}: {exc}")
    finally:
        registry.close()
    return records, errors, messages



@dataclass(frozen=True)
class ScratchLake:
    """An Iceberg table, consumer group and DLQ directory of one check, and the env that points k2 at them."""

    table: str
    group: str
    dlq_dir: str
    env: dict[str, str]


def _drop_table(ctx: Context, name: str) -> None:
    import contextlib

    from k2cli.lake.catalog import open_catalog

    with contextlib.suppress(Exception):  # clean-up is best effort
        catalog = open_catalog(ctx.settings)
        catalog.purge_table(name)
        catalog.drop_namespace(name.rsplit(".", 1)[0])


def scratch_lake(ctx: Context, purpose: str) -> ScratchLake:
    """A scratch table (dropped at the end), consumer group and DLQ directory for a consumer run of a check."""
    suffix = uuid.uuid4().hex[:8]
    table = f"k2_validate_{purpose.replace('-', '_')}_{suffix}.trades"
    group = f"k2-validate-{purpose}-{suffix}"
    dlq_dir = str(ctx.workdir / f"dlq-{purpose}-{suffix}")
    ctx.on_close(_drop_table, ctx, table)
    return ScratchLake(table, group, dlq_dir, {"K2_TABLE": table, "K2_CONSUMER_GROUP": group, "K2_DLQ_DIR": dlq_dir,
                                               "K2_CONSUMER_METRICS_PORT": "0"})


def make_trades(symbol: str, sequences: Sequence[int], exchange: str = "") -> list[dict]:
    """v2 trades of one symbol with the given source sequences (one ms apart, ending now); exchange: a code."""
    from k2cli.exchanges import registry
    from k2cli.trade import new_trade

    exchange = exchange or registry.default().code
    now = int(time.time() * 1_000_000)
    quote = "USDT" if symbol.endswith("USDT") else symbol[-3:]
    return [new_trade(trade_id=f"{exchange}-{seq}", symbol=symbol, exchange=exchange,
                      timestamp_us=now - (len(sequences) - i) * 1000, price="65000.12", quantity="0.001",
                      currency=quote, side="BUY" if seq % 2 else "SELL", ingestion_timestamp_us=now,
                      source_sequence=seq, vendor_data={"base_asset": symbol[: -len(quote)], "quote_asset": quote})
            for i, seq in enumerate(sequences)]


def produce_trades(ctx: Context, topic: str, records: Sequence[dict]) -> list[tuple[int, int]]:
    """Serialize v2 records with the real registry (subject <topic>-value) and produce them keyed by symbol."""
    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import AvroSerializer
    from k2cli.trade import avro_schema

    registry = RegistryClient.from_settings(ctx.settings)
    try:
        serializer = AvroSerializer(registry, f"{topic}-value", avro_schema())
        values = [(r["symbol"].encode(), serializer.serialize(r)) for r in records]
    finally:
        registry.close()
    return kafka.produce(ctx.settings, topic, values)

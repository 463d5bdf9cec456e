"""Helpers of the fault-injection suite: real k2 processes with their output in files, a stoppable TCP proxy,
independent counts (what was produced vs what Iceberg holds) and the suite's summary rows.

The k2 processes here run for tens of seconds through outages and log a warning per retry, so their stdout and
stderr go to files (a PIPE nobody drains would block them); tests/integration/consume_support.py's
start_consume/stop are for short runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.faults.oracle import Count, count_against_tape, count_ids, tape_by_symbol, tape_gaps
from tests.integration.consume_support import Producer, load_table, make_trade
from tests.integration.stream_support import metric_value, scrape

__all__ = ["Count", "count_against_tape", "count_ids", "tape_by_symbol", "tape_gaps"]  # the oracle, re-exported

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = "localhost:9092"

# ------------------------------------------------------------------ the summary table

RESULTS: list[dict[str, Any]] = []  # one row per scenario, filled by `record`; printed and saved by conftest.py


def record(nodeid: str, scenario: str, fault: str, count: Count, dlq: int, recovery_s: float | None,
           recovery_means: str, notes: str = "", **extra: Any) -> dict[str, Any]:
    """Add a scenario's row to the summary (before its assertions, so a failing scenario shows too)."""
    row = {"nodeid": nodeid, "scenario": scenario, "fault": fault, "produced": count.produced,
           "in_iceberg": count.rows, "lost": count.lost, "duplicates": count.duplicates,
           "unexpected": count.unexpected, "dlq_entries": dlq,
           "recovery_s": round(recovery_s, 1) if recovery_s is not None else None,
           "recovery_means": recovery_means, "notes": notes, "outcome": "running", **extra}
    RESULTS.append(row)
    return row


# ------------------------------------------------------------------ processes


class K2Process:
    """A `python -m k2cli ...` subprocess whose stdout and stderr go to files."""

    def __init__(self, args: list[str], env: dict[str, str], logdir: Path, name: str) -> None:
        logdir.mkdir(parents=True, exist_ok=True)
        stamp = time.monotonic_ns()
        self.out_path = logdir / f"{name}-{stamp}.out"
        self.err_path = logdir / f"{name}-{stamp}.err"
        self.args = args
        self.started = time.monotonic()
        self.stopped_us = 0  # wall-clock µs of the SIGTERM sent by stop()
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "k2cli", *args], env=env, stdout=out, stderr=err,
                                         cwd=str(ROOT))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> int:
        """Send SIGTERM without waiting; the wall-clock time (µs, the tape's clock) it was sent."""
        sent = now_us()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return sent

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the exit code (SIGKILL after the timeout). `stopped_us` is when SIGTERM went."""
        self.stopped_us = self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"k2 {' '.join(self.args[:2])} did not stop within {timeout}s; "
                                 f"stderr: {self.stderr()[-2000:]}") from None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"k2 {' '.join(self.args[:2])} still running after {timeout}s; "
                                 f"stderr: {self.stderr()[-2000:]}") from None

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def summary(self) -> dict[str, Any]:
        """The JSON statistics/summary printed at exit ({} if none)."""
        text = self.stdout().strip()
        if "{" not in text:
            return {}
        try:
            return json.loads(text[text.index("{"):])
        except ValueError:
            return {}


def consume(env: dict[str, str], logdir: Path, *args: str, metrics_port: int = 0) -> K2Process:
    """Start `k2 consume ARGS --format json`."""
    return K2Process(["consume", *args, "--format", "json", "--metrics-port", str(metrics_port)], env, logdir,
                     "consume")


def stream(exchange: str, env: dict[str, str], logdir: Path, *args: str, metrics_port: int = 0) -> K2Process:
    """Start `k2 stream EXCHANGE ARGS --format json`."""
    return K2Process(["stream", exchange, *args, "--metrics-port", str(metrics_port), "--format", "json"], env,
                     logdir, f"stream-{exchange}")


def with_env(base: dict[str, str], **settings: Any) -> dict[str, str]:
    """A copy of an environment with K2_<NAME> settings added."""
    env = dict(base)
    env.update({f"K2_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def metric(port: int, name: str, labels: str = "") -> float | None:
    """One sample of a running process's /metrics (None when absent or the endpoint does not answer)."""
    try:
        return metric_value(scrape(port), name, labels)
    except Exception:
        return None


def written(port: int) -> float | None:
    """k2_messages_written_total of a running consumer, all topics (None if the endpoint does not answer)."""
    try:
        text = scrape(port)
    except Exception:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("k2_messages_written_total{"))


# ------------------------------------------------------------------ a stoppable TCP proxy


class TcpProxy:
    """127.0.0.1:<port> forwarding to a target; `down()` closes the port and cuts every connection (the service
    looks stopped: connections refused), `up()` listens on the same port again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tcp-proxy")
        self._thread.start()
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self.connections = 0
        self.up()

    def _call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._transports.add(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._transports.discard(writer.transport)
            return
        self._transports.add(up_writer.transport)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._transports.discard(writer.transport)
            self._transports.discard(up_writer.transport)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    def up(self) -> None:
        """Listen (again) on the proxy's port."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self._call(self._start())
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def down(self) -> None:
        """Stop listening and cut every open connection."""
        self._call(self._stop())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# ------------------------------------------------------------------ producing with a known count


class Feeder:
    """Produces `make_trade(i)` records (every `poison_every`-th followed by a poison value) at a steady rate in a
    background thread, round-robin over the partitions; remembers exactly what was acknowledged."""

    def __init__(self, topic: str, rate: float, partitions: int = 4, poison_every: int = 0, start: int = 0) -> None:
        self.topic = topic
        self.rate = rate
        self.partitions = partitions
        self.poison_every = poison_every
        self.next = start
        self.valid_ids: list[str] = []
        self.poison: list[bytes] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self._producer = Producer(topic)

    def produce(self, n: int) -> None:
        """Produce n records now (blocking) and wait for them."""
        for _ in range(n):
            self._one()
        self._producer.flush()

    def _one(self) -> None:
        i = self.next
        self.next += 1
        rec = make_trade(i, symbol=("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3])
        self._producer.send(self._producer.encode(rec), key=rec["symbol"].encode(), partition=i % self.partitions)
        self.valid_ids.append(rec["message_id"])
        if self.poison_every and i % self.poison_every == self.poison_every - 1:
            value = b"\x09poison-" + str(i).encode()
            self._producer.send(value, partition=(i // self.poison_every) % self.partitions)
            self.poison.append(value)

    def _run(self) -> None:
        try:
            t0, sent = time.monotonic(), 0
            while not self._stop.is_set():
                due = int((time.monotonic() - t0) * self.rate) - sent
                for _ in range(max(0, min(due, 2000))):
                    self._one()
                    sent += 1
                time.sleep(0.02)
            self._producer.flush()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def start(self) -> Feeder:
        self._thread = threading.Thread(target=self._run, daemon=True, name="feeder")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop producing and wait until everything sent is acknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)
        if self.error is not None:
            raise AssertionError(f"feeder failed: {self.error!r}")

    @property
    def total(self) -> int:
        """Records produced (valid + poison)."""
        return len(self.valid_ids) + len(self.poison)


# ------------------------------------------------------------------ counting


def iceberg_columns(env: dict[str, str], table: str, *columns: str) -> list[dict[str, Any]]:
    """Selected columns of every row of the table (pyiceberg scan; [] when the table does not exist)."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        tbl = load_table(env, table)
    except NoSuchTableError:
        return []
    return tbl.scan(selected_fields=columns).to_arrow().to_pylist()


def table_offsets(env: dict[str, str], table: str) -> dict[tuple[str, int], int]:
    """The Kafka offsets the table's current snapshot records (what the consumer has committed)."""
    from k2cli.lake import offsets as off

    try:
        snap = load_table(env, table).current_snapshot()
    except Exception:
        return {}
    if snap is None or snap.summary is None:
        return {}
    return dict(off.decode_offsets(snap.summary.additional_properties.get(off.OFFSETS_KEY)))


def end_offsets(topic: str, bootstrap: str = BOOTSTRAP) -> dict[tuple[str, int], int]:
    """High watermarks of every partition of a topic."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"faults-watermarks-{os.getpid()}",
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=30)
        return {(topic, p): c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in md.topics[topic].partitions}
    finally:
        c.close()


def covered(have: dict[tuple[str, int], int], want: dict[tuple[str, int], int]) -> bool:
    """Whether the table offsets reach the wanted offsets on every partition (empty partitions count)."""
    return all(want[tp] <= 0 or have.get(tp, 0) >= want[tp] for tp in want)


def wait_until(condition, timeout: float, what: str, interval: float = 0.3) -> float:
    """Poll until condition() is true; the seconds it took (AssertionError naming `what` on timeout)."""
    start = time.monotonic()
    last: BaseException | None = None
    while time.monotonic() - start < timeout:
        try:
            if condition():
                return time.monotonic() - start
        except Exception as exc:  # a service coming back may fail a probe or two
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last!r})"
                                                                                    if last else ""))


def wait_caught_up(env: dict[str, str], table: str, want: dict[tuple[str, int], int], timeout: float,
                   what: str) -> float:
    """Seconds until the table's offsets cover `want`."""
    return wait_until(lambda: covered(table_offsets(env, table), want), timeout, what, interval=0.25)


# ------------------------------------------------------------------ tapes (simulator --record)


def now_us() -> int:
    """Wall-clock time in µs, the clock of the simulator's tape (take it just before stopping a stream)."""
    return time.time_ns() // 1000


def max_ingestion_gap(rows: list[dict[str, Any]]) -> float:
    """The longest time (s) between consecutive ingestion timestamps: how long the pipeline was blind at most."""
    import datetime as dt

    def us(v: Any) -> int:
        return v // dt.timedelta(microseconds=1) if isinstance(v, dt.timedelta) else \
            int(v.timestamp() * 1_000_000) if isinstance(v, dt.datetime) else int(v)

    times = sorted(us(r["ingestion_timestamp"]) for r in rows)
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0) / 1e6


def dlq_count(env: dict[str, str], origin: str | None = None) -> int:
    """Entries in the env's DLQ directory (of one origin when given)."""
    from k2cli.reliability.dlq import iter_entries

    return sum(1 for e in iter_entries(Path(env["K2_DLQ_DIR"])) if origin is None or e.origin == origin)


def tail(text: str, n: int = 1500) -> str:
    return text[-n:]

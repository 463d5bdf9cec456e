"""Network faults through Toxiproxy between k2 and Kafka, the Schema Registry and the exchange.

Every scenario streams simulated Binance trades into a topic of its own and consumes them into a table of its own,
with one service reached through a Toxiproxy proxy that gets a toxic for FAULT seconds mid-run:

- Kafka (stream and consume both): latency 500 ms ± 200 ms each way; 4 KB/s each way (the stream produces about
  12); every connection reset (reset_peer); a blackhole (timeout toxic: the connections stay open and carry nothing)
  for LONG seconds, past the consumer's 10 s session timeout, so it loses its session and must rejoin (a static
  member can then be fenced by its own rejoin, librdkafka#3437, which it answers with a new client).
  Each must be felt (the stream's producer queue grows during it). Kafka clients learn the broker's address from
  metadata, so these run on a throwaway broker of the stack's own Kafka service with one listener per proxy,
  advertised as the proxy's address (StackConfig.kafka_proxied_listeners); the shared broker on :9092 is never
  touched.
- Schema Registry: connections reset, or blackholed; the consumer starts during the fault, so it has to fetch the
  schema through it.
- Exchange (the simulator's WebSocket and REST, one port): connections reset, or blackholed; the stream detects the
  silence (idle timeout 2 s), reconnects once the fault ends and fills the gap from REST (backfill, on by default):
  Binance has no replay, so without it the outage would be a hole.

Independent count: the simulator's --record tape against the Iceberg rows (tests/faults/oracle.py), per symbol, up to
the stream's SIGTERM. All scenarios run at the same time, against one Toxiproxy server the module owns.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.conftest import require
from tests.faults import support, toxiproxy
from tests.faults.support import (
    K2Process,
    consume,
    count_against_tape,
    dlq_count,
    end_offsets,
    iceberg_columns,
    tape_by_symbol,
    wait_caught_up,
    wait_until,
    with_env,
)
from tests.faults.toxiproxy import Stream, Toxiproxy
from tests.integration.consume_support import delete_topic
from tests.integration.stream_support import create_topic, free_port

pytestmark = pytest.mark.faults
TABLE = "market_data.trades_v2"
SYMBOLS = "BTCUSDT,ETHUSDT"
RATE = "100"  # trades per second over both symbols
FAULT = 8  # seconds each toxic stays on (registry: at least until the consumer met it)
LONG = 14  # seconds for the Kafka blackhole: past the consumer's session timeout (K2_CONSUMER_SESSION_TIMEOUT 10)
AFTER = 6  # seconds of streaming after the fault ends
BOTH: tuple[Stream, ...] = ("upstream", "downstream")
Target = Literal["kafka", "registry", "exchange"]
LABEL = 'exchange="binance"'


@dataclass
class Case:
    """One network fault: which service is proxied, the toxic, and what the run left behind."""

    name: str
    target: Target
    toxic: str
    attributes: dict[str, int]
    fault: str
    streams: tuple[Stream, ...] = BOTH
    stream_args: tuple[str, ...] = ()
    seconds: float = FAULT
    # filled in by the run
    env: dict[str, str] = field(default_factory=dict)
    bootstrap: str = support.BOOTSTRAP  # direct, for the watermarks
    client_bootstrap: str = ""  # what k2 is given (the proxy), when Kafka is the proxied service
    metrics_port: int = 0  # the consumer's
    stream_port: int = 0  # the stream's metrics
    queue_peak: float = 0.0  # most trades waiting for Kafka's acknowledgement, sampled during the fault
    healed: float = 0.0  # monotonic time the toxic was removed
    healed_seq: dict[str, int] = field(default_factory=dict)  # last trade per symbol the simulator sent by then
    recovery_s: float | None = None
    topic: str = ""
    tape: Path | None = None
    stream: K2Process | None = None
    consumer: K2Process | None = None
    until_us: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def proxy(self) -> str:
        return f"{self.target}-{self.name}"


CASES = [
    Case("latency", "kafka", "latency", {"latency": 500, "jitter": 200}, "Kafka: latency 500 ms ± 200 ms each way"),
    Case("bandwidth", "kafka", "bandwidth", {"rate": 4}, "Kafka: bandwidth 4 KB/s each way (below the stream's rate)"),
    Case("reset", "kafka", "reset_peer", {"timeout": 0}, "Kafka: every connection reset (reset_peer)"),
    Case("blackhole", "kafka", "timeout", {"timeout": 0},
         f"Kafka: blackhole {LONG} s, past the session timeout (timeout toxic, nothing passes)", seconds=LONG),
    Case("reset", "registry", "reset_peer", {"timeout": 0},
         "Schema Registry: every connection reset (consumer started during it)"),
    Case("blackhole", "registry", "timeout", {"timeout": 0},
         "Schema Registry: blackhole (consumer started during it)"),
    Case("reset", "exchange", "reset_peer", {"timeout": 0}, "exchange WebSocket+REST: every connection reset",
         stream_args=("--idle-timeout", "2")),
    Case("blackhole", "exchange", "timeout", {"timeout": 0}, "exchange WebSocket+REST: blackhole",
         stream_args=("--idle-timeout", "2")),
]


@contextlib.contextmanager
def proxied_kafka(home: Path, topics: list[str], pairs: list[tuple[int, int]]) -> Iterator[tuple[str, Any]]:
    """A throwaway single-node broker with one extra listener per (listen, advertised) pair, starting: its direct
    bootstrap, and a function that waits until it is ready and has the topics."""
    from k2cli.stack.config import StackConfig, load_stack_config
    from k2cli.stack.install import kafka_libs
    from k2cli.stack.paths import StackPaths
    from k2cli.stack.services import Kafka

    shared = StackPaths.for_home(load_stack_config().home)
    if not kafka_libs(shared).is_dir():
        pytest.fail(f"Kafka jars not found in {kafka_libs(shared)}; run scripts/install.sh first", pytrace=False)
    cfg = StackConfig(home=home, kafka_port=free_port(), kafka_controller_port=free_port(), kafka_heap="256m",
                      topics=tuple(topics), topic_partitions=2, kafka_proxied_listeners=tuple(pairs))
    kafka = Kafka(cfg, StackPaths.for_home(home, cache=shared.cache))
    kafka.paths.ensure()
    kafka.prepare()
    kafka.start()

    def ready() -> None:
        wait_until(lambda: kafka.ready().ok, 120, "the throwaway broker to start", interval=0.5)
        kafka.after_start()

    try:
        yield f"127.0.0.1:{cfg.kafka_port}", ready
    finally:
        kafka.stop()


@contextlib.contextmanager
def simulators(cases: list[Case], base: Path) -> Iterator[dict[str, str]]:
    """One `k2 simulate binance --record` per scenario, all started at once; their URLs by proxy name."""
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        for case in cases:
            work = base / case.proxy
            case.tape, url_file = work / "tape.jsonl", work / "sim.url"
            with open(work / "simulator.log", "wb") as log:
                procs[case.proxy] = (subprocess.Popen(
                    [sys.executable, "-m", "k2cli", "simulate", "binance", "--port", "0", "--url-file", str(url_file),
                     "--rate", RATE, "--symbols", SYMBOLS, "--record", str(case.tape)],
                    env=case.env, stdout=log, stderr=subprocess.STDOUT), url_file)
        wait_until(lambda: all(f.is_file() and f.read_text().strip() for _, f in procs.values()), 60,
                   "the simulators to start", interval=0.1)
        yield {name: f.read_text().strip() for name, (_, f) in procs.items()}
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _environment(case: Case, work: Path) -> None:
    case.env = with_env({k: v for k, v in os.environ.items() if not k.startswith("K2_")}, home=work / "home",
                        data_dir=work / "data", dlq_dir=work / "dlq", backoff_initial=0.1, backoff_max=1)
    case.env["PYTHONUNBUFFERED"] = "1"


def _start(case: Case, work: Path, url: str, tag: str, toxi: Toxiproxy) -> None:
    """The scenario's proxy and stream (and consumer, unless it starts during the fault)."""
    if case.client_bootstrap:
        case.env["K2_KAFKA_BOOTSTRAP_SERVERS"] = case.client_bootstrap
    if case.target == "registry":
        port = toxi.proxy(case.proxy, "127.0.0.1:8081")
        case.env["K2_SCHEMA_REGISTRY_URL"] = f"http://127.0.0.1:{port}"
    if case.target == "exchange":
        scheme, rest = url.split("://", 1)
        hostport, _, path = rest.partition("/")
        port = toxi.proxy(case.proxy, hostport)
        url = f"{scheme}://127.0.0.1:{port}/{path}"
    case.stream_port = free_port()
    case.stream = support.stream("binance", case.env, work / "logs", "--url", url, "--symbols", SYMBOLS,
                                 "--topic", case.topic, *case.stream_args, metrics_port=case.stream_port)
    if case.target != "registry":
        _start_consumer(case, work, tag)


def _start_consumer(case: Case, work: Path, tag: str) -> None:
    case.metrics_port = free_port()
    case.consumer = consume(case.env, work / "logs", "--topics", case.topic, "--group",
                            f"faults-net-{case.target}-{case.name}-{tag}", "--batch-size", "500",
                            "--flush-interval", "0.5", metrics_port=case.metrics_port)


def _produced(case: Case) -> int:
    return sum(end_offsets(case.topic, case.bootstrap).values())


def _flowing(case: Case) -> bool:
    """Whether the stream has produced, and the consumer (if started) written, 200 trades."""
    if case.consumer is None:
        return _produced(case) >= 200
    return len(iceberg_columns(case.env, TABLE, "source_sequence")) >= 200


def _registry_met(case: Case) -> bool:
    """Whether the consumer has met the registry fault (its registry retries counter)."""
    return (support.metric(case.metrics_port, "k2_consumer_errors_total", 'error_type="registry_unavailable"')
            or 0) >= 1


def _heal(case: Case, toxi: Toxiproxy, toxics: list[str]) -> None:
    """Remove the scenario's toxics; remember when, and the last trade per symbol the simulator had sent."""
    for name in toxics:
        toxi.remove_toxic(case.proxy, name)
    case.healed = time.monotonic()
    assert case.tape is not None
    case.healed_seq = {sym: trades[-1]["seq"] for sym, trades in tape_by_symbol(case.tape).items()}


def _covered(case: Case) -> bool:
    """Whether the table holds every trade the simulator sent before the fault ended."""
    assert case.tape is not None
    have: dict[str, set[int]] = {}
    for r in iceberg_columns(case.env, TABLE, "symbol", "source_sequence"):
        have.setdefault(r["symbol"], set()).add(r["source_sequence"])
    return all(t["seq"] in have.get(sym, ()) for sym, trades in tape_by_symbol(case.tape).items() for t in trades
               if t["seq"] <= case.healed_seq.get(sym, -1))


def _inject_and_recover(cases: list[Case], toxi: Toxiproxy, base: Path, tag: str) -> None:
    """Every toxic on for its seconds (a registry scenario's also until its consumer, started inside the fault,
    has met it), then off; each scenario's recovery is the time from its toxic's removal until its table holds
    every trade sent before that."""
    t0 = time.monotonic()
    wait_until(lambda: all(_flowing(c) for c in cases), 120, "trades flowing (into Iceberg where consumed)")
    print(f"\nnetwork faults: trades flowing after {time.monotonic() - t0:.0f} s")
    toxics = {c.proxy: [toxi.add_toxic(c.proxy, c.toxic, s, **c.attributes) for s in c.streams] for c in cases}
    began = time.monotonic()
    # started beside the loop: under load their start-up took seconds, and the loop that heals the other
    # scenarios' toxics after FAULT seconds waited for it (Kafka then stayed cut off past the session timeout)
    starting = [threading.Thread(target=_start_consumer, args=(c, base / c.proxy, tag), daemon=True)
                for c in cases if c.target == "registry"]
    for thread in starting:
        thread.start()
    deadline = began + LONG + 180
    while any(c.recovery_s is None for c in cases) and time.monotonic() < deadline:
        for case in cases:
            now = time.monotonic()
            if not case.healed:
                queued = support.metric(case.stream_port, "k2_stream_producer_queue_messages", LABEL) or 0
                case.queue_peak = max(case.queue_peak, queued)
                if now - began >= case.seconds and (case.target != "registry" or _registry_met(case)
                                                    or now - began > case.seconds + 60):
                    _heal(case, toxi, toxics[case.proxy])
            elif case.recovery_s is None:
                with contextlib.suppress(Exception):  # the table may not exist yet
                    if _covered(case):
                        case.recovery_s = time.monotonic() - case.healed
        time.sleep(0.2)
    for case in cases:
        if not case.healed:
            _heal(case, toxi, toxics[case.proxy])
    for thread in starting:
        thread.join(60)


def _finish(cases: list[Case]) -> None:
    """Stop the streams (the tape's cut-off), let the consumers write the whole topic, stop them."""
    time.sleep(max(0.0, AFTER - (time.monotonic() - max(c.healed for c in cases))))
    for case in cases:
        assert case.stream is not None
        case.until_us = case.stream.terminate()
    for case in cases:
        assert case.stream is not None
        case.stream.wait(120)
        case.summary = case.stream.summary()
        if case.stream.proc.returncode != 0:
            case.error = f"k2 stream exited {case.stream.proc.returncode}: {support.tail(case.stream.stderr())}"
    for case in cases:
        assert case.consumer is not None
        try:
            wait_caught_up(case.env, TABLE, end_offsets(case.topic, case.bootstrap), 150,
                           f"{case.proxy}: the consumer to write the whole topic")
        except AssertionError as exc:
            case.error = case.error or f"{exc}; consumer stderr: {support.tail(case.consumer.stderr())}"
        case.consumer.stop(60)
        case.stats = case.consumer.summary()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Iterator[dict[str, Case]]:
    """Run every scenario at once; each test then judges its own."""
    require("kafka", "schema-registry")
    started = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    base = tmp_path_factory.mktemp("network-faults")
    kafka_cases = [c for c in CASES if c.target == "kafka"]
    pairs = [(free_port(), free_port()) for _ in kafka_cases]
    for case in CASES:
        case.topic = f"test.faults.net.{case.target}.{case.name}.{tag}"
        (base / case.proxy).mkdir()
        _environment(case, base / case.proxy)
    toxi = Toxiproxy(toxiproxy.binary(), base / "toxiproxy.log")
    try:
        with contextlib.ExitStack() as stack:
            bootstrap, kafka_ready = stack.enter_context(proxied_kafka(base / "kafka", [c.topic for c in kafka_cases],
                                                                       pairs))
            for case in CASES:
                if case.target != "kafka":
                    create_topic(case.topic, partitions=2)
                    stack.callback(delete_topic, case.topic)
            urls = stack.enter_context(simulators(CASES, base))
            kafka_ready()
            for case, (listen, advertised) in zip(kafka_cases, pairs, strict=True):
                toxi.proxy(case.proxy, f"127.0.0.1:{listen}", listen_port=advertised)
                case.bootstrap, case.client_bootstrap = bootstrap, f"127.0.0.1:{advertised}"
            phases = [("broker, simulators and proxies", time.monotonic())]
            try:
                for case in CASES:
                    _start(case, base / case.proxy, urls[case.proxy], tag, toxi)
                _inject_and_recover(CASES, toxi, base, tag)
                phases.append(("faults and recoveries", time.monotonic()))
                _finish(CASES)
                phases.append(("streams stopped, topics written", time.monotonic()))
                print("\nnetwork faults: " + ", ".join(f"{name} at {t - started:.0f} s" for name, t in phases))
            finally:
                for case in CASES:
                    for proc in (case.stream, case.consumer):
                        if proc is not None and proc.alive():
                            proc.kill()
        yield {case.proxy: case for case in CASES}
    finally:
        toxi.stop()


@pytest.mark.parametrize("proxy", [c.proxy for c in CASES])
def test_network_fault_loses_and_duplicates_nothing(request, runs, proxy):
    case = runs[proxy]
    assert case.tape is not None
    rows = iceberg_columns(case.env, TABLE, "symbol", "source_sequence", "price", "quantity", "side",
                           "ingestion_timestamp")
    count = count_against_tape(tape_by_symbol(case.tape), rows, symbols=SYMBOLS.split(","), until_us=case.until_us)
    s, stats = case.summary, case.stats
    notes = ", ".join(filter(None, [
        f"producer queue peak {case.queue_peak:.0f}" if case.target == "kafka" else "",
        f"reconnects {s.get('reconnects')}" if s.get("reconnects") else "",
        f"connection failures {s.get('connection_failures')}" if s.get("connection_failures") else "",
        f"backfilled {s.get('trades_backfilled')}" if s.get("trades_backfilled") else "",
        f"stream back-pressure {s.get('backpressure_seconds', 0):.1f} s" if s.get("backpressure_seconds") else "",
        f"consumer errors {stats.get('errors_by_type')}" if stats.get("errors_by_type") else "",
        f"consumer rejoins {stats.get('kafka_rejoins')}" if stats.get("kafka_rejoins") else "",
    ]))
    support.record(request.node.nodeid, f"network {case.target} {case.name}", case.fault, count,
                   dlq_count(case.env), case.recovery_s,
                   "toxic removed -> Iceberg holds every trade sent until then", notes=notes, stream_summary=s,
                   consumer_stats=stats, detail=count.detail)
    print(f"\nnetwork {case.target} {case.name}: sent {count.produced}, in table {count.rows}, lost {count.lost}, "
          f"duplicated {count.duplicates}, unexpected {count.unexpected}")
    assert not case.error, case.error
    assert case.recovery_s is not None, "the table never held every trade sent before the fault ended"
    assert s["undelivered"] == 0 and s["produce_errors"] == {}, s
    assert stats["unwritten_records"] == 0, stats
    assert stats["messages_written"] == s["produced"] == len(rows), (stats, s)
    assert count.exact, (count, count.detail)
    assert dlq_count(case.env) == 0
    if case.target == "kafka":  # the fault was felt: acknowledgements slowed or stopped, trades waited
        assert case.queue_peak >= 50, f"producer queue peaked at {case.queue_peak:.0f} during the fault"
    if case.target == "exchange":  # the fault was felt, and the hole it left was filled from REST
        assert sum(s["reconnects"].values()) >= 1 and s["trades_backfilled"] > 0 and s["gaps_unfilled"] == 0, s
    if case.target == "registry":
        assert stats["errors_by_type"].get("registry_unavailable", 0) >= 1, stats

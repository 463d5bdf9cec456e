"""Exchange faults from the simulator: each streamed into a fresh topic, then consumed into a fresh table.

Independent count: the simulator's --record tape. Per configured symbol, Iceberg must hold exactly the tape's
trades up to the moment the test stopped the stream (SIGTERM; the last second before it may still be in flight,
2.5 s for a stall, whose hole the stop can cut before the stream sees it):
no gap, no repeat, same price/quantity/side. Every stream backfills its gaps from the simulator's REST endpoints
(--rest-url). Kraken's WS v2 sends a snapshot of the last 50 trades on every (re)subscription, so with Kraken a
dropped, stalled or unanswered connection costs nothing when the reconnect is quick (backoff 0.1 s here, 10
trades/s per symbol: a 5 s window); an outage longer than the snapshot covers (kraken-outage: 20 trades/s per
symbol, 5 s without data) and Binance's drops, stalls and pong timeouts (no replay at all) leave holes that only
the backfill fills; live trades after such a hole reach the consumer before the backfilled ones, so its sequence
tracker reports the hole (and the late ids as out of order), never more holes than the stream filled, while the
table ends complete. Binance's serverShutdown is a make-before-break rotation, garbage frames and skipped ids are
survived in place; with skipped ids the tape itself has the gaps, and the consumer must report exactly those gaps.

The scenarios run at the same time (one simulator, stream and consumer each) to keep the suite short; each test
checks its own.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.faults import support
from tests.faults.oracle import GRACE_US
from tests.faults.support import (
    K2Process,
    consume,
    count_against_tape,
    dlq_count,
    iceberg_columns,
    max_ingestion_gap,
    tape_by_symbol,
    tape_gaps,
    with_env,
)
from tests.integration.consume_support import delete_topic
from tests.integration.stream_support import create_topic, simulator
from tests.integration.tape_support import rest_url, wait_printing

pytestmark = pytest.mark.faults
DURATION = 10
TABLE = "market_data.trades_v2"
KRAKEN = ("kraken", "BTC/USD,ETH/USD", "20")
BINANCE = ("binance", "BTCUSDT,ETHUSDT", "100")


@dataclass
class Case:
    """One simulator fault."""

    name: str
    fault: str
    exchange: tuple[str, str, str]  # exchange, symbols, rate
    sim_args: list[str]
    stream_args: list[str] = field(default_factory=list)
    # Trades of the last grace_s before the stop are not required (they must match and be once when present): a
    # stall cut by the stop before its idle timeout leaves the stream nothing to see the hole by, as on a real
    # exchange, so a stall case's grace covers its idle timeout and the reconnect.
    grace_s: float = GRACE_US / 1e6
    # filled in by the run
    stream: K2Process | None = None
    consumer: K2Process | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    tape: Path | None = None
    until_us: int = 0  # when the stream was told to stop (the tape's clock)
    topic: str = ""
    error: str = ""


CASES = [
    Case("drop", "exchange drops the connection every 3 s (Kraken v2)", KRAKEN, ["--drop-every", "3"]),
    Case("stall", "exchange stalls 3 s into each connection (Kraken v2; idle timeout 1 s)", KRAKEN,
         ["--stall-after", "3"], ["--idle-timeout", "1"], grace_s=2.5),
    Case("no-pong", "exchange never answers pings (Kraken v2; ping 1 s, pong timeout 1 s)", KRAKEN, ["--no-pong"],
         ["--ping-interval", "1", "--pong-timeout", "1"]),
    Case("garbage", "a bad frame after every 25 trades (Binance)", BINANCE, ["--garbage-every", "25"]),
    Case("skip-ids", "the exchange skips a trade id every 40 trades (Binance)", BINANCE, ["--skip-ids-every", "40"]),
    Case("shutdown", "serverShutdown 3 s into each connection, closed 2 s later (Binance)", BINANCE,
         ["--shutdown-every", "3", "--shutdown-grace", "2"]),
    Case("binance-drop", "exchange drops the connection every 3 s (Binance, backfill)", BINANCE,
         ["--drop-every", "3"]),
    Case("binance-stall", "exchange stalls 3 s into each connection (Binance, backfill; idle timeout 1 s)",
         BINANCE, ["--stall-after", "3"], ["--idle-timeout", "1"], grace_s=2.5),
    Case("binance-no-pong", "exchange never answers pings (Binance, backfill; ping 1 s, pong timeout 1 s)", BINANCE,
         ["--no-pong"], ["--ping-interval", "1", "--pong-timeout", "1"]),
    # One outage (3 s to 8 s), then the stop lands in the second connection's 3 s of data (DURATION 10)
    Case("kraken-outage", "Kraken v2 stalls 3 s into each connection for 5 s, longer than its 50-trade snapshot "
         "covers (2.5 s at 20 trades/s per symbol; backfill)", ("kraken", "BTC/USD,ETH/USD", "40"),
         ["--stall-after", "3"], ["--idle-timeout", "5"], grace_s=2.5),
]
BACKFILLED = ("binance-drop", "binance-stall", "binance-no-pong", "kraken-outage")  # holes only the backfill fills


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Case]:
    """Stream every case at once, then consume every topic at once."""
    require("kafka", "schema-registry")
    tag = uuid.uuid4().hex[:8]
    base = tmp_path_factory.mktemp("exchange-faults")
    with contextlib.ExitStack() as topics:
        with contextlib.ExitStack() as simulators:
            for case in CASES:
                work = base / case.name
                work.mkdir()
                case.env = with_env({k: v for k, v in os.environ.items() if not k.startswith("K2_")},
                                    home=work / "home", data_dir=work / "data", dlq_dir=work / "dlq",
                                    backoff_initial=0.1, backoff_max=1)
                case.env["PYTHONUNBUFFERED"] = "1"
                case.topic = f"test.faults.exchange.{case.name}.{tag}"
                create_topic(case.topic, partitions=2)
                topics.callback(delete_topic, case.topic)
                exchange, symbols, rate = case.exchange
                case.tape = work / "tape.jsonl"
                url = simulators.enter_context(simulator(exchange, ["--rate", rate, "--symbols", symbols, "--record",
                                                                    str(case.tape), *case.sim_args], case.env, work))
                rest = rest_url(url)
                if exchange == "kraken":
                    url += "/v2"
                case.stream = support.stream(exchange, case.env, work / "logs", "--url", url, "--rest-url", rest,
                                             "--symbols", symbols, "--topic", case.topic, *case.stream_args)
            for case in CASES:  # every stream subscribed (the market prints from then on): starting ten takes a while
                assert case.tape is not None
                wait_printing(case.tape, timeout=120)
            time.sleep(DURATION)
            for case in CASES:  # stopped by the test, so the tape's cut-off is known: the moment of the SIGTERM
                assert case.stream is not None
                case.until_us = case.stream.terminate()
            for case in CASES:
                assert case.stream is not None
                case.stream.wait(90)
                case.summary = case.stream.summary()
        for case in CASES:
            produced = case.summary.get("produced", 0)
            if case.stream.proc.returncode != 0 or not produced:
                case.error = f"k2 stream exited {case.stream.proc.returncode}: {support.tail(case.stream.stderr())}"
                continue
            case.consumer = consume(case.env, base / case.name / "logs", "--topics", case.topic,
                                    "--group", f"faults-{case.name}-{tag}", "--max-messages", str(produced))
        for case in CASES:
            if case.consumer is not None:
                case.consumer.wait(180)
                case.stats = case.consumer.summary()
        yield {case.name: case for case in CASES}


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_exchange_fault_loses_and_duplicates_nothing(request, runs, name):
    case = runs[name]
    assert not case.error, case.error
    assert case.consumer is not None and case.tape is not None
    rows = iceberg_columns(case.env, TABLE, "symbol", "source_sequence", "price", "quantity", "side",
                           "ingestion_timestamp")
    tape = tape_by_symbol(case.tape)
    count = count_against_tape(tape, rows, symbols=case.exchange[1].split(","), until_us=case.until_us,
                               grace_us=int(case.grace_s * 1e6))
    s, stats = case.summary, case.stats
    gap = max_ingestion_gap(rows) if rows else None
    notes = ", ".join(filter(None, [
        f"reconnects {s.get('reconnects')}" if s.get("reconnects") else "",
        f"rotations {s.get('rotations')}" if s.get("rotations") else "",
        f"bad frames {sum(s.get('frame_errors', {}).values())}" if s.get("frame_errors") else "",
        f"sequence gaps reported {stats.get('sequence_gaps')}" if stats.get("sequence_gaps") else "",
        f"duplicates dropped by the stream {s.get('duplicates_dropped')}" if s.get("duplicates_dropped") else "",
        f"backfilled {s.get('trades_backfilled')} in {s.get('gaps_filled')} gaps" if s.get("trades_backfilled")
        else "",
    ]))
    support.record(request.node.nodeid, f"exchange {name}", case.fault, count, dlq_count(case.env), gap,
                   "longest time between two ingested trades", notes=notes, stream_summary=s,
                   consumer_stats=stats, detail=count.detail)

    assert case.consumer.proc.returncode == 0, support.tail(case.consumer.stderr())
    assert s["undelivered"] == 0 and s["produce_errors"] == {}, s
    assert stats["messages_written"] == s["produced"] == len(rows), (stats, s)
    assert count.exact, (count, count.detail)
    gaps = tape_gaps(tape, rows)
    if name == "skip-ids":
        assert gaps >= 5, "the tape should have skipped ids"
        assert stats["sequence_gaps"] == gaps, f"consumer reported {stats['sequence_gaps']} gaps, the tape has {gaps}"
        assert set(stats["sequence_events"]) == {"SMALL_GAP"}, stats["sequence_events"]
    elif name in BACKFILLED:  # live trades went ahead of the backfill: the consumer saw holes the backfill closed
        assert gaps == 0 and stats["sequence_gaps"] <= s["gaps_filled"], (stats["sequence_events"], s)
        assert set(stats["sequence_events"]) <= {"SMALL_GAP", "LARGE_GAP", "OUT_OF_ORDER"}, stats["sequence_events"]
    else:
        assert gaps == 0 and stats["sequence_gaps"] == 0, stats["sequence_events"]
    if name in ("drop", "binance-drop"):
        assert s["reconnects"].get("connection_closed", 0) >= 2, s
    elif name in ("stall", "binance-stall"):
        assert s["reconnects"].get("idle_timeout", 0) >= 2, s
    elif name in ("no-pong", "binance-no-pong"):
        assert s["pong_timeouts"] >= 2 and s["reconnects"].get("pong_timeout", 0) >= 2, s
    elif name == "kraken-outage":
        assert s["reconnects"].get("idle_timeout", 0) >= 1, s
    elif name == "garbage":
        bad = sum(s["frame_errors"].values())
        assert bad >= 5, s
        assert dlq_count(case.env, "stream") == bad == s["dlq_entries"]  # every bad frame kept, once
    elif name == "shutdown":
        assert s["rotations"].get("server_shutdown", 0) >= 2 and s["reconnects"] == {}, s
    if name in BACKFILLED:  # the holes were there, and the backfill filled them
        assert s["gaps_filled"] >= 1 and s["trades_backfilled"] > 0 and s["gaps_unfilled"] == 0, s
    if name != "garbage":
        assert dlq_count(case.env) == 0

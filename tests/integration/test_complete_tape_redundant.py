"""The complete tape with redundant collectors: two `k2 stream binance` processes on one live simulator market and
one topic (blue and green overlapping 30 s, two active-active collectors for 60 s with one killed -9 mid-run, the
consumer killed -9 during dual operation), then the table holds every trade of the span exactly once — judged
against the simulator's --record, not k2's counters. The market prints 100 trades/s over two symbols.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.faults.support import K2Process, consume, metric, stream, table_offsets, wait_until
from tests.integration.consume_support import create_topic, delete_topic, free_port
from tests.integration.stream_support import simulator
from tests.integration.tape_support import (
    consume_all,
    judge,
    mark,
    query_gaps,
    report,
    rest_url,
    table_trades,
    twice_delivered_s,
    wait_delivered,
    wait_printing,
)

pytestmark = pytest.mark.integration
SYMBOLS = "BTCUSDT,ETHUSDT"
RATE = "100"
PRODUCED = "k2_stream_messages_produced_total"
OVERLAP_S = 30  # the "blue and green overlapping 30 s"
ACTIVE_S = 60  # the "two active-active collectors for 60 s"


@pytest.fixture
def lake(k2_env: dict[str, str], unique: str, tmp_path: Path):
    """(env, topic, table, group) of this test; the topic is deleted afterwards."""
    require("kafka", "schema-registry")
    topic, table = f"test.tape.{unique}", f"tape_{unique}.trades_v2"
    create_topic(topic, partitions=3)
    env = {**k2_env, "K2_TABLE": table}
    yield env, topic, table, f"k2-tape-{unique}"
    delete_topic(topic)


def _collector(env: dict[str, str], logdir: Path, url: str, topic: str, port: int) -> K2Process:
    return stream("binance", env, logdir, "--url", url, "--rest-url", rest_url(url), "--symbols", SYMBOLS,
                  "--topic", topic, metrics_port=port)


def _producing(port: int, proc: K2Process, timeout: float = 45) -> None:
    """Wait until a collector has produced trades (it is subscribed and delivering)."""
    def ok() -> bool:
        if not proc.alive():
            raise AssertionError(f"k2 stream exited {proc.proc.returncode}: {proc.stderr()[-2000:]}")
        return (metric(port, PRODUCED, 'exchange="binance"') or 0) > 0
    wait_until(ok, timeout, "a collector to produce")


def _stopped(proc: K2Process) -> dict:
    """SIGTERM a collector; its summary (it must have delivered everything it took)."""
    proc.stop()
    summary = proc.summary()
    assert summary.get("status") == "interrupted", proc.stderr()[-2000:]
    assert summary["undelivered"] == 0 and summary["produce_errors"] == {}, summary
    return summary


def _judge_table(env: dict[str, str], table: str, record: Path, span_end: int, what: str, backfilled: int,
                 extra: str) -> None:
    rows = table_trades(env, table)
    verdict = judge(record, span_end, rows, SYMBOLS)
    report(what, verdict, backfilled, extra)
    assert verdict.span >= 1000, verdict.figures()
    assert verdict.exact, verdict.figures()
    code, gaps = query_gaps(env, table)
    assert code == 0, gaps


def test_blue_green_overlapping_30s_each_trade_once(lake, tmp_path: Path):
    env, topic, table, group = lake
    record, logs = tmp_path / "tape.jsonl", tmp_path / "logs"
    started = time.monotonic()
    with simulator("binance", ["--rate", RATE, "--symbols", SYMBOLS, "--record", str(record)], env, tmp_path) as url:
        blue_port, green_port = free_port(), free_port()
        blue = _collector(env, logs, url, topic, blue_port)
        green: K2Process | None = None
        try:
            _producing(blue_port, blue)
            wait_printing(record)
            time.sleep(3)  # blue alone
            green = _collector(env, logs, url, topic, green_port)
            _producing(green_port, green)
            both = time.monotonic()
            time.sleep(OVERLAP_S)  # blue and green side by side
            summaries = [_stopped(blue)]
            both = time.monotonic() - both
            time.sleep(5)  # green alone
            span_end = mark(record)
            wait_delivered(topic, record, span_end)
            summaries.append(_stopped(green))
        finally:
            for p in (blue, green):
                if p is not None and p.alive():
                    p.kill()
    twice, overlap = twice_delivered_s(topic, record)
    stats = consume_all(env, topic, group, table, logs)
    _judge_table(env, table, record, span_end, f"blue and green overlapping {both:.0f} s",
                 sum(s["trades_backfilled"] for s in summaries),
                 f"{twice} trades in the topic twice, over {overlap:.1f} s of the tape; consumer skipped "
                 f"{stats.get('duplicates_skipped')} duplicates; {time.monotonic() - started:.0f} s")
    assert stats.get("duplicates_skipped", 0) > 0, stats  # the overlap did put trades twice in the topic
    assert overlap >= OVERLAP_S - 1, overlap  # both delivered side by side for the whole overlap


def test_active_active_one_killed_the_other_covers_each_trade_once(lake, tmp_path: Path):
    env, topic, table, group = lake
    record, logs = tmp_path / "tape.jsonl", tmp_path / "logs"
    started = time.monotonic()
    with simulator("binance", ["--rate", RATE, "--symbols", SYMBOLS, "--record", str(record)], env, tmp_path) as url:
        ports = free_port(), free_port()
        a = _collector(env, logs, url, topic, ports[0])
        b = _collector(env, logs, url, topic, ports[1])
        try:
            _producing(ports[0], a)
            _producing(ports[1], b)
            wait_printing(record)
            running = time.monotonic()
            time.sleep(ACTIVE_S / 2)  # both running
            a.kill()  # SIGKILL mid-run: whatever it had not delivered is gone with it
            time.sleep(ACTIVE_S / 2)  # b alone covers
            span_end = mark(record)
            running = time.monotonic() - running
            wait_delivered(topic, record, span_end)
            summary = _stopped(b)
        finally:
            for p in (a, b):
                if p.alive():
                    p.kill()
    twice, overlap = twice_delivered_s(topic, record)
    stats = consume_all(env, topic, group, table, logs)
    _judge_table(env, table, record, span_end, f"two active-active collectors for {running:.0f} s, one killed -9 "
                 f"after {ACTIVE_S / 2:.0f} s", summary["trades_backfilled"],
                 f"{twice} trades in the topic twice, over {overlap:.1f} s of the tape; consumer skipped "
                 f"{stats.get('duplicates_skipped')} duplicates; {time.monotonic() - started:.0f} s")
    assert stats.get("duplicates_skipped", 0) > 0, stats  # both delivered the same trades


def test_consumer_killed_during_dual_operation_each_trade_once(lake, tmp_path: Path):
    env, topic, table, group = lake
    record, logs = tmp_path / "tape.jsonl", tmp_path / "logs"
    started = time.monotonic()
    consumer_args = ("--topics", topic, "--group", group, "--batch-size", "300", "--flush-interval", "0.5")
    with simulator("binance", ["--rate", RATE, "--symbols", SYMBOLS, "--record", str(record)], env, tmp_path) as url:
        ports = free_port(), free_port()
        a = _collector(env, logs, url, topic, ports[0])
        b = _collector(env, logs, url, topic, ports[1])
        first = consume(env, logs, *consumer_args)
        second: K2Process | None = None
        try:
            _producing(ports[0], a)
            _producing(ports[1], b)
            wait_printing(record)
            wait_until(lambda: bool(table_offsets(env, table)), 45, "the consumer's first commit")
            time.sleep(4)
            assert first.alive(), first.stderr()[-2000:]
            first.kill()  # SIGKILL mid-run, with both collectors producing
            time.sleep(4)
            second = consume(env, logs, *consumer_args)
            time.sleep(8)
            span_end = mark(record)
            wait_delivered(topic, record, span_end)
            summaries = [_stopped(a), _stopped(b)]
            stats = consume_all(env, topic, group, table, logs, running=second)
        finally:
            for p in (a, b, first, second):
                if p is not None and p.alive():
                    p.kill()
    _judge_table(env, table, record, span_end, "consumer killed -9 during dual operation",
                 sum(s["trades_backfilled"] for s in summaries),
                 f"second consumer skipped {stats.get('duplicates_skipped')} duplicates; "
                 f"{time.monotonic() - started:.0f} s")
    assert stats.get("duplicates_skipped", 0) > 0, stats

"""The complete tape with gap backfill: one `k2 stream binance` on a live simulator market whose connections are
dropped, stalled or left without pongs every few seconds for 60 s while REST answers 429 (Retry-After) and 5xx,
or a stream stopped for 30 s and restarted — then the table holds every trade of the span exactly once, judged
against the simulator's --record. A gap deeper than K2_BACKFILL_MAX_TRADES is reported unfilled (exactly the ids
the record says are missing) and the stream goes on. The market prints 100 trades/s over two symbols.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.faults.support import K2Process, stream, with_env
from tests.integration.consume_support import create_topic, delete_topic, free_port
from tests.integration.stream_support import scrape, simulator
from tests.integration.tape_support import (
    Verdict,
    consume_all,
    judge,
    mark,
    query_gaps,
    report,
    rest_url,
    stop_collector,
    table_trades,
    wait_delivered,
    wait_printing,
)

pytestmark = pytest.mark.integration
SYMBOLS = "BTCUSDT,ETHUSDT"
RATE = "100"
FAULTS_S = 60  # the "every few seconds for 60 s"
DOWN_S = 30  # the "stopped for 30 s"


@pytest.fixture
def lake(k2_env: dict[str, str], unique: str):
    """(env, topic, table, group) of this test; the topic is deleted afterwards."""
    require("kafka", "schema-registry")
    topic, table = f"test.tape.bf.{unique}", f"tape_bf_{unique}.trades_v2"
    create_topic(topic, partitions=3)
    yield {**k2_env, "K2_TABLE": table}, topic, table, f"k2-tape-bf-{unique}"
    delete_topic(topic)


def _collector(env: dict[str, str], logdir: Path, url: str, topic: str, port: int = 0) -> K2Process:
    return stream("binance", env, logdir, "--url", url, "--rest-url", rest_url(url), "--symbols", SYMBOLS,
                  "--topic", topic, metrics_port=port)


def _requests(port: int) -> dict[str, int]:
    """The backfill's REST calls by outcome, from the running stream's /metrics."""
    out: dict[str, int] = {}
    for line in scrape(port).splitlines():
        if line.startswith("k2_backfill_requests_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[status] = int(float(line.rsplit(" ", 1)[1]))
    return out


def _verdict(env: dict[str, str], table: str, record: Path, span_end: int) -> Verdict:
    verdict = judge(record, span_end, table_trades(env, table), SYMBOLS)
    assert verdict.span >= 1000, verdict.figures()
    return verdict


def test_drops_stalls_and_pong_timeouts_for_60s_with_rest_429_and_5xx_leave_nothing_missing(lake, tmp_path: Path):
    env, topic, table, group = lake
    record, logs = tmp_path / "tape.jsonl", tmp_path / "logs"
    sim_args = ["--rate", RATE, "--symbols", SYMBOLS, "--record", str(record), "--fault-cycle", "3",
                "--rest-429-every", "2", "--rest-5xx-every", "3"]
    started = time.monotonic()
    with simulator("binance", sim_args, env, tmp_path) as url:
        port = free_port()
        proc = _collector(with_env(env, idle_timeout=2, ping_interval=1, pong_timeout=1.5), logs, url, topic, port)
        try:
            wait_printing(record)
            time.sleep(FAULTS_S)
            span_end, marked = mark(record), time.monotonic()
            wait_delivered(topic, record, span_end)
            requests = _requests(port)
            summary = stop_collector(proc)
            before_stop = time.monotonic() - marked
        finally:
            if proc.alive():
                proc.kill()
    consume_all(env, topic, group, table, logs)
    verdict = _verdict(env, table, record, span_end)
    reconnects = summary["reconnects"]
    report(f"drops, stalls, pong timeouts every 3 s for {FAULTS_S} s, REST 429+5xx", verdict,
           summary["trades_backfilled"], f"reconnects {reconnects}, gaps {summary['gaps_seen']} (filled "
           f"{summary['gaps_filled']}, unfilled {summary['gaps_unfilled']}), REST calls {requests}, span ends "
           f"{before_stop:.1f} s before the stop, {time.monotonic() - started:.0f} s")
    assert verdict.exact, verdict.figures()
    for reason in ("connection_closed", "idle_timeout", "pong_timeout"):  # every fault did cut the stream, often
        assert reconnects.get(reason, 0) >= 3, reconnects
    assert requests.get("429", 0) >= 1 and requests.get("5xx", 0) >= 1, requests  # and the backfill went through
    assert summary["gaps_filled"] >= 9 and summary["trades_backfilled"] > 0 and summary["gaps_unfilled"] == 0, \
        summary
    code, gaps = query_gaps(env, table)
    assert code == 0, gaps


def test_a_stream_stopped_30s_and_restarted_fills_the_hole(lake, tmp_path: Path):
    env, topic, table, group = lake
    record, logs = tmp_path / "tape.jsonl", tmp_path / "logs"
    started = time.monotonic()
    with simulator("binance", ["--rate", RATE, "--symbols", SYMBOLS, "--record", str(record)], env,
                   tmp_path) as url:
        first = _collector(env, logs, url, topic)
        second: K2Process | None = None
        try:
            wait_printing(record)
            time.sleep(6)
            stop_collector(first)
            stopped = time.monotonic()
            time.sleep(DOWN_S)  # the market goes on printing; nobody listens
            second = _collector(env, logs, url, topic)
            down = time.monotonic() - stopped
            time.sleep(8)
            span_end = mark(record)
            wait_delivered(topic, record, span_end)
            summary = stop_collector(second)
        finally:
            for p in (first, second):
                if p is not None and p.alive():
                    p.kill()
    consume_all(env, topic, group, table, logs)
    verdict = _verdict(env, table, record, span_end)
    report(f"k2 stream stopped {down:.0f} s and restarted", verdict, summary["trades_backfilled"],
           f"resumed from {summary['resumed_from']}, {time.monotonic() - started:.0f} s")
    assert verdict.exact, verdict.figures()
    assert set(summary["resumed_from"]) == set(SYMBOLS.split(",")), summary
    assert summary["trades_backfilled"] >= 2500, summary  # the hole: ~30 s at 100 trades/s
    code, gaps = query_gaps(env, table)
    assert code == 0, gaps


def test_a_gap_deeper_than_the_limit_is_reported_unfilled_and_the_stream_goes_on(lake, tmp_path: Path):
    env, topic, table, group = lake
    env = with_env(env, backfill_max_trades=100)
    record, logs = tmp_path / "tape.jsonl", tmp_path / "logs"
    with simulator("binance", ["--rate", RATE, "--symbols", SYMBOLS, "--record", str(record)], env,
                   tmp_path) as url:
        first = _collector(env, logs, url, topic)
        second: K2Process | None = None
        try:
            wait_printing(record)
            time.sleep(5)
            stop_collector(first)
            time.sleep(8)  # ~400 ids per symbol: deeper than the limit of 100
            second = _collector(env, logs, url, topic)
            time.sleep(8)
            span_end = mark(record)
            wait_delivered(topic, record, span_end)
            summary = stop_collector(second)
        finally:
            for p in (first, second):
                if p is not None and p.alive():
                    p.kill()
    consume_all(env, topic, group, table, logs)
    verdict = _verdict(env, table, record, span_end)
    report("gap deeper than K2_BACKFILL_MAX_TRADES=100", verdict, summary["trades_backfilled"],
           f"unfilled {[(g['symbol'], g['first_id'], g['last_id']) for g in summary['unfilled_gaps']]}")
    assert verdict.duplicated == 0 and verdict.wrong == 0 and not verdict.absent, verdict.figures()
    unfilled = {g["symbol"]: list(range(g["first_id"], g["last_id"] + 1)) for g in summary["unfilled_gaps"]}
    assert summary["gaps_unfilled"] == 2 and set(unfilled) == set(SYMBOLS.split(",")), summary
    assert all(len(ids) > 100 for ids in unfilled.values()), summary
    assert verdict.missing_ids == unfilled, (verdict.figures(), summary["unfilled_gaps"])  # exactly those, no more
    said = " ".join(second.stderr().split())  # the log wraps its lines
    assert "K2_BACKFILL_MAX_TRADES" in said and "k2 backfill binance --symbol BTCUSDT" in said, said[-2000:]
    rows = table_trades(env, table)
    for symbol, ids in unfilled.items():  # the stream went on: trades after the gap are in the table
        assert any(r["symbol"] == symbol and r["source_sequence"] > ids[-1] + 100 for r in rows), symbol
    code, gaps = query_gaps(env, table)
    assert code == 1, gaps

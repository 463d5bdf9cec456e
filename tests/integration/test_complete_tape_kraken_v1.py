"""The complete tape on Kraken WS v1, which has no trade ids: gaps are filled by time window.

A real `k2 stream kraken --url ws://…` (no /v2) on a live simulator market whose connections are dropped,
stalled or left without pongs in turn, each 2 s after it opened, stopped once for 4 s and restarted
(resuming from the topic's newest trade time per pair), then `k2 consume` into a table. Judged per pair
against the simulator's --record: every trade of the span, as (time, price, quantity, side) since v1 ids
hash those fields, in the table exactly once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from k2cli.timespec import to_micros
from tests.conftest import require
from tests.faults.support import K2Process, iceberg_columns, stream, with_env
from tests.integration.consume_support import create_topic, delete_topic
from tests.integration.stream_support import read_topic, simulator
from tests.integration.tape_support import (
    GRACE_S,
    consume_all,
    mark,
    rest_url,
    stop_collector,
    tape_lines,
    wait_printing,
)

pytestmark = pytest.mark.integration
PAIRS = "BTC/USD,ETH/USD"
RATE = "100"  # trades/s over both pairs: a 2 s outage outlasts the 50-trade snapshot of a resubscription


def _us(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return to_micros(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return int(value)


def _key(ts_us: int, price: Any, qty: Any, side: str) -> tuple[int, Decimal, Decimal, str]:
    return ts_us, Decimal(str(price)).normalize(), Decimal(str(qty)).normalize(), side.upper()


def _collector(env: dict[str, str], logs: Path, url: str, topic: str) -> K2Process:
    return stream("kraken", env, logs, "--url", url, "--rest-url", rest_url(url), "--symbols", PAIRS,
                  "--topic", topic)


def _wait_delivered(topic: str, last: dict[str, int], timeout: float = 20) -> None:
    """Give the collector time to deliver each pair's last trade of the span (only a wait: the judge decides)."""
    time.sleep(GRACE_S)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest: dict[str, int] = {}
        for _, r in read_topic(topic):
            newest[r["symbol"]] = max(newest.get(r["symbol"], 0), _us(r["timestamp"]))
        if all(newest.get(s, 0) >= t for s, t in last.items()):
            return
        time.sleep(1)


def _judge(tape: list[dict[str, Any]], span_end: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per pair: the span's trades (expected), those in the table, missing, on several rows; rows not on the tape."""
    span: dict[str, Counter] = defaultdict(Counter)
    every: dict[str, Counter] = defaultdict(Counter)
    for n, t in enumerate(tape):
        key = _key(t["ts_us"], t["price"], t["qty"], t["side"])
        every[t["symbol"].replace("/", "")][key] += 1
        if n < span_end:
            span[t["symbol"].replace("/", "")][key] += 1
    got: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        got[r["symbol"]][_key(_us(r["timestamp"]), r["price"], r["quantity"], r["side"])] += 1
    out: dict[str, Any] = {"expected": 0, "in_table": 0, "missing": 0, "duplicated": 0, "wrong": 0, "per_pair": {}}
    for symbol, trades in span.items():
        g = got.get(symbol, Counter())
        missing = sum(max(0, n - g[k]) for k, n in trades.items())
        dup = sum(max(0, g[k] - n) for k, n in every[symbol].items())
        wrong = sum(n for k, n in g.items() if k not in every[symbol])
        out["per_pair"][symbol] = {"expected": sum(trades.values()), "missing": missing, "duplicated": dup}
        out["expected"] += sum(trades.values())
        out["in_table"] += sum(trades.values()) - missing
        out["missing"] += missing
        out["duplicated"] += dup
        out["wrong"] += wrong
    return out


def test_kraken_v1_drops_stalls_pong_timeouts_and_a_restart_are_filled_by_time_window(k2_env, unique, tmp_path):
    require("kafka", "schema-registry")
    topic, table, group = f"test.tape.v1.{unique}", f"tape_v1_{unique}.trades_v2", f"k2-tape-v1-{unique}"
    env = with_env({**k2_env, "K2_TABLE": table}, idle_timeout=2, ping_interval=1, pong_timeout=1.5)
    record, logs = tmp_path / "tape.jsonl", tmp_path / "logs"
    create_topic(topic, partitions=3)
    started = time.monotonic()
    try:
        with simulator("kraken", ["--rate", RATE, "--symbols", PAIRS, "--record", str(record), "--fault-cycle",
                                  "2"], env, tmp_path) as url:
            assert not url.rstrip("/").endswith("/v2"), url
            first = _collector(env, logs, url, topic)
            second: K2Process | None = None
            try:
                wait_printing(record)
                time.sleep(14)
                one = stop_collector(first)
                time.sleep(4)  # the market goes on; nobody listens
                second = _collector(env, logs, url, topic)
                time.sleep(10)
                span_end = mark(record)
                tape = tape_lines(record)
                last = {t["symbol"].replace("/", ""): t["ts_us"] for t in tape[:span_end]}
                _wait_delivered(topic, last)
                two = stop_collector(second)
            finally:
                for p in (first, second):
                    if p is not None and p.alive():
                        p.kill()
        topic_ids = Counter(r["trade_id"] for _, r in read_topic(topic))
        consume_all(env, topic, group, table, logs)
        rows = iceberg_columns(env, table, "symbol", "timestamp", "price", "quantity", "side", "trade_id")
        tape = tape_lines(record)
    finally:
        delete_topic(topic)
    verdict = _judge(tape, span_end, rows)
    backfilled = one["trades_backfilled"] + two["trades_backfilled"]
    figures = (f"trades expected {verdict['expected']}, in table {verdict['in_table']} (rows {len(rows)}), "
               f"missing {verdict['missing']}, duplicated {verdict['duplicated']}, wrong {verdict['wrong']}; "
               f"trades backfilled {backfilled}; per pair {verdict['per_pair']}")
    print(f"\nCOMPLETE TAPE | kraken v1: drops, stalls, pong timeouts 2 s into each connection, a 4 s restart | "
          f"{figures}; reconnects {one['reconnects']} / {two['reconnects']}; windows filled {one['gaps_filled']}+"
          f"{two['gaps_filled']}, unfilled {one['gaps_unfilled']}+{two['gaps_unfilled']}; topic records "
          f"{sum(topic_ids.values())} for {len(topic_ids)} ids; resumed at {two['resumed_at']}; "
          f"{time.monotonic() - started:.0f} s", flush=True)
    assert verdict["expected"] >= 1500, verdict
    assert verdict["missing"] == 0 and verdict["duplicated"] == 0 and verdict["wrong"] == 0, verdict
    reconnects = Counter(one["reconnects"]) + Counter(two["reconnects"])
    assert all(reconnects[r] >= 1 for r in ("connection_closed", "idle_timeout", "pong_timeout")), reconnects
    assert reconnects.total() >= 5, reconnects
    assert one["gaps_unfilled"] == two["gaps_unfilled"] == 0, (one["unfilled_gaps"], two["unfilled_gaps"])
    assert backfilled > 0 and two["gaps_filled"] >= 1, (one, two)
    assert set(two["resumed_at"]) == {"BTCUSD", "ETHUSD"}, two
    assert all(r["trade_id"].startswith("KRAKEN-") for r in rows)

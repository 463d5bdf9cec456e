"""Gap backfill against the real simulator (WebSocket and REST on one port), broker and registry.

Each test compares the topic with the simulator's --record file: per symbol, every trade id the simulator printed
in the span the stream covered is in the topic exactly once, with its exact price.
"""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import require
from tests.integration.stream_support import (
    create_topic,
    free_port,
    metric_value,
    parse_summary,
    read_record_file,
    read_topic,
    run_stream,
    scrape,
    simulator,
    stream_cmd,
    stream_env,
)

pytestmark = pytest.mark.integration
RATE = 50
SYMBOLS = "BTCUSDT,ETHUSDT"


def _by_symbol(records: list[tuple[str, dict]]) -> dict[str, list[tuple[int, Decimal, str]]]:
    """The topic's (id, price, source) per symbol."""
    out: dict[str, list[tuple[int, Decimal, str]]] = {}
    for _, rec in records:
        out.setdefault(rec["symbol"], []).append(
            (rec["source_sequence"], rec["price"], (rec.get("vendor_data") or {}).get("source", "ws")))
    return out


def _printed(record_file: Path) -> dict[str, dict[int, Decimal]]:
    """The simulator's printed trades: id -> price per symbol."""
    out: dict[str, dict[int, Decimal]] = {}
    for t in read_record_file(record_file):
        out.setdefault(t["symbol"].replace("/", ""), {})[t["seq"]] = Decimal(t["price"])  # the stored symbol
    return out


def _assert_complete(topic: str, record_file: Path, symbols: str = SYMBOLS) -> dict[str, int]:
    """Every printed id from the topic's first to its last id per symbol is in the topic once, with its exact price;
    returns the backfilled records per symbol."""
    got, printed = _by_symbol(read_topic(topic)), _printed(record_file)
    assert set(got) == set(symbols.replace("/", "").split(",")), got.keys()
    backfilled = {}
    for symbol, rows in got.items():
        ids = [k for k, _, _ in rows]
        assert len(ids) == len(set(ids)), f"{symbol}: {len(ids) - len(set(ids))} ids produced twice"
        lo, hi = min(ids), max(ids)
        expected = {k for k in printed[symbol] if lo <= k <= hi}
        missing = sorted(expected - set(ids))
        assert not missing, f"{symbol}: {len(missing)} of {len(expected)} printed ids missing, e.g. {missing[:5]}"
        assert set(ids) <= set(printed[symbol]), f"{symbol}: ids the simulator never printed"
        wrong = [(k, p) for k, p, _ in rows if printed[symbol][k] != p]
        assert not wrong, f"{symbol}: prices differ from the simulator's: {wrong[:3]}"
        backfilled[symbol] = sum(1 for _, _, source in rows if source == "rest")
    return backfilled


def test_stalls_leave_no_hole_and_the_gaps_are_counted_filled(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic, record, port = f"test.stream.backfill.stall.{unique}", tmp_path / "printed.jsonl", free_port()
    create_topic(topic)
    with simulator("binance", ["--rate", str(RATE), "--symbols", SYMBOLS, "--stall-after", "3",
                               "--record", str(record)], k2_env, tmp_path) as url:
        proc = subprocess.Popen(stream_cmd("binance", [
            "--url", url, "--symbols", SYMBOLS, "--topic", topic, "--duration", "20", "--idle-timeout", "2",
            "--metrics-port", str(port)]), env=k2_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        metrics, deadline = "", time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            try:
                metrics = scrape(port)
            except Exception:
                continue
            if (metric_value(metrics, "k2_backfill_gaps_total", 'exchange="binance",result="filled"') or 0) >= 3:
                break
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = parse_summary(out)
    assert summary["reconnects"].get("idle_timeout", 0) >= 3, summary
    assert summary["backfill"] and summary["gaps_seen"] >= 3 and summary["gaps_unfilled"] == 0, summary
    assert summary["gaps_filled"] == summary["gaps_seen"], summary
    backfilled = _assert_complete(topic, record)
    assert sum(backfilled.values()) == summary["trades_backfilled"] > 100, (backfilled, summary)
    assert metric_value(metrics, "k2_backfill_trades_total", 'exchange="binance",symbol="BTCUSDT"') > 0
    assert metric_value(metrics, "k2_backfill_requests_total", 'exchange="binance",status="200"') >= 1
    assert metric_value(metrics, "k2_backfill_gaps_total", 'exchange="binance",result="unfilled"') == 0


def test_rest_answering_429_and_5xx_during_backfill_still_leaves_no_hole(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic, record = f"test.stream.backfill.restfaults.{unique}", tmp_path / "printed.jsonl"
    create_topic(topic)
    with simulator("binance", ["--rate", str(RATE), "--symbols", SYMBOLS, "--stall-after", "3", "--record",
                               str(record), "--rest-429-every", "2", "--rest-5xx-every", "3"], k2_env, tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", SYMBOLS, "--topic", topic,
                                                    "--duration", "12", "--idle-timeout", "2"], k2_env)
    assert code == 0, err
    assert summary["gaps_seen"] >= 2 and summary["gaps_filled"] == summary["gaps_seen"], summary
    assert summary["gaps_unfilled"] == 0, summary
    calls = summary["backfill_requests"]
    assert calls.get("429", 0) >= 1 and calls.get("5xx", 0) >= 1 and calls.get("200", 0) >= 2, calls
    _assert_complete(topic, record)


def test_kraken_v2_stalls_are_filled_by_id_through_its_time_paged_rest_api(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic, record, pairs = f"test.stream.backfill.kraken.{unique}", tmp_path / "printed.jsonl", "BTC/USD,ETH/USD"
    create_topic(topic)
    with simulator("kraken", ["--rate", str(RATE), "--symbols", pairs, "--stall-after", "3", "--record", str(record)],
                   k2_env, tmp_path) as url:
        code, summary, err = run_stream("kraken", ["--url", url.rstrip("/") + "/v2", "--symbols", pairs,
                                                   "--topic", topic, "--duration", "12", "--idle-timeout", "2"], k2_env)
    assert code == 0, err
    assert summary["gaps_seen"] >= 2 and summary["gaps_filled"] == summary["gaps_seen"], summary
    assert summary["gaps_unfilled"] == 0, summary
    backfilled = _assert_complete(topic, record, pairs)
    assert sum(backfilled.values()) == summary["trades_backfilled"] > 0, (backfilled, summary)


def test_ids_the_exchange_skipped_are_neither_invented_nor_waited_for(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic, record = f"test.stream.backfill.skip.{unique}", tmp_path / "printed.jsonl"
    create_topic(topic)
    with simulator("binance", ["--rate", str(RATE), "--symbols", SYMBOLS, "--skip-ids-every", "9",
                               "--stall-after", "4", "--record", str(record)], k2_env, tmp_path) as url:
        started = time.monotonic()
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", SYMBOLS, "--topic", topic,
                                                    "--duration", "10", "--idle-timeout", "2"], k2_env)
        took = time.monotonic() - started
    assert code == 0, err
    assert took < 25, f"the run took {took:.0f}s"  # nothing waited for ids that never come
    assert summary["gaps_unfilled"] == 0 and summary["gaps_filled"] == summary["gaps_seen"] >= 5, summary
    assert summary["gap_ids_absent"] >= 5, summary  # the skipped ids, looked up and found absent
    _assert_complete(topic, record)  # and none of the topic's ids is one the simulator never printed


def test_a_stream_stopped_and_restarted_fills_the_hole_from_the_topic(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic, record = f"test.stream.backfill.restart.{unique}", tmp_path / "printed.jsonl"
    create_topic(topic)
    args = ["--symbols", SYMBOLS, "--topic", topic, "--duration", "5"]
    with simulator("binance", ["--rate", str(RATE), "--symbols", SYMBOLS, "--record", str(record)],
                   k2_env, tmp_path) as url:
        code, first, err = run_stream("binance", ["--url", url, *args], k2_env)
        assert code == 0, err
        time.sleep(10)  # the market goes on: 50 trades/s over both symbols that nobody streams
        code, second, err = run_stream("binance", ["--url", url, *args], k2_env)
    assert code == 0, err
    assert first["resumed_from"] == {} and set(second["resumed_from"]) == set(SYMBOLS.split(",")), second
    assert second["gaps_filled"] == 2 and second["gaps_unfilled"] == 0, second
    backfilled = _assert_complete(topic, record)
    assert all(n >= 200 for n in backfilled.values()), backfilled  # 10 s at about 25 trades/s a symbol


def test_a_gap_deeper_than_the_limit_is_reported_and_k2_backfill_fills_exactly_it(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic, record = f"test.stream.backfill.deep.{unique}", tmp_path / "printed.jsonl"
    create_topic(topic)
    env = stream_env(k2_env, backfill_max_trades=20)
    with simulator("binance", ["--rate", str(RATE), "--symbols", SYMBOLS, "--stall-after", "3",
                               "--record", str(record)], k2_env, tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", SYMBOLS, "--topic", topic,
                                                    "--duration", "8", "--idle-timeout", "2"], env)
        assert code == 0, err
        assert summary["gaps_unfilled"] >= 2 and summary["trades_backfilled"] == 0, summary
        gap = summary["unfilled_gaps"][0]
        assert gap["ids"] == gap["last_id"] - gap["first_id"] + 1 > 20 and "K2_BACKFILL_MAX_TRADES" in gap["why"]
        assert f"k2 backfill binance --symbol {gap['symbol']} --from-id {gap['first_id']}" in " ".join(err.split())
        live_after = [k for _, r in read_topic(topic) if r["symbol"] == gap["symbol"]
                      for k in [r["source_sequence"]] if k > gap["last_id"]]
        assert live_after, "the stream went on after the gap"
        rest = url.replace("ws://", "http://").rsplit("/", 1)[0]
        fill = subprocess.run([sys.executable, "-m", "k2cli", "backfill", "binance", "--symbol", gap["symbol"],
                               "--from-id", str(gap["first_id"]), "--to-id", str(gap["last_id"]), "--topic", topic,
                               "--rest-url", rest, "--format", "json"], env=k2_env, capture_output=True, text=True,
                              timeout=60)
    assert fill.returncode == 0, fill.stderr
    done = parse_summary(fill.stdout)
    assert (done["fetched"], done["produced"], done["first_id"], done["last_id"]) == (
        gap["ids"], gap["ids"], gap["first_id"], gap["last_id"]), done
    rows = [r for _, r in read_topic(topic) if r["symbol"] == gap["symbol"]
            and gap["first_id"] <= r["source_sequence"] <= gap["last_id"]]
    assert sorted(r["source_sequence"] for r in rows) == list(range(gap["first_id"], gap["last_id"] + 1))
    printed = _printed(record)[gap["symbol"]]
    assert all(r["price"] == printed[r["source_sequence"]] and r["vendor_data"]["source"] == "rest" for r in rows)

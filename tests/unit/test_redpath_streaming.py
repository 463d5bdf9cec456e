"""Red paths of `k2 validate streaming`: each judged step turns red on its own fault in the streamed records."""

from __future__ import annotations

import time

from k2cli.checks.checklists import streaming
from k2cli.checks.probes.pipeline import make_trades
from k2cli.verdict import Status
from tests.unit.redpath_support import assert_red, context, stream_run

NOW_US = int(time.time() * 1_000_000)


def trades(count: int, *, every_us: int = 100_000, latency_us: int = 5_000) -> list[dict]:
    """Binance trades arriving every_us apart, each ingested latency_us after its trade time."""
    records = make_trades("BTCUSDT", range(1, count + 1))
    for i, rec in enumerate(records):
        rec["vendor_data"].update(is_buyer_maker="false", event_type="trade")
        rec["ingestion_timestamp"] = NOW_US + i * every_us
        rec["timestamp"] = rec["ingestion_timestamp"] - latency_us
    return records


def stream_ctx(tmp_path, records: list[dict], *, started_wall: float | None = None, decode_errors=()):
    first = min((r["ingestion_timestamp"] for r in records), default=NOW_US) / 1e6
    run = stream_run(started_wall=first - 1.0 if started_wall is None else started_wall)
    return context(tmp_path, {"stream": {"run": run, "records": records, "decode_errors": list(decode_errors)}})


def test_a_green_stream_passes_every_judged_step(tmp_path):
    ctx = stream_ctx(tmp_path, trades(20))
    for measure in (streaming.measure_first_trade, streaming.measure_trades, streaming.measure_compliance,
                    streaming.measure_rate, streaming.measure_latency):
        assert measure(ctx).status is Status.PASS, measure.__name__


def test_first_trade_too_late_fails(tmp_path):
    records = trades(20)
    ctx = stream_ctx(tmp_path, records, started_wall=records[0]["ingestion_timestamp"] / 1e6 - 45)
    assert_red(streaming.measure_first_trade(ctx), Status.FAIL, "45.00 s after")
    assert_red(streaming.measure_first_trade(stream_ctx(tmp_path, [])), Status.FAIL, "no trade arrived")


def test_fewer_than_ten_valid_trades_fail(tmp_path):
    records = trades(12)
    for rec in records[:3]:
        rec["symbol"] = "btc-usdt"  # not a v2 symbol: the trade does not count
    result = streaming.measure_trades(stream_ctx(tmp_path, records))
    assert_red(result, Status.FAIL, "9 valid binance trades")
    assert result.measured == 9


def test_one_non_compliant_record_or_undecodable_message_fails_compliance(tmp_path):
    records = trades(20)
    records[4]["trade_id"] = "KRAKEN-5"
    assert_red(streaming.measure_compliance(stream_ctx(tmp_path, records)), Status.FAIL,
               "19 of 20 records", "KRAKEN-5", "does not start with BINANCE-")
    undecodable = stream_ctx(tmp_path, trades(20), decode_errors=["partition 0 offset 7: no_magic_byte: bad"])
    assert_red(streaming.measure_compliance(undecodable), Status.FAIL, "20 of 21 records", "offset 7")


def test_rate_below_the_range_fails_and_above_it_warns(tmp_path):
    slow = trades(11, every_us=2_000_000)  # one trade every 2 s: 0.5/s, under Binance's 1/s
    assert_red(streaming.measure_rate(stream_ctx(tmp_path, slow)), Status.FAIL, "0.5 trades/s over 20.00 s")
    fast = trades(11, every_us=1_000)  # 1,000/s, over Binance's expected 100/s
    assert_red(streaming.measure_rate(stream_ctx(tmp_path, fast)), Status.WARN, "above the expected range")


def test_latency_over_the_limit_fails(tmp_path):
    result = streaming.measure_latency(stream_ctx(tmp_path, trades(20, latency_us=250_000)))
    assert_red(result, Status.FAIL, "p95 250.0 ms")
    assert result.threshold == "< 100 ms"

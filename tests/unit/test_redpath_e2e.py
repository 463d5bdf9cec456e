"""Red paths of `k2 validate e2e` steps that judge plain measurements: the consumer's statistics, the consumed
records, the query rows and the run's memory. Each fault turns its step red with the reason in the result."""

from __future__ import annotations

from dataclasses import dataclass

from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType

from k2cli.checks.checklists import e2e
from k2cli.checks.probes.pipeline import make_trades
from k2cli.trade import iceberg_schema
from k2cli.verdict import Status
from tests.unit.redpath_support import Consumed, assert_red, context
from tests.unit.test_checks_helpers import query_row


def stats(consumed: int = 1000, written: int = 999, dead: int = 1, errors: int = 1, gaps: int = 0) -> dict:
    return {"messages_consumed": consumed, "messages_written": written, "dlq_entries": dead, "errors": errors,
            "sequence_gaps": gaps, "duration_s": 5.0, "throughput_msg_per_sec": 200.0}


def run_ctx(tmp_path, planned: int = 1000, **figures: int):
    return context(tmp_path, {"consume": {"stats": stats(**figures), "peak_rss": 100 * 2**20},
                              "plan": {"total": planned, "need": 0}})


def test_consumed_other_than_planned_fails(tmp_path):
    assert e2e.measure_no_loss(run_ctx(tmp_path)).status is Status.PASS
    result = e2e.measure_no_loss(run_ctx(tmp_path, planned=1200))
    assert_red(result, Status.FAIL, "consumed 1000 messages, the run planned 1200")


def test_messages_neither_written_nor_dead_lettered_fail(tmp_path):
    result = e2e.measure_no_loss(run_ctx(tmp_path, written=990))
    assert_red(result, Status.FAIL, "9 consumed messages were neither written nor dead-lettered")
    assert result.measured == 9


def test_error_counters_beyond_the_dead_letters_fail(tmp_path):
    assert e2e.measure_errors(run_ctx(tmp_path)).status is Status.PASS
    result = e2e.measure_errors(run_ctx(tmp_path, errors=4))
    assert_red(result, Status.FAIL, "3 errors besides the 1 dead-lettered")
    assert result.threshold == "<= 0 errors"


def gaps_ctx(tmp_path, reported: int, sequences: list[int]):
    records = [(Consumed(0, i), rec) for i, rec in enumerate(make_trades("BTCUSDT", sequences))]
    records.append((Consumed(0, len(records)), None))  # the poison: undecodable, not counted
    ctx = run_ctx(tmp_path, gaps=reported)
    ctx.state["consumed_records"] = records
    return ctx


def test_skipped_trade_ids_the_consumer_did_not_count_fail(tmp_path):
    sequences = [*range(1, 50), *range(51, 80), *range(90, 100)]  # ids 50 and 80-89 skipped: 2 gaps
    assert e2e.measure_gaps(gaps_ctx(tmp_path, 2, sequences)).status is Status.PASS
    assert_red(e2e.measure_gaps(gaps_ctx(tmp_path, 0, sequences)), Status.FAIL,
               "reported 0 sequence gaps; the records hold 2")
    assert_red(e2e.measure_gaps(gaps_ctx(tmp_path, 5, sequences)), Status.FAIL,
               "reported 5 sequence gaps; the records hold 2", "0/BINANCE/BTCUSDT: 88 records, 2 gaps")


def test_a_backlog_over_the_limit_fails_before_anything_is_produced(tmp_path):
    ctx = context(tmp_path, {"baseline": {"pending": 80_000}})
    result = e2e.measure_test_data(ctx)
    assert_red(result, Status.FAIL, "80000 messages are pending; consume the backlog")
    assert "plan" not in ctx.state  # nothing injected


def query_ctx(tmp_path, rows: list[dict], in_table: int = 500, schema: Schema | None = None):
    @dataclass
    class Table:
        held: Schema

        def schema(self) -> Schema:
            return self.held

    q = {"rows": rows, "symbol": "BTCUSDT", "limit": 100, "in_table": in_table,
         "table": Table(schema or iceberg_schema())}
    return context(tmp_path, {"query": q})


def newest_first(count: int) -> list[dict]:
    return [query_row(trade_id=f"BINANCE-{count - i}", timestamp=f"2026-01-13T15:30:{59 - i:02d}.000000Z")
            for i in range(count)]


def test_rows_missing_from_the_answer_fail_the_count(tmp_path):
    assert e2e.measure_query_count(query_ctx(tmp_path, newest_first(40), in_table=40)).status is Status.PASS
    result = e2e.measure_query_count(query_ctx(tmp_path, newest_first(40), in_table=500))
    assert_red(result, Status.FAIL, "40 rows for BTCUSDT; the table holds 500, limit 100")
    assert result.threshold == "== 100"


def test_rows_out_of_order_fail(tmp_path):
    rows = newest_first(10)
    assert e2e.measure_query_order(query_ctx(tmp_path, rows)).status is Status.PASS
    rows[3], rows[4] = rows[4], rows[3]
    assert_red(e2e.measure_query_order(query_ctx(tmp_path, rows)), Status.FAIL, "1 rows out of order (row 4:")


def test_a_missing_v2_field_fails(tmp_path):
    rows = newest_first(5)
    assert e2e.measure_query_fields(query_ctx(tmp_path, rows)).status is Status.PASS
    del rows[2]["vendor_data"]
    assert_red(e2e.measure_query_fields(query_ctx(tmp_path, rows)), Status.FAIL, "rows lack vendor_data")


def test_a_wrong_type_in_a_row_or_in_the_table_schema_fails(tmp_path):
    rows = newest_first(5)
    assert e2e.measure_query_types(query_ctx(tmp_path, rows)).status is Status.PASS
    rows[1]["price"] = 16500.12  # a float, not an exact decimal string
    assert_red(e2e.measure_query_types(query_ctx(tmp_path, rows)), Status.FAIL, "1 rows have wrong types",
               "price: 16500.12 is a float")
    doubled = Schema(*(f.model_copy(update={"field_type": DoubleType()}) if f.name == "price" else f
                       for f in iceberg_schema().fields), schema_id=0)
    assert_red(e2e.measure_query_types(query_ctx(tmp_path, newest_first(5), schema=doubled)), Status.FAIL,
               "price: double, expected decimal")


def test_peak_memory_over_the_limit_fails(tmp_path):
    ctx = run_ctx(tmp_path)
    assert e2e.measure_memory(ctx).status is Status.PASS
    ctx.state["consume"]["peak_rss"] = 640 * 2**20
    result = e2e.measure_memory(ctx)
    assert_red(result, Status.FAIL, "consumer peak RSS 640.0 MB")
    assert result.threshold == "< 500 MB"

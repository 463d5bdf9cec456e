"""The blue-green steps of `k2 validate deploy --post` turning red by their own fault: one collector in the real
Prometheus, and a real Iceberg table (SQLite catalog, local warehouse) holding a trade twice or missing ids in the
span of a blue-green whose Prometheus side was clean. The green path runs in test_validate_rehearsal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from k2cli.checks.checklists import bluegreen as bg
from k2cli.checks.context import Context, Options
from k2cli.checks.model import Status
from k2cli.settings import Settings, load_settings
from k2cli.timespec import to_micros
from tests.conftest import require

pytestmark = pytest.mark.integration

T0 = to_micros(dt.datetime(2024, 5, 1, tzinfo=dt.UTC)) / 1e6  # epoch seconds
BLUE, GREEN = "127.0.0.1:9091", "127.0.0.1:9191"


def _trade(seq: int, at: float) -> dict[str, Any]:
    from k2cli.trade import new_trade

    us = int((T0 + at) * 1e6)
    return new_trade(trade_id=f"BINANCE-{seq}", symbol="BTCUSDT", exchange="BINANCE", timestamp_us=us,
                     price="100.5", quantity="0.25", currency="USD", side="BUY", ingestion_timestamp_us=us + 5,
                     source_sequence=seq)


def _settings(root: Path, rows: list[dict[str, Any]]) -> Settings:
    """A table of its own holding these rows; settings reading it, with the seed's 10/15 min shrunk to the span."""
    import pyarrow as pa

    from k2cli.lake.catalog import ensure_trades_table, open_catalog
    from k2cli.trade import arrow_schema

    name = f"k2test_{uuid.uuid4().hex[:8]}.trades_v2"
    settings = load_settings(data_dir=root / "data", table=name)
    ensure_trades_table(open_catalog(settings), name).append(pa.Table.from_pylist(rows, schema=arrow_schema()))
    return dataclasses.replace(settings, thresholds={"bg_dual_min_s": 30, "bg_green_only_min_s": 60})


def _context(settings: Settings) -> Context:
    """A run whose Prometheus side shows a clean blue-green: 100..130 s both up and receiving, green alone after."""
    ctx = Context(settings, Options(exchange="binance"))
    overlap = bg.Overlap(bg.Span(T0 + 100, T0 + 130), BLUE, GREEN, bg.Span(T0 + 100, T0 + 200))
    ctx.state["bluegreen"] = bg.Timeline("binance", "k2-stream-binance", 600, T0 + 200, [BLUE, GREEN], overlap,
                                         received_during={BLUE: 30.0, GREEN: 30.0},
                                         received_after={BLUE: 0.0, GREEN: 70.0},
                                         produced_during={BLUE: 30.0, GREEN: 30.0},
                                         produced_after={BLUE: 0.0, GREEN: 70.0}, duplicates_removed=30.0)
    return ctx


def test_a_trade_twice_in_the_overlap_fails_bg_dual_and_the_clean_table_passes(tmp_path: Path) -> None:
    clean = [_trade(i, i) for i in range(90, 201)]
    red = _context(_settings(tmp_path / "red", [*clean, _trade(115, 115.5)]))
    result = bg.measure_bg_dual(red)
    assert result.status is Status.FAIL, result
    assert result.summary == "trade id twice in the table: BTCUSDT BINANCE-115 (2 rows)"
    assert "table: 32 rows of binance in the overlap, 1 trade ids twice" in result.evidence
    green = bg.measure_bg_dual(_context(_settings(tmp_path / "green", clean)))
    assert green.status is Status.PASS and green.measured == 30, green


def test_a_missing_id_after_the_cut_over_fails_bg_green_validated(tmp_path: Path) -> None:
    rows = [_trade(i, i) for i in range(90, 201) if i != 150]
    result = bg.measure_bg_green_validated(_context(_settings(tmp_path, rows)))
    assert result.status is Status.FAIL, result
    assert result.summary == "trade ids missing from the table: BTCUSDT 150..150"
    whole = [_trade(i, i) for i in range(90, 201)]
    passed = bg.measure_bg_green_validated(_context(_settings(tmp_path / "whole", whole)))
    assert passed.status is Status.PASS and passed.measured == 70, passed


def test_one_collector_in_prometheus_fails_bg_green_deployed() -> None:
    """The real Prometheus: no second coinbase collector runs in this test's look-back."""
    require("prometheus")
    ctx = Context(dataclasses.replace(Settings(), thresholds={"bg_lookback_s": 120}), Options(exchange="coinbase"))
    try:
        result = bg.measure_bg_green_deployed(ctx)
    finally:
        ctx.close()
    assert result.status is Status.FAIL, result
    assert result.summary.startswith("k2-stream-coinbase never had two instances up at once in the last 120 s")
    assert result.summary.endswith("no green beside blue")

"""Pure pieces of k2 query: filters as bound parameters, limits, top-N file choice, OHLCV arithmetic, output."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from k2cli.cli._output import cell, plain
from k2cli.lake.ohlcv import bar, interval_micros, vwap
from k2cli.lake.query import BadQuery, DataFile, TradeFilter, _first_band, _may_reach, check_limit


def test_filter_values_become_parameters_never_sql_text() -> None:
    nasty = "BTCUSDT' OR '1'='1"
    where, params = TradeFilter(symbol=nasty, exchange="BINANCE", since_us=1, until_us=2).sql_where()
    assert nasty not in where and "BINANCE" not in where
    assert where.count("?") == 4
    assert params == [nasty, "BINANCE", "1970-01-01T00:00:00.000001+00:00", "1970-01-01T00:00:00.000002+00:00"]


def test_empty_filter_has_no_where() -> None:
    assert TradeFilter().sql_where() == ("", [])


def test_since_must_precede_until() -> None:
    with pytest.raises(BadQuery):
        TradeFilter(since_us=5, until_us=5)


@pytest.mark.parametrize("bad", [0, -1, 1_000_001, "100", "1; DROP VIEW trades", True, 1.5])
def test_limit_must_be_a_bounded_whole_number(bad: object) -> None:
    with pytest.raises(BadQuery):
        check_limit(bad)  # type: ignore[arg-type]


def test_limit_accepts_its_range() -> None:
    assert check_limit(1) == 1
    assert check_limit(1_000_000) == 1_000_000


def _file(name: str, rows: int, lo: int | None, hi: int | None) -> DataFile:
    return DataFile(path=name, record_count=rows, size_bytes=1, lower_ts=lo, upper_ts=hi)


def test_first_band_covers_the_limit_in_rows() -> None:
    files = [_file("a", 10, 0, 9), _file("b", 10, 0, 9), _file("c", 10, 0, 9)]
    assert [f.path for f in _first_band(files, 15)] == ["a", "b"]
    assert [f.path for f in _first_band(files, 100)] == ["a", "b", "c"]


def test_a_file_may_reach_the_cutoff_through_its_bounds() -> None:
    f = _file("a", 1, 100, 200)
    assert _may_reach(f, 200, desc=True) and not _may_reach(f, 201, desc=True)
    assert _may_reach(f, 100, desc=False) and not _may_reach(f, 99, desc=False)
    unknown = _file("u", 1, None, None)
    assert _may_reach(unknown, 10**18, desc=True) and _may_reach(unknown, 0, desc=False)


@pytest.mark.parametrize("interval", ["2m", "1M", "", "1h; DROP", "60"])
def test_unknown_intervals_are_refused(interval: str) -> None:
    with pytest.raises(BadQuery):
        interval_micros(interval)


def test_interval_widths() -> None:
    assert interval_micros("1m") == 60_000_000
    assert interval_micros("1d") == 86_400_000_000


def test_vwap_is_exact_then_rounded_half_even_to_8_places() -> None:
    # 1 @ 1 and 2 @ 2: (1 + 4) / 3 = 1.666…67
    assert vwap(Decimal("5"), Decimal("3")) == Decimal("1.66666667")
    # exactly half way at the 9th place rounds to even
    assert vwap(Decimal("0.000000025"), Decimal("1")) == Decimal("0.00000002")
    assert vwap(Decimal("0.000000035"), Decimal("1")) == Decimal("0.00000004")
    assert vwap(Decimal("1"), Decimal("0")) is None


def test_bar_times_are_exact_utc() -> None:
    b = bar("BINANCE", "BTCUSDT", 1_700_000_040_000_000, 60_000_000, Decimal(1), Decimal(2), Decimal(1), Decimal(2),
            Decimal(3), Decimal(5), 2)
    assert b["interval_start"] == dt.datetime(2023, 11, 14, 22, 14, tzinfo=dt.UTC)
    assert b["interval_end"] - b["interval_start"] == dt.timedelta(minutes=1)
    assert b["vwap"] == Decimal("1.66666667")


def test_output_values_stay_exact() -> None:
    assert plain(Decimal("0.00000001")) == "0.00000001"
    assert plain(Decimal("12345678.12345678")) == "12345678.12345678"
    assert plain(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) == "2024-01-01T00:00:00.000000+00:00"
    assert cell({"b": "1"}) == '{"b":"1"}'
    assert cell(None) == ""
    assert cell(Decimal("1.10000000")) == "1.10000000"
    assert plain(dt.timedelta(hours=1)) == "1:00:00"
    assert plain(dt.date(2024, 1, 2)) == "2024-01-02"
    assert plain(b"\x00\x01") == "AAE="


def test_metadata_reader_prunes_conservatively() -> None:
    from k2cli.lake.metadata import _contains, _overlaps

    assert _overlaps(5, 5, 5, 5) and _overlaps(None, None, 1, 2) and _overlaps(1, 9, None, None)
    assert not _overlaps(1, 4, 5, None) and not _overlaps(6, 9, None, 5)
    assert _contains(b"ADAUSDT", b"XRPUSDT", b"BTCUSDT")
    assert not _contains(b"BTCUSDT", b"BTCUSDT", b"ETHUSDT")
    # a 16-character truncated upper bound is incremented, so it still covers longer values
    assert _contains(b"AAAA", b"ZZZZZZZZZZZZZZZ[", b"ZZZZZZZZZZZZZZZZZZ")
    assert _contains(None, None, b"anything")


def test_filter_day_range() -> None:
    day = 86_400_000_000
    assert TradeFilter(since_us=day, until_us=2 * day).day_range() == (1, 1)
    assert TradeFilter(since_us=day - 1, until_us=2 * day + 1).day_range() == (0, 2)
    assert TradeFilter().day_range() == (None, None)

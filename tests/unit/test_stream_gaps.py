"""Gaps in trade ids: where a restart resumes, when a gap is judged, how gaps become fetches."""

from k2cli.stream.gaps import Fetch, Gap, due, fill_command, narrow, plan_fetches, resume_gap


def test_resume_gap_spans_the_ids_between_the_topic_and_the_first_live_trade():
    assert resume_gap(100, 131) == (101, 130)
    assert resume_gap(100, 101) is None  # no hole
    assert resume_gap(100, 90) is None  # an overlap or a restarted sequence: nothing this run can name
    assert resume_gap(None, 5) is None  # an empty topic


def test_gaps_are_judged_after_their_grace_in_opening_order():
    a, b, c = Gap("S", 5, 6, opened=1.0), Gap("T", 1, 1, opened=1.2), Gap("S", 9, 9, opened=1.9)
    ready, waiting = due([a, b, c], now=1.7, grace=0.5)
    assert ready == [a, b] and waiting == [c]


def test_narrow_keeps_only_what_live_trades_did_not_close():
    gap = Gap("S", 10, 20, opened=3.0, after_us=7)
    assert narrow(gap, [(12, 14), (16, 20)]) == [Gap("S", 12, 14, 3.0, 7), Gap("S", 16, 20, 3.0, 7)]
    assert narrow(gap, []) == []


def test_nearby_gaps_of_a_symbol_share_one_fetch_in_order():
    gaps = [Gap("S", 100, 100), Gap("T", 50, 60), Gap("S", 110, 110), Gap("S", 5_000, 5_010)]
    fetches, too_wide = plan_fetches(gaps, max_trades=100_000, coalesce=1_000)
    assert too_wide == []
    assert [(f.symbol, f.first, f.last, len(f.gaps)) for f in fetches] == [
        ("S", 100, 110, 2), ("T", 50, 60, 1), ("S", 5_000, 5_010, 1)]
    assert fetches[0].missing == 2


def test_a_gap_wider_than_the_limit_is_left_unfilled_and_never_merged_past_it():
    wide, small = Gap("S", 1, 200), Gap("S", 300, 310)
    fetches, too_wide = plan_fetches([wide, small, Gap("S", 400, 420)], max_trades=150, coalesce=1_000)
    assert too_wide == [wide]
    assert [(f.first, f.last) for f in fetches] == [(300, 420)]
    fetches, _ = plan_fetches([Gap("S", 1, 60), Gap("S", 70, 120)], max_trades=100, coalesce=1_000)
    assert [(f.first, f.last) for f in fetches] == [(1, 60), (70, 120)]  # together they would span 120 ids


def test_a_fetch_starts_at_its_earliest_time_cursor():
    f = Fetch("S", 1, 9, (Gap("S", 1, 2, after_us=50), Gap("S", 8, 9, after_us=20)))
    assert f.after_us == 20
    assert Fetch("S", 1, 9, (Gap("S", 1, 2, after_us=50), Gap("S", 8, 9))).after_us is None


def test_the_fill_command_names_the_range():
    assert fill_command("kraken", "BTC/USD", Gap("BTCUSD", 7, 9)) == \
        "k2 backfill kraken --symbol BTC/USD --from-id 7 --to-id 9"

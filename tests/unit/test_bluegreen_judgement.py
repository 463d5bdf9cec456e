"""The blue-green steps' pure judgement (k2cli/checks/checklists/bluegreen.py) over plain series and id lists, and
bg-green-deployed's measure over a timeline with no overlap."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from k2cli.checks.checklists import bluegreen as bg
from k2cli.checks.context import Context, Options
from k2cli.checks.model import Status
from k2cli.checks.rehearsal import Names, environment, rest_base, timing
from k2cli.settings import Settings
from k2cli.stack.config import green_port, stream_scrape_configs

BLUE, GREEN = "127.0.0.1:9091", "127.0.0.1:9191"


def _up(first: float, last: float, step: float = 5.0, before: float = 0.0) -> bg.Points:
    """up samples: 0 from `before` to `first`, 1 from `first` to `last`, 0 after it for two scrapes."""
    points = [(t, 0.0) for t in _times(before, first - step, step)]
    points += [(t, 1.0) for t in _times(first, last, step)]
    return points + [(last + step, 0.0), (last + 2 * step, 0.0)]


def _times(a: float, b: float, step: float) -> list[float]:
    out, t = [], a
    while t <= b:
        out.append(t)
        t += step
    return out


def _timeline(**changes: object) -> bg.Timeline:
    overlap = bg.Overlap(bg.Span(100, 130), BLUE, GREEN, bg.Span(100, 400))
    t = bg.Timeline("binance", "k2-stream-binance", 600, 400, [BLUE, GREEN], overlap,
                    received_during={BLUE: 90.0, GREEN: 88.0}, received_after={BLUE: 0.0, GREEN: 800.0},
                    produced_during={BLUE: 90.0, GREEN: 88.0}, produced_after={BLUE: 0.0, GREEN: 800.0},
                    duplicates_removed=85.0)
    return dataclasses.replace(t, **changes)


CLEAN = bg.TableSpan(rows=178, duplicates=[], missing=[], missing_ids=0)


def test_up_runs_split_at_a_down_sample_and_at_a_hole_in_the_samples():
    points = [(0, 1), (5, 1), (10, 0), (15, 1), (20, 1), (100, 1), (105, 1)]
    assert bg.up_runs(points, gap=30) == [bg.Span(0, 5), bg.Span(15, 20), bg.Span(100, 105)]
    assert bg.up_runs([(0, 0), (5, 0)]) == []


def test_latest_overlap_names_blue_as_the_one_up_first():
    o = bg.latest_overlap({GREEN: _up(100, 400, before=0), BLUE: _up(0, 130)})
    assert o is not None
    assert (o.blue, o.green, o.span, o.green_run) == (BLUE, GREEN, bg.Span(100, 130), bg.Span(100, 400))


def test_latest_overlap_takes_the_most_recent_of_two_deploys():
    third = "127.0.0.1:9092"
    o = bg.latest_overlap({BLUE: _up(0, 130), GREEN: _up(100, 600), third: _up(500, 800)})
    assert o is not None and (o.blue, o.green, o.span) == (GREEN, third, bg.Span(500, 600))


def test_one_instance_or_two_never_at_once_is_no_overlap():
    assert bg.latest_overlap({BLUE: _up(0, 300)}) is None
    assert bg.latest_overlap({BLUE: _up(0, 100), GREEN: _up(150, 300)}) is None
    assert bg.latest_overlap({}) is None


def test_increase_counts_within_the_span_and_from_zero_after_a_reset():
    points = [(0, 10), (5, 20), (10, 35), (15, 3), (20, 8)]
    assert bg.increase(points, 5, 10) == 15
    assert bg.increase(points, 5, 20) == 15 + 3 + 5
    assert bg.increase(points, 21, 30) == 0


def test_per_instance_sums_the_label_sets_of_each_instance():
    series = [({"instance": BLUE, "symbol": "BTCUSDT"}, [(0, 0), (10, 4)]),
              ({"instance": BLUE, "symbol": "ETHUSDT"}, [(0, 1), (10, 3)]),
              ({"instance": GREEN, "symbol": "BTCUSDT"}, [(5, 0), (10, 7)])]
    assert bg.per_instance(series, 0, 10) == {BLUE: 6, GREEN: 7}


def test_a_clean_dual_operation_has_no_problems():
    assert bg.dual_problems(_timeline(), CLEAN) == []


def test_dual_fails_on_an_idle_collector_no_duplicates_removed_or_an_id_twice():
    idle = bg.dual_problems(_timeline(received_during={BLUE: 90.0}), CLEAN)
    assert idle == [f"green {GREEN} received no trades during the overlap"]
    unacknowledged = bg.dual_problems(_timeline(produced_during={BLUE: 0.0, GREEN: 88.0}), CLEAN)
    assert unacknowledged == [f"blue {BLUE} produced no trades to Kafka during the overlap"]
    assert bg.dual_problems(_timeline(duplicates_removed=0.0), CLEAN)[0].startswith(
        "the consumer removed no duplicates")
    assert "no k2_consumer_duplicates_total" in bg.dual_problems(_timeline(duplicates_removed=None), CLEAN)[0]
    twice = bg.TableSpan(178, ["BTCUSDT BINANCE-7 (2 rows)"], [], 0)
    assert bg.dual_problems(_timeline(), twice) == ["trade id twice in the table: BTCUSDT BINANCE-7 (2 rows)"]
    assert bg.dual_problems(_timeline(), bg.TableSpan(0, [], [], 0)) == ["the table holds no trades of the overlap"]
    assert bg.dual_problems(_timeline(overlap=None), CLEAN) == ["no overlap of two collectors"]


def test_validated_fails_when_blue_goes_on_green_is_idle_or_ids_are_missing():
    assert bg.validated_problems(_timeline(), CLEAN) == []
    both = bg.validated_problems(_timeline(produced_after={BLUE: 40.0, GREEN: 800.0}), CLEAN)
    assert both == [f"{BLUE} still received or produced trades after the cut-over"]
    idle = bg.validated_problems(_timeline(received_after={BLUE: 0.0, GREEN: 0.0}), CLEAN)
    assert idle == [f"green {GREEN} received no trades after the cut-over"]
    holes = bg.TableSpan(170, [], ["BTCUSDT 40..44"], 5)
    assert bg.validated_problems(_timeline(), holes) == ["trade ids missing from the table: BTCUSDT 40..44"]
    assert _timeline().green_only == bg.Span(130, 400)


def test_measure_green_deployed_fails_with_one_instance_and_says_which():
    ctx = Context(Settings(), Options())
    ctx.state["bluegreen"] = _timeline(overlap=None, instances=[BLUE])
    result = bg.measure_bg_green_deployed(ctx)
    assert result.status is Status.FAIL
    assert result.summary == ("k2-stream-binance never had two instances up at once in the last 600 s "
                              f"(instances up: {BLUE}): no green beside blue")
    ctx.state["bluegreen"] = _timeline()
    assert bg.measure_bg_green_deployed(ctx).status is Status.PASS


def test_the_green_port_is_scraped_beside_the_metrics_port():
    assert green_port(9091) == 9191
    assert 'targets: ["127.0.0.1:9091", "127.0.0.1:9191"]' in stream_scrape_configs((("binance", 9091),))


def test_the_rehearsal_scales_the_blue_green_thresholds_and_points_rest_at_its_simulators():
    names = Names({"binance": "t.b", "kraken": "t.k"}, "ns.t", "g", Path("dlq"))
    urls = {"binance": "wss://127.0.0.1:4000", "kraken": "wss://127.0.0.1:4001/v2"}
    env = environment(Settings(), timing(1.5), names, urls, Path("ca.pem"), 400.0)
    assert env["K2_BINANCE_REST_URL"] == "https://127.0.0.1:4000"
    assert env["K2_KRAKEN_REST_URL"] == "https://127.0.0.1:4001" == rest_base("wss://127.0.0.1:4001/v2")
    assert "bg_green_only_min_s=90.0" in env["K2_THRESHOLDS"] and "bg_lookback_s=400.0" in env["K2_THRESHOLDS"]
    assert "bg_dual_min_s=6.0" in env["K2_THRESHOLDS"]



def test_cutover_fails_when_green_goes_down_first_or_blue_comes_back():
    assert bg.cutover_problems(_timeline()) == []
    first = bg.Overlap(bg.Span(100, 130), BLUE, GREEN, bg.Span(100, 130))
    assert bg.cutover_problems(_timeline(overlap=first))[0].startswith(f"green {GREEN} went down at ")
    back = _timeline(runs={BLUE: [bg.Span(0, 130), bg.Span(300, 400)], GREEN: [bg.Span(100, 400)]})
    assert bg.cutover_problems(back) == [f"blue {BLUE} was up again from 00:05:00 UTC after the cut-over"]


def test_measure_cutover_fails_on_blue_back_and_leaves_the_exit_status_to_a_person():
    ctx = Context(Settings(), Options())
    ctx.state["bluegreen"] = _timeline(runs={BLUE: [bg.Span(0, 130), bg.Span(300, 400)], GREEN: [bg.Span(100, 400)]})
    result = bg.measure_bg_cutover(ctx)
    assert result.status is Status.FAIL and "was up again" in result.summary, result
    ctx.state["bluegreen"] = _timeline(runs={BLUE: [bg.Span(0, 130)], GREEN: [bg.Span(100, 400)]})
    clean = bg.measure_bg_cutover(ctx)
    assert clean.status is Status.MANUAL and clean.manual is bg.CUTOVER
    assert clean.summary.startswith(f"blue {BLUE} went down at 00:02:10 UTC while green {GREEN} stayed up")

"""The leak score: a documented function of the RSS slope and R² where 10 MiB/h of steady growth is 0.5."""

import math
import random

import pytest

from k2cli.observe.memory import MIB, MemorySampler, leak_score, rss_trend, score_of


def steady(mib_per_hour, n=120, step=30.0, base=200 * MIB):
    return [(i * step, base + mib_per_hour * MIB * (i * step) / 3600.0) for i in range(n)]


@pytest.mark.parametrize(("rate", "score"), [(10, 0.5), (30, 0.75), (40, 0.8), (90, 0.9), (1, 1 / 11)])
def test_steady_growth_scores(rate, score):
    assert leak_score(steady(rate)) == pytest.approx(score, abs=1e-9)


def test_trend_recovers_slope_and_perfect_fit():
    slope, r2 = rss_trend(steady(25))
    assert slope == pytest.approx(25) and r2 == pytest.approx(1.0)


def test_flat_shrinking_and_too_few_samples_score_zero():
    assert leak_score(steady(0)) == 0.0
    assert leak_score(steady(-50)) == 0.0
    assert leak_score(steady(100, n=9)) == 0.0
    assert leak_score([]) == 0.0
    assert leak_score([(5.0, 100.0)] * 20) == 0.0  # same instant: no slope


def test_noise_without_trend_is_damped_by_r2():
    rng = random.Random(3)
    noisy = [(i * 30.0, 200 * MIB + rng.uniform(-20, 20) * MIB) for i in range(120)]
    assert leak_score(noisy) < 0.2
    trend_plus_noise = [(t, rss + rng.uniform(-0.5, 0.5) * MIB) for t, rss in steady(60)]
    assert 0.8 < leak_score(trend_plus_noise) < 6 / 7 + 1e-9


def test_score_is_monotonic_in_slope_and_bounded():
    scores = [leak_score(steady(r)) for r in (1, 5, 10, 20, 50, 1000)]
    assert scores == sorted(scores) and all(0 <= s < 1 for s in scores)
    assert not any(math.isnan(s) for s in scores)


def test_sampler_reads_this_process():
    sampler = MemorySampler(window=3)
    for i in range(5):
        reading = sampler.sample(float(i))
    assert reading.rss > 10 * MIB and reading.vms >= reading.rss
    assert len(sampler.samples) == 3 and reading.score == 0.0


def test_score_of_is_the_pure_formula():
    assert score_of(10, 1.0) == 0.5
    assert score_of(10, 0.5) == 0.25
    assert score_of(30, 1.0) == pytest.approx(0.75)
    assert score_of(0, 1.0) == 0.0 and score_of(-5, 1.0) == 0.0 and score_of(50, 0.0) == 0.0

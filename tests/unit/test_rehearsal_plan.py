"""The rehearsal's plan: window-scaled intervals, names apart from the operator's, the environment it runs with."""

from pathlib import Path

import pytest

from k2cli.checks.rehearsal import environment, names, timing
from k2cli.errors import ConfigError
from k2cli.settings import Settings
from k2cli.soak.weekly import span


@pytest.mark.parametrize("minutes", [1, 2, 5, 30, 600])
def test_the_window_holds_about_12_rotations_and_60_pings(minutes):
    t = timing(minutes)
    assert t.window_s == minutes * 60
    # whole counts off by one stay inside the weekly report's 20% tolerance
    assert t.rotations >= 6 and 1 / t.rotations <= 0.2
    assert t.pings >= 30
    assert 10 <= t.rotation_interval <= 4 * 3600 and 2 <= t.ping_interval <= 180


def test_long_rehearsals_keep_production_intervals():
    t = timing(7 * 24 * 60)
    assert t.rotation_interval == 4 * 3600 and t.ping_interval == 180


def test_too_short_a_rehearsal_names_the_flag():
    with pytest.raises(ConfigError) as info:
        timing(0.5)
    assert info.value.setting == "--rehearse"


def test_names_never_touch_the_operators_topics_table_or_group():
    s = Settings()
    n = names(s, Path("/tmp/w"), "abc123")
    assert n.topic["binance"] == "market.crypto.trades.binance.rehearsal-abc123"
    assert n.topic["kraken"] == "market.crypto.trades.kraken.rehearsal-abc123"
    assert n.table == "market_data.trades_v2_rehearsal_abc123"
    assert n.group == "k2-iceberg-writer-crypto-v2.rehearsal-abc123"
    assert n.dlq_dir == Path("/tmp/w/dlq")
    assert not set(n.topics) & set(s.consumer_topics)


def test_environment_points_everything_at_the_rehearsal():
    s = Settings(thresholds={"post_lag_max_messages": 500.0, "prod_window_days": 7.0})
    t = timing(2)
    n = names(s, Path("/tmp/w"), "abc123")
    urls = {"binance": "wss://127.0.0.1:1/stream", "kraken": "wss://127.0.0.1:2/v2"}
    env = environment(s, t, n, urls, Path("/tmp/w/ca.pem"))
    assert env["K2_BINANCE_URL"] == env["K2_BINANCE_FAILOVER_URLS"] == urls["binance"]
    assert env["K2_KRAKEN_URL"] == urls["kraken"] and env["K2_SSL_VERIFY"] == "true"
    assert env["K2_CA_BUNDLE"] == "/tmp/w/ca.pem"
    assert env["K2_CONSUMER_TOPICS"].split(",") == list(n.topics)
    assert env["K2_TABLE"] == n.table and env["K2_CONSUMER_GROUP"] == n.group and env["K2_DLQ_DIR"] == "/tmp/w/dlq"
    assert float(env["K2_ROTATION_INTERVAL"]) == t.rotation_interval
    pairs = dict(item.split("=") for item in env["K2_THRESHOLDS"].split(","))
    assert float(pairs["post_lag_max_messages"]) == 500  # the operator's own limits still hold
    assert float(pairs["prod_window_days"]) * 86400 == pytest.approx(120)
    assert float(pairs["post_error_window_s"]) == 120 and float(pairs["post_throughput_window_s"]) == 120


def test_environment_round_trips_through_the_settings(monkeypatch):
    t = timing(3)
    s = Settings()
    env = environment(s, t, names(s, Path("/tmp/w"), "x"), {"binance": "wss://h:1/stream", "kraken": "wss://h:2/v2"},
                      Path("/tmp/ca.pem"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from k2cli.settings import load_settings

    loaded = load_settings()
    assert loaded.rotation_interval == t.rotation_interval and loaded.ping_interval == t.ping_interval
    assert loaded.threshold("prod_window_days", 7) * 86400 == pytest.approx(180)


@pytest.mark.parametrize("seconds,text", [(30, "30 s"), (90, "1.5 min"), (14400, "4 h"), (86400, "1 day"),
                                          (7 * 86400, "7 days")])
def test_span_reads_like_people_say_it(seconds, text):
    assert span(seconds) == text

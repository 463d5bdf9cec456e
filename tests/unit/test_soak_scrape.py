"""Reading the children's /metrics text into soak counters, with the stream's real metric families."""

from prometheus_client import generate_latest

from k2cli.observe.metrics import StreamMetrics
from k2cli.soak.scrape import consumer_reading, parse, stream_reading


def test_stream_reading_from_the_real_families():
    m = StreamMetrics("binance")
    m.messages_received.labels("BTCUSDT").inc(7)
    m.messages_received.labels("ETHUSDT").inc(3)
    m.reconnects.labels("idle_timeout").inc()
    m.reconnects.labels("pong_timeout").inc(2)
    m.rotations.labels("scheduled").inc()
    m.pings_sent.inc(4)
    m.pong_timeouts.inc(2)
    m.frame_errors.labels("binance", "invalid_json").inc()
    m.leak_score.set(0.25)
    r = stream_reading(parse(generate_latest(m.registry).decode()), "binance")
    assert r.messages == 10 and r.reconnects == {"idle_timeout": 1, "pong_timeout": 2}
    assert (r.rotations, r.pings, r.pong_timeouts, r.integrity_errors, r.leak_score) == (1, 4, 2, 1, 0.25)


def test_declared_families_without_series_read_as_zero_not_missing():
    r = stream_reading(parse(generate_latest(StreamMetrics("kraken").registry).decode()), "kraken")
    assert r.messages == 0 and r.reconnects == {} and r.rotations == 0 and r.integrity_errors == 0


def test_unknown_names_are_missing():
    r = stream_reading(parse("# HELP x y\n# TYPE x gauge\nx 1\n"), "binance")
    assert r.messages is None and r.integrity_errors is None


def test_consumer_reading():
    text = ("# TYPE k2_messages_consumed_total counter\nk2_messages_consumed_total{topic=\"t\"} 12\n"
            "# TYPE k2_dlq_entries_total counter\nk2_dlq_entries_total 1\n")
    r = consumer_reading(parse(text))
    assert r.consumed == 12 and r.dlq_entries == 1 and r.written is None

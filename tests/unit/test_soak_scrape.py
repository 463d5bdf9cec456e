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


def test_consumer_reading_from_the_real_families():
    from k2cli.observe.consumer_metrics import ConsumerMetrics

    m = ConsumerMetrics()
    m.consumed.labels("t1").inc(10)
    m.consumed.labels("t2").inc(2)
    m.written.labels("t1").inc(9)
    m.total_lag.set(40)
    m.dlq_entries.labels("decode").inc()
    m.breaker_state.labels("iceberg").set(2)
    r = consumer_reading(parse(generate_latest(m.registry).decode()))
    assert (r.consumed, r.written, r.lag, r.dlq_entries, r.breaker_state) == (12, 9, 40, 1, 2)


def test_consumer_reading_of_a_stranger_is_all_missing():
    r = consumer_reading(parse("# TYPE x gauge\nx 1\n"))
    assert (r.consumed, r.written, r.lag, r.dlq_entries, r.breaker_state) == (None, None, None, None, None)

"""Rough edges a new user meets first, each through the real `k2` process."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from tests.conftest import run_k2

pytestmark = pytest.mark.integration


UTC_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_consume_against_a_refusing_broker_logs_k2_lines_in_utc(k2_env: dict[str, str], log_format: str) -> None:
    env = {**k2_env, "K2_KAFKA_BOOTSTRAP_SERVERS": "localhost:1", "K2_CONSUMER_STARTUP_TIMEOUT": "3",
           "TZ": "America/New_York"}
    proc = run_k2(["consume", "--max-messages", "1", "--metrics-port", "0", "--log-format", log_format,
                   "--log-level", "info"], env=env, timeout=90)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr
    assert not [line for line in lines if line.startswith("%")], proc.stderr  # librdkafka's own `%3|…|FAIL|` lines
    assert 2 <= len(lines) <= 15, proc.stderr
    assert lines[-1].startswith("k2: error: Kafka unavailable") and "K2_KAFKA_BOOTSTRAP_SERVERS" in lines[-1]
    now = dt.datetime.now(dt.UTC)
    for line in lines[:-1]:  # every log line: UTC ISO 8601 (the local zone here is five hours behind)
        stamp = json.loads(line)["time"] if log_format == "json" else line.split(" ", 1)[0]
        assert UTC_ISO.fullmatch(stamp), line
        assert abs((dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) - now).total_seconds()) < 300, line


def _stream_and_consume(env: dict[str, str], unique: str) -> list[tuple[int, str, float]]:
    """Exit code, last stderr line and seconds of a bounded stream and consume (nothing listens on the ws URL)."""
    import time

    out = []
    for args in (["stream", "binance", "--url", "ws://127.0.0.1:1", "--symbols", "BTCUSDT", "--max-messages", "1",
                  "--topic", f"k2test.edges.{unique}", "--metrics-port", "0"],
                 ["consume", "--topics", f"k2test.edges.{unique}", "--group", f"k2test-edges-{unique}",
                  "--max-messages", "1", "--metrics-port", "0"]):
        began = time.monotonic()
        proc = run_k2(args, env=env, timeout=90)
        lines = proc.stderr.strip().splitlines()
        out.append((proc.returncode, lines[-1] if lines else "", time.monotonic() - began))
    return out


def test_a_registry_nobody_answers_fails_stream_and_consume_alike_and_fast(k2_env: dict[str, str],
                                                                          unique: str) -> None:
    from tests.integration.stream_support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    # consume retries an unreachable registry for its startup timeout (a registry restarting is not a wrong URL)
    (s_code, s_line, s_took), (c_code, c_line, c_took) = _stream_and_consume(
        {**k2_env, "K2_SCHEMA_REGISTRY_URL": url, "K2_CONSUMER_STARTUP_TIMEOUT": "3"}, unique)
    assert s_code == c_code == 3 and s_line == c_line, (s_line, c_line)
    assert s_line.startswith(f"k2: error: Schema Registry unreachable at {url}") and "K2_SCHEMA_REGISTRY_URL" in s_line
    assert s_took < 15 and 2 <= c_took < 20  # consume waited (about its 3 s startup window), then gave up


def test_a_wrong_registry_path_is_one_clear_line_and_exit_2_in_stream_and_consume(k2_env: dict[str, str],
                                                                                 unique: str) -> None:
    url = "http://localhost:8081/wrong"
    (s_code, s_line, _), (c_code, c_line, _) = _stream_and_consume({**k2_env, "K2_SCHEMA_REGISTRY_URL": url}, unique)
    assert s_code == c_code == 2 and s_line == c_line, (s_line, c_line)
    assert s_line == (f"k2: error: {url} is not a Schema Registry API (HTTP 404; check the URL's path) "
                      "(setting K2_SCHEMA_REGISTRY_URL)")


def test_consuming_only_poison_says_so_and_exits_1(k2_env: dict[str, str], unique: str) -> None:
    from tests.integration.consume_support import Producer, create_topic, delete_topic, run_consume

    topic = f"k2test.edges.poison.{unique}"
    create_topic(topic, partitions=1)
    try:
        p = Producer(topic)
        for i in range(5):
            p.send(b"\x00\x00\x00\x00\x01not avro " + bytes([i]))
        p.flush()
        env = {**k2_env, "K2_TABLE": f"k2test_edges_{unique}.trades_v2"}
        code, stats, err = run_consume(env, "--topics", topic, "--group", f"k2test-edges-{unique}",
                                       "--max-messages", "5")
    finally:
        delete_topic(topic)
    assert code == 1, err
    assert stats["dlq_entries"] == 5 and stats["messages_written"] == 0 and stats["ok"] is False
    assert err.strip().splitlines()[-1] == ("k2: error: all 5 records were dead-lettered, nothing was written "
                                            "(see `k2 dlq list`)")


def test_ctrl_c_on_consume_exits_130_and_sigterm_still_0(k2_env: dict[str, str], unique: str) -> None:
    import signal
    import time

    from tests.integration.consume_support import create_topic, delete_topic, start_consume, stop

    topic = f"k2test.edges.sigint.{unique}"
    create_topic(topic, partitions=1)
    env = {**k2_env, "K2_TABLE": f"k2test_edges_{unique}.trades_v2"}
    try:
        results = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            proc = start_consume(env, "--topics", topic, "--group", f"k2test-edges-{unique}-{sig.name}")
            time.sleep(6)  # past start-up: the signal handlers are in place
            results[sig.name] = stop(proc, sig)
    finally:
        delete_topic(topic)
    code, stats, err = results["SIGINT"]
    assert code == 130 and stats["stopped_by"] == "SIGINT" and stats["ok"] is False, err
    assert err.strip().splitlines()[-1].startswith("k2: error: interrupted (SIGINT) after committing what it had")
    code, stats, err = results["SIGTERM"]
    assert code == 0 and stats["stopped_by"] == "SIGTERM" and stats["ok"] is True, err


def test_until_caught_up_stops_a_consumer_whose_max_messages_exceeds_the_topic(k2_env: dict[str, str],
                                                                               unique: str) -> None:
    from tests.integration.consume_support import Producer, create_topic, delete_topic, make_trade, run_consume

    topic = f"k2test.edges.caughtup.{unique}"
    create_topic(topic, partitions=2)
    try:
        p = Producer(topic)
        p.send_trades([make_trade(i, seq=1000 + i) for i in range(30)])
        p.flush()
        env = {**k2_env, "K2_TABLE": f"k2test_edges_{unique}.trades_v2"}
        code, stats, err = run_consume(env, "--topics", topic, "--group", f"k2test-edges-{unique}",
                                       "--max-messages", "1000", "--until-caught-up", timeout=60)
    finally:
        delete_topic(topic)
    assert code == 0, err
    assert stats["stopped_by"] == "caught_up" and stats["messages_written"] == 30 and stats["ok"] is True


def test_a_stream_of_only_bad_frames_says_so_and_exits_1(k2_env: dict[str, str], tmp_path, unique: str) -> None:
    from tests.integration.consume_support import delete_topic
    from tests.integration.stream_support import create_topic, run_stream, simulator

    tape = tmp_path / "garbage.txt"
    tape.write_text("".join(f"not json {i} {{\n" for i in range(20)))
    topic = f"k2test.edges.garbage.{unique}"
    create_topic(topic, partitions=1)
    try:
        with simulator("binance", ["--tape", str(tape), "--rate", "50", "--symbols", "BTCUSDT"], k2_env,
                       tmp_path) as url:
            code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT", "--topic", topic,
                                                        "--duration", "3"], k2_env)
    finally:
        delete_topic(topic)
    assert code == 1, err
    assert summary["produced"] == 0 and sum(summary["frame_errors"].values()) >= 20
    assert err.strip().splitlines()[-1].startswith("k2: error: no trade produced: every frame with data was bad")

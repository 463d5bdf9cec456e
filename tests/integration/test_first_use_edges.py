"""Rough edges a new user meets first, each through the real `k2` process."""

from __future__ import annotations

import pytest

from tests.conftest import run_k2

pytestmark = pytest.mark.integration


def test_consume_against_a_refusing_broker_prints_k2_lines_not_raw_librdkafka(k2_env: dict[str, str]) -> None:
    env = {**k2_env, "K2_KAFKA_BOOTSTRAP_SERVERS": "localhost:1", "K2_CONSUMER_STARTUP_TIMEOUT": "3"}
    proc = run_k2(["consume", "--max-messages", "1", "--metrics-port", "0"], env=env, timeout=90)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr
    assert not [line for line in lines if line.startswith("%")], proc.stderr  # librdkafka's own `%3|…|FAIL|` lines
    assert len(lines) <= 15, proc.stderr
    assert lines[-1].startswith("k2: error: Kafka unavailable") and "K2_KAFKA_BOOTSTRAP_SERVERS" in lines[-1]


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
    (s_code, s_line, s_took), (c_code, c_line, c_took) = _stream_and_consume(
        {**k2_env, "K2_SCHEMA_REGISTRY_URL": url}, unique)
    assert s_code == c_code == 3 and s_line == c_line, (s_line, c_line)
    assert s_line.startswith(f"k2: error: Schema Registry unreachable at {url}") and "K2_SCHEMA_REGISTRY_URL" in s_line
    assert s_took < 15 and c_took < 15


def test_a_wrong_registry_path_is_one_clear_line_and_exit_2_in_stream_and_consume(k2_env: dict[str, str],
                                                                                 unique: str) -> None:
    url = "http://localhost:8081/wrong"
    (s_code, s_line, _), (c_code, c_line, _) = _stream_and_consume({**k2_env, "K2_SCHEMA_REGISTRY_URL": url}, unique)
    assert s_code == c_code == 2 and s_line == c_line, (s_line, c_line)
    assert s_line == (f"k2: error: {url} is not a Schema Registry API (HTTP 404; check the URL's path) "
                      "(setting K2_SCHEMA_REGISTRY_URL)")

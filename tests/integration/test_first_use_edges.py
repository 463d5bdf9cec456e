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

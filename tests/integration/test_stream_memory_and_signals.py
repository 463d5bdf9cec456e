"""The leak score reacts to a real leak (the test-only K2_DEBUG_LEAK_MB_PER_MIN fault); SIGINT flushes."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.conftest import require
from tests.integration.stream_support import (
    create_topic,
    parse_summary,
    read_topic,
    run_stream,
    simulator,
    stream_cmd,
    stream_env,
)

pytestmark = pytest.mark.integration


def test_debug_leak_fault_drives_the_leak_score_up(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    env = stream_env(k2_env, debug_leak_mb_per_min=600, memory_sample_interval=0.5)
    with simulator("binance", ["--rate", "50", "--symbols", "BTCUSDT"], env, tmp_path) as url:
        code, summary, err = run_stream("binance", ["--url", url, "--symbols", "BTCUSDT", "--topic",
                                                    f"test.stream.leak.{unique}", "--duration", "10"], env)
    assert code == 0, err
    assert "debug fault on" in err
    assert summary["leak_score"] > 0.8, summary
    assert summary["rss_bytes"] > 100 * 2**20  # about 10 MiB retained per second


def test_sigint_stops_flushes_and_exits_130(tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.stream.sigint.{unique}"
    create_topic(topic)
    with simulator("binance", ["--rate", "300", "--symbols", "BTCUSDT,ETHUSDT"], k2_env, tmp_path) as url:
        proc = subprocess.Popen(stream_cmd("binance", ["--url", url, "--symbols", "BTCUSDT,ETHUSDT", "--topic",
                                                       topic]), env=k2_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(6)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # Ctrl-C says so: 128 + SIGINT, after the flush
    assert err.strip().splitlines()[-1].startswith("k2: interrupted (SIGINT) after flushing")
    summary = parse_summary(out)
    assert summary["status"] == "interrupted" and summary["stopped_by"] == "signal" and summary["signal"] == "SIGINT"
    assert summary["produced"] > 300 and summary["undelivered"] == 0
    assert len(read_topic(topic)) == summary["produced"]

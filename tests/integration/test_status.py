"""`k2 status` against a running pipeline: a stream (from `k2 simulate`, scraped by the stack's Prometheus on the
exchange's default metrics port) and a consumer show up with per-partition lag and exit 0; each stopped in turn
makes it exit 2."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from k2cli.exchanges import registry
from tests.conftest import require, run_k2
from tests.integration.consume_support import delete_topic, start_consume, stop
from tests.integration.stream_support import create_topic, simulator, stream_cmd

pytestmark = pytest.mark.integration

SYMBOLS = "BTCUSDT,ETHUSDT"


def _status(env: dict[str, str], group: str, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = run_k2(["status", "--stream", "binance", "--group", group, "--format", "json", *extra], env=env, timeout=60)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _until(env: dict[str, str], group: str, done: Any, timeout: float, *extra: str) -> tuple[int, dict[str, Any]]:
    """Poll `k2 status` until done(code, doc) holds; the last reading is in the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        code, doc = _status(env, group, *extra)
        if done(code, doc):
            return code, doc
        if time.monotonic() > deadline:
            raise AssertionError(f"k2 status never got there in {timeout:.0f}s: exit {code}, {doc}")
        time.sleep(1)


def _all_shown(code: int, doc: dict[str, Any]) -> bool:
    stream, group = doc["streams"][0], doc["groups"][0]
    return (code == 0 and stream["up"] and (stream["trades_per_s"] or 0) > 0 and len(group["partitions"]) == 3
            and doc["table"]["status"] == "PASS" and group["last_commit_age_s"] is not None)


def test_status_shows_stream_and_consumer_and_fails_when_either_stops(k2_env: dict[str, str], tmp_path: Path,
                                                                      unique: str) -> None:
    require("kafka", "schema-registry", "prometheus")
    topic, group = f"k2test.status.{unique}", f"k2test-status-{unique}"
    # a static member stays in its group for the session timeout after it stops: keep that at the broker's minimum
    env = {**k2_env, "K2_TABLE": f"k2test_status_{unique}.trades_v2", "K2_CONSUMER_SESSION_TIMEOUT": "6"}
    create_topic(topic, partitions=3)
    port = registry.get("binance").default_metrics_port  # the port the stack's Prometheus scrapes
    try:
        with simulator("binance", ["--symbols", SYMBOLS, "--rate", "50"], env, tmp_path) as url:
            log = open(tmp_path / "stream.log", "w")  # noqa: SIM115 - closed below
            stream = subprocess.Popen(stream_cmd("binance", ["--url", url, "--symbols", SYMBOLS, "--topic", topic,
                                                             "--metrics-port", str(port)]),
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
            consumer = start_consume(env, "--topics", topic, "--group", group, "--batch-size", "20")
            try:
                code, doc = _until(env, group, _all_shown, 90)
                stream_row, group_row = doc["streams"][0], doc["groups"][0]
                assert [s["name"] for s in doc["streams"]] == ["binance"] and stream_row["status"] == "PASS"
                assert group_row["members"] == 1 and group_row["status"] == "PASS"
                assert sorted(p["partition"] for p in group_row["partitions"]) == [0, 1, 2]
                assert all(p["topic"] == topic and isinstance(p["lag"], int) and p["end"] >= (p["committed"] or 0)
                           for p in group_row["partitions"])
                assert group_row["lag"] == sum(p["lag"] for p in group_row["partitions"])
                assert doc["table"]["snapshots"] > 0 and "BINANCE" in doc["table"]["newest_trade"]
                assert all(s["status"] == "PASS" for s in doc["services"]) and doc["exit_code"] == 0

                stop(consumer)
                code, doc = _until(env, group, lambda c, d: d["groups"][0]["members"] == 0, 30)
                assert code == 2 and doc["groups"][0]["status"] == "FAIL", doc
                assert any(p.startswith(f"group {group}: no members") for p in doc["problems"])

                stream.terminate()
                stream.wait(20)
                code, doc = _until(env, group, lambda c, d: d["streams"][0]["status"] == "FAIL", 30, "--no-services")
                assert code == 2 and doc["streams"][0]["up"] is False
            finally:
                for proc in (stream, consumer):
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(10)
                log.close()
    finally:
        delete_topic(topic)


def test_watch_refreshes_until_ctrl_c_and_exits_with_the_last_verdict(k2_env: dict[str, str]) -> None:
    import signal
    import sys

    require("kafka", "prometheus")
    proc = subprocess.Popen([sys.executable, "-m", "k2cli", "status", "--watch", "--interval", "1", "--no-services",
                             "--stream", "binance", "--format", "json"], env=k2_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    views = [json.loads(line) for line in out.splitlines()]
    assert len(views) >= 2, (out, err)
    assert proc.returncode == views[-1]["exit_code"] and views[0]["time"] < views[-1]["time"]

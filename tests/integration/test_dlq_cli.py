"""k2 dlq list/show/stats/purge driven as an operator would, on DLQ files written by the real DLQ writer."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from k2cli.reliability.dlq import DeadLetterQueue, DLQEntry, iter_entries
from tests.conftest import run_k2

pytestmark = pytest.mark.integration


def _write(dlq_dir: Path) -> list[DLQEntry]:
    now = dt.datetime.now(dt.UTC)

    def at(days: float) -> str:
        return (now - dt.timedelta(days=days)).isoformat()

    consume = [
        DLQEntry(error="magic byte is 0x01", error_type="bad_magic_byte", origin="consume", timestamp=at(30),
                 source={"topic": "market.crypto.trades.binance", "partition": 2, "offset": 41, "key": "BTCUSDT",
                         "timestamp_ms": 1}, value=b"\x01\x02\x03"),
        DLQEntry(error="schema id 999 is not in the registry", error_type="unknown_schema_id", origin="consume",
                 timestamp=at(10), source={"topic": "market.crypto.trades.kraken", "partition": 0, "offset": 7,
                                           "key": None}, value=b"\x00\x00\x00\x03\xe7abc"),
        DLQEntry(error="price: has more than 8 decimal places", error_type="invalid_value", origin="consume",
                 timestamp=at(1), source={"topic": "market.crypto.trades.binance", "partition": 0, "offset": 99,
                                          "key": "ETHUSDT"}, value=b"\x00\x00\x00\x00\x01zz"),
    ]
    stream = [
        DLQEntry(error="missing field 'p'", error_type="missing_field", origin="stream", timestamp=at(20),
                 source={"exchange": "binance", "url": "wss://stream.binance.com:9443/stream"},
                 raw_frame='{"stream":"btcusdt@trade","data":{"e":"trade"}}'),
        DLQEntry(error="unknown pair", error_type="unknown_symbol", origin="stream", timestamp=at(0.1),
                 source={"exchange": "kraken", "url": "wss://ws.kraken.com"}, raw_frame='[1,[],"trade","FOO/BAR"]'),
    ]
    DeadLetterQueue(dlq_dir, "consume").write(consume)
    DeadLetterQueue(dlq_dir, "stream").write(stream)
    return consume + stream


@pytest.fixture
def dlq(k2_env: dict[str, str]) -> tuple[dict[str, str], Path, list[DLQEntry]]:
    dlq_dir = Path(k2_env["K2_DLQ_DIR"])
    return k2_env, dlq_dir, _write(dlq_dir)


def test_list_shows_both_origins_oldest_first(dlq: tuple[dict[str, str], Path, list[DLQEntry]]) -> None:
    env, _, entries = dlq
    rows = json.loads(run_k2(["dlq", "list", "--format", "json"], env=env, check=True).stdout)
    by_age = sorted(entries, key=lambda e: e.time)
    assert [r["id"] for r in rows] == [e.id for e in by_age]
    first = rows[0]
    assert (first["origin"], first["error_type"], first["topic"], first["partition"], first["offset"]) == (
        "consume", "bad_magic_byte", "market.crypto.trades.binance", 2, 41)
    assert {r["origin"] for r in rows} == {"consume", "stream"}
    assert [r["replayable"] for r in rows if r["origin"] == "stream"] == [False, False]
    only = json.loads(run_k2(["dlq", "list", "-f", "json", "--origin", "stream", "--since", "7d"], env=env,
                             check=True).stdout)
    assert [r["error_type"] for r in only] == ["unknown_symbol"]
    table = run_k2(["dlq", "list"], env=env, check=True).stdout
    assert "unknown_schema_id" in table and entries[0].id[:12] in table


def test_show_gives_the_original_bytes(dlq: tuple[dict[str, str], Path, list[DLQEntry]]) -> None:
    env, _, entries = dlq
    shown = json.loads(run_k2(["dlq", "show", entries[1].id[:8], "--format", "json"], env=env, check=True).stdout)
    assert shown["id"] == entries[1].id
    assert shown["value_b64"] == "AAAAA+dhYmM="
    assert shown["source"]["topic"] == "market.crypto.trades.kraken"
    frame = json.loads(run_k2(["dlq", "show", entries[3].id, "-f", "json"], env=env, check=True).stdout)
    assert frame["raw_frame"] == entries[3].raw_frame and frame["replayable"] is False
    missing = run_k2(["dlq", "show", "doesnotexist"], env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("k2: error: no DLQ entry")


def test_stats_counts(dlq: tuple[dict[str, str], Path, list[DLQEntry]]) -> None:
    env, _, entries = dlq
    stats = json.loads(run_k2(["dlq", "stats", "--format", "json"], env=env, check=True).stdout)
    assert stats["entries"] == 5
    assert stats["by_origin"] == {"consume": 3, "stream": 2}
    assert stats["by_error_type"] == {"bad_magic_byte": 1, "unknown_schema_id": 1, "invalid_value": 1,
                                      "missing_field": 1, "unknown_symbol": 1}
    assert len(stats["by_file"]) == 2
    assert stats["oldest"] == entries[0].time.isoformat(timespec="microseconds")


def test_purge_removes_exactly_what_it_lists(dlq: tuple[dict[str, str], Path, list[DLQEntry]]) -> None:
    env, dlq_dir, entries = dlq
    refused = run_k2(["dlq", "purge", "--older-than", "7d", "--format", "json"], env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert len(list(iter_entries(dlq_dir))) == 5
    dry = json.loads(run_k2(["dlq", "purge", "--older-than", "7d", "--dry-run", "-f", "json"], env=env,
                            check=True).stdout)
    assert dry["removed"] == 0 and len(list(iter_entries(dlq_dir))) == 5
    done = json.loads(run_k2(["dlq", "purge", "--older-than", "7d", "--yes", "--format", "json"], env=env,
                             check=True).stdout)
    listed = {r["id"] for r in done["entries"]}
    assert listed == {e.id for e in entries if e.time < dt.datetime.now(dt.UTC) - dt.timedelta(days=7)}
    assert listed == set(r["id"] for r in dry["entries"])
    assert done["removed"] == done["listed"] == 3
    remaining = {e.id for e in iter_entries(dlq_dir)}
    assert remaining == {e.id for e in entries} - listed
    again = json.loads(run_k2(["dlq", "purge", "--older-than", "7d", "--yes", "-f", "json"], env=env,
                              check=True).stdout)
    assert again["listed"] == again["removed"] == 0


def test_bad_flags_are_one_line(dlq: tuple[dict[str, str], Path, list[DLQEntry]]) -> None:
    env, _, _ = dlq
    for args in (["dlq", "purge", "--older-than", "soon", "--yes"], ["dlq", "list", "--since", "last tuesday"],
                 ["dlq", "replay"], ["dlq", "list", "--origin", "elsewhere"]):
        proc = run_k2(args, env=env)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("k2: error:") and "Traceback" not in proc.stderr

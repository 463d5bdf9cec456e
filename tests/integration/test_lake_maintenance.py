"""`k2 lake` against real catalogs (SQLite, PostgreSQL) and, for compaction beside a running consumer, the real
broker and registry: rows rewritten exactly, the consumer's state carried, kill -9 around a compaction loses and
duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from k2cli.lake import dedupstate as dd
from k2cli.lake import offsets as off
from tests.conftest import require, run_k2
from tests.integration.consume_support import (
    Producer,
    load_table,
    make_trade,
    run_consume,
    scratch_topic,
    start_consume,
    table_rows,
    wait_for,
)

pytestmark = pytest.mark.integration

DAY_US = 86_400_000_000
PG_URI = "postgresql+psycopg2://k2:k2@localhost:5432/k2_catalog"


def _catalog_env(k2_env: dict[str, str], kind: str, unique: str) -> dict[str, str]:
    if kind == "sqlite":
        return dict(k2_env)
    require("postgres")
    return dict(k2_env, K2_ICEBERG_CATALOG_URI=PG_URI, K2_TABLE=f"lake_{unique}.trades_v2",
                K2_ICEBERG_WAREHOUSE=f"file://{k2_env['K2_DATA_DIR']}/pg-warehouse")


def _drop(env: dict[str, str]) -> None:
    if "K2_ICEBERG_CATALOG_URI" not in env:
        return
    from pyiceberg.catalog.sql import SqlCatalog

    cat = SqlCatalog("k2", uri=env["K2_ICEBERG_CATALOG_URI"], warehouse=env["K2_ICEBERG_WAREHOUSE"])
    cat.drop_table(env["K2_TABLE"])
    cat.drop_namespace(env["K2_TABLE"].split(".")[0])


def _writer(env: dict[str, str]) -> Any:
    from k2cli.lake.catalog import open_catalog
    from k2cli.lake.writer import TableWriter
    from k2cli.settings import Settings

    s = Settings(data_dir=Path(env["K2_DATA_DIR"]), iceberg_catalog_uri=env.get("K2_ICEBERG_CATALOG_URI", ""),
                 iceberg_warehouse=env.get("K2_ICEBERG_WAREHOUSE", ""))
    return TableWriter(open_catalog(s), env.get("K2_TABLE", "market_data.trades_v2"), snapshots_to_keep=1000)


def _commit_batches(writer: Any, batches: int, rows: int, first_batch: int = 0) -> None:
    """Batches of trades over two day partitions, each with its offsets and dedup ids."""
    import pyarrow as pa

    from k2cli import trade

    for b in range(first_batch, first_batch + batches):
        recs = [make_trade(b * rows + i, symbol=("BTCUSDT", "ETHUSDT")[i % 2]) for i in range(rows)]
        for r in recs[: rows // 2]:  # half of each batch on the next day
            r["timestamp"] += DAY_US
        data = pa.Table.from_pylist(recs, schema=trade.arrow_schema())
        ids = dd.DedupState(ids={("BINANCE", "BTCUSDT"): [(b * rows, b * rows + rows - 1)]})
        writer.commit(data, {("t", 0): (b * rows, (b + 1) * rows)}, {("t", 0): b * rows if b else None},
                      records=rows, dedup=ids)


def _k2_json(args: list[str], env: dict[str, str]) -> Any:
    proc = run_k2([*args, "--format", "json"], env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["message_id"]: r for r in rows}


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
def test_compact_expire_orphans_keep_rows_exact_and_the_consumers_state(k2_env, unique, catalog):
    env = _catalog_env(k2_env, catalog, unique)
    try:
        writer = _writer(env)
        _commit_batches(writer, 12, 20)
        before = table_rows(env, env.get("K2_TABLE", "market_data.trades_v2"))
        summary_before = load_table(env, writer.table_name).current_snapshot().summary.additional_properties
        stats = _k2_json(["lake", "stats"], env)
        assert [(p["partition"], p["files"], p["records"]) for p in stats["partitions"]] == [
            ("2026-01-01", 12, 120), ("2026-01-02", 12, 120)]
        assert stats["snapshots"] == 12 and stats["totals"]["small_files"] == 24

        result = _k2_json(["lake", "compact"], env)
        assert (result["files_removed"], result["files_added"], result["records"]) == (24, 2, 240)
        assert result["partitions"] == ["2026-01-01", "2026-01-02"]
        table = load_table(env, writer.table_name)
        after = table.scan().to_arrow().to_pylist()
        assert _by_id(after) == _by_id(before) and len(after) == 240  # every value, Decimals exact
        assert all(isinstance(r["price"], Decimal) for r in after)
        props = table.current_snapshot().summary.additional_properties
        assert props[off.OFFSETS_KEY] == summary_before[off.OFFSETS_KEY]
        assert props[dd.DEDUP_KEY] == summary_before[dd.DEDUP_KEY]
        assert table.current_snapshot().summary.operation.value == "overwrite"
        stats = _k2_json(["lake", "stats"], env)
        assert [(p["partition"], p["files"], p["records"]) for p in stats["partitions"]] == [
            ("2026-01-01", 1, 120), ("2026-01-02", 1, 120)]

        # the consumer continues from the compaction snapshot: same offsets, no conflict, dedup ids kept
        assert writer.offsets() == {("t", 0): 240}
        assert dd.contains(writer.dedup_state().ids[("BINANCE", "BTCUSDT")], 239)
        _commit_batches(writer, 1, 20, first_batch=12)

        expired = _k2_json(["lake", "expire", "--keep", "1"], env)
        assert len(expired["expired"]) == 12 + 2 + 1 - 1 and expired["retained"] == 1  # one compaction commit a day
        assert expired["files_deleted"] >= 24  # the rewritten small files among them
        assert len(load_table(env, writer.table_name).scan().to_arrow()) == 260

        stray = Path(table.location().removeprefix("file://")) / "data" / "stray.parquet"
        stray.write_bytes(b"not referenced")
        old = time.time() - 2 * 86400
        os.utime(stray, (old, old))
        listed = _k2_json(["lake", "orphans"], env)
        assert str(stray) in {o["path"] for o in listed["orphans"]} and listed["deleted"] == 0 and stray.exists()
        removed = _k2_json(["lake", "orphans", "--delete"], env)
        assert not stray.exists() and removed["deleted"] == len(removed["orphans"]) >= 1
        rows = load_table(env, writer.table_name).scan().to_arrow()
        assert rows.num_rows == 260 and len(set(rows.column("message_id").to_pylist())) == 260
    finally:
        _drop(env)


def test_lake_operator_mistakes_are_one_line_exit_2(k2_env):
    for args in (["lake", "compact", "--target-size", "huge"], ["lake", "orphans", "--older-than", "1m"],
                 ["lake", "expire", "--older-than", "soon"]):
        proc = run_k2(args, env=k2_env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = run_k2(["lake", "stats"], env=k2_env)  # no table yet
    assert proc.returncode == 1 and "does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_k2(["lake", "stats"], env=dict(k2_env, K2_ICEBERG_CATALOG_URI="postgresql+psycopg2://k2:k2@localhost:1/x"))
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.fixture
def topic(unique):
    with scratch_topic("test.lake.compact", unique) as name:
        yield name


def _produce(topic: str, first: int, n: int) -> list[dict[str, Any]]:
    p = Producer(topic)
    recs = [make_trade(i, symbol=("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3]) for i in range(first, first + n)]
    for i, rec in enumerate(recs):
        p.send(p.encode(rec), key=rec["symbol"].encode(), partition=i % 4)
    p.flush()
    return recs


def _compact(env: dict[str, str]) -> dict[str, Any]:
    proc = run_k2(["lake", "compact", "--target-size", "64MB", "--format", "json"], env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _recorded(env: dict[str, str]) -> int:
    """Records the table's current offsets account for (0 before the first commit)."""
    try:
        snap = load_table(env).current_snapshot()
    except Exception:
        return 0
    return sum(off.decode_offsets(snap.summary.additional_properties.get(off.OFFSETS_KEY)).values()) if snap else 0


def test_compaction_beside_a_consumer_killed_9_loses_and_duplicates_nothing(topic, unique, k2_env):
    """Rounds of: consumer committing, a compaction started, the consumer killed -9 during the compaction or just
    after it; then a clean run. The table must hold exactly the records produced to the topic."""
    args = ("--topics", topic, "--flush-interval", "0.2", "--group", f"g-{unique}")
    produced: list[dict[str, Any]] = []
    compactions = []
    for n, delay in enumerate((0.2, 1.0, 2.5)):
        produced += _produce(topic, n * 3000, 3000)  # work for the consumer while the compaction runs
        proc = start_consume(k2_env, *args, "--batch-size", "50")
        seen = _recorded(k2_env)
        wait_for(lambda seen=seen: _recorded(k2_env) >= seen + 200, 60, "four consumer commits")
        compactor = subprocess.Popen([sys.executable, "-m", "k2cli", "lake", "compact", "--target-size", "64MB",
                                      "--format", "json"], env=k2_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        out, err = compactor.communicate(timeout=120)
        assert compactor.returncode == 0, err
        compactions.append(json.loads(out))
    assert sum(c["files_removed"] for c in compactions) > 0, compactions
    # the current snapshot may be a compaction's: it must carry the offsets
    assert off.OFFSETS_KEY in load_table(k2_env).current_snapshot().summary.additional_properties
    recorded = _recorded(k2_env)
    remaining = len(produced) - recorded
    if remaining:
        rc, _, err = run_consume(k2_env, *args, "--batch-size", "1000", "--max-messages", str(remaining))
        assert rc == 0, err
    _compact(k2_env)
    rows = table_rows(k2_env)
    counts = Counter(r["trade_id"] for r in rows)
    assert [tid for tid, n in counts.items() if n > 1] == []
    want = {r["trade_id"]: (r["price"], r["quantity"]) for r in produced}
    got = {r["trade_id"]: (r["price"], r["quantity"]) for r in rows}
    assert set(got) == set(want), f"{len(set(want) - set(got))} missing, {len(set(got) - set(want))} unexpected"
    assert got == want  # Decimals exact


def test_compaction_and_consumer_commits_racing_are_retried_on_fresh_metadata(k2_env):
    """A compaction planned on metadata a consumer commit has since moved on loses the swap, is rebuilt on the
    fresh table and keeps the consumer's new file and offsets; the consumer, now stale, retries on top of it."""
    from k2cli.lake import compaction

    writer = _writer(k2_env)
    _commit_batches(writer, 6, 10)
    stale = load_table(k2_env, writer.table_name)  # the compactor's view, about to be out of date
    _commit_batches(writer, 1, 10, first_batch=6)
    result = compaction.compact(stale, 64 * 1024 * 1024)
    assert result.attempts == result.groups + 1 == 3  # the first swap lost against the consumer's commit
    carried = stale.metadata.snapshot_by_id(result.snapshots[0]).summary.additional_properties
    assert off.decode_offsets(carried[off.OFFSETS_KEY]) == {("t", 0): 70}  # read after the consumer's commit
    _commit_batches(writer, 1, 10, first_batch=7)  # the writer's metadata predates the compaction
    table = load_table(k2_env, writer.table_name)
    ids = table.scan().to_arrow().column("trade_id").to_pylist()
    assert sorted(ids) == sorted(f"BINANCE-{i}" for i in range(80))
    assert off.decode_offsets(table.current_snapshot().summary.additional_properties[off.OFFSETS_KEY]) == {
        ("t", 0): 80}

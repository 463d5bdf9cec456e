"""`k2 consume` under faults, against the real broker, registry and catalogs: SIGKILL at random points, the
Iceberg warehouse or the SQLite catalog unavailable (breaker), two consumers and a rebalance, PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import statistics
import threading
import time
from pathlib import Path

import psutil
import pytest

from k2cli.lake import offsets as off
from tests.conftest import require
from tests.integration.consume_support import (
    Producer,
    TcpRelay,
    dlq_entries,
    free_port,
    load_table,
    make_trade,
    run_consume,
    scale10_value,
    scratch_topic,
    start_consume,
    stop,
    table_rows,
    wait_for,
)
from tests.integration.test_consume import _metric

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(unique):
    with scratch_topic("test.consume.faults", unique) as name:
        yield name


def _fill(topic: str, n: int, poison_every: int = 0, first: int = 0) -> tuple[int, set[tuple[int, bytes]]]:
    """n valid trades (numbered from `first`) round-robin over 4 partitions, plus a bad-magic value every
    poison_every; (total, poison)."""
    p = Producer(topic)
    poison: set[tuple[int, bytes]] = set()
    for i in range(first, first + n):
        rec = make_trade(i, symbol=("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3])
        p.send(p.encode(rec), key=rec["symbol"].encode(), partition=i % 4)
        if poison_every and i % poison_every == poison_every - 1:
            value = b"\x09poison-" + str(i).encode()
            p.send(value, partition=(i // poison_every) % 4)
            poison.add(((i // poison_every) % 4, value))
    p.flush()
    return n + len(poison), poison


def _recorded(env: dict[str, str]) -> int:
    """Records (written + dead-lettered) the table's offsets account for."""
    try:
        table = load_table(env)
    except Exception:
        return 0
    snap = table.current_snapshot()
    if snap is None:
        return 0
    return sum(off.decode_offsets(snap.summary.additional_properties.get(off.OFFSETS_KEY)).values())


def _assert_exactly_once(env: dict[str, str], valid: int, poison: set[tuple[int, bytes]]) -> None:
    rows = table_rows(env)
    ids = [r["message_id"] for r in rows]
    assert len(ids) == valid, f"{len(ids)} rows for {valid} records"
    assert len(set(ids)) == valid, f"{len(ids) - len(set(ids))} duplicated rows"
    assert ids and all(i.startswith("00000000-0000-4000-8000-") for i in ids)
    entries = dlq_entries(env)
    assert sorted((e.source["partition"], e.value) for e in entries) == sorted(poison)
    assert len({(e.source["partition"], e.source["offset"]) for e in entries}) == len(entries)


# inline: the compiled decoder (when built); workers: the pure-Python path, the only one that uses decode workers
@pytest.mark.parametrize("batch,workers,decoder", [(300, "0", "auto"), (2500, "2", "python")],
                         ids=["inline-decode", "decode-workers"])
def test_sigkill_at_random_points_then_a_clean_run_gives_every_record_once(topic, unique, k2_env, batch, workers,
                                                                            decoder):
    total, poison = _fill(topic, 9000, poison_every=750)
    # a 30 s session: a restart that had to wait for the killed member's session would take 30 s, far beyond the
    # 20 s a busy box may need to start the consumer and join (asserted below)
    env = dict(k2_env, K2_CONSUMER_DECODE_WORKERS=workers, K2_CONSUMER_SESSION_TIMEOUT="30",
               K2_CONSUMER_DECODER=decoder)
    rng = random.Random(unique)
    kills = 0
    filled = 9000
    for _ in range(12):
        if kills < 3 and _recorded(env) >= total:
            # the consumer outran the kills (a quiet box): give it more to do, so every run can be cut short
            more, more_poison = _fill(topic, 9000, poison_every=750, first=filled)
            filled, total, poison = filled + 9000, total + more, poison | more_poison
        proc = start_consume(env, "--topics", topic, "--batch-size", str(batch), "--flush-interval", "0.3",
                             "--group", f"g-{unique}")
        time.sleep(rng.uniform(0.8, 3.5))
        children = psutil.Process(proc.pid).children(recursive=True)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=30)
        # decode workers never outlive the consumer
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"{len(alive)} worker processes survived the consumer"
        if kills >= 3 and _recorded(env) >= total:
            break
    assert kills >= 3
    remaining = total - _recorded(env)
    if remaining:
        rc, stats, err = run_consume(env, "--topics", topic, "--batch-size", str(batch), "--group", f"g-{unique}",
                                     "--max-messages", str(remaining))
        assert rc == 0, err
        assert stats["messages_consumed"] == remaining
        # static membership: the restarted member takes its partitions back at once, not after the session timeout
        assert stats["first_record_seconds"] < 20, stats
    _assert_exactly_once(env, total - len(poison), poison)
    assert _recorded(env) == total


def _table_dir(env: dict[str, str]) -> Path:
    from urllib.parse import urlparse

    return Path(urlparse(load_table(env).location()).path)


def _break_dir(path: Path) -> Path:
    """Make a directory unusable even for root: move it away and put a plain file in its place."""
    aside = path.with_name(path.name + ".away")
    path.rename(aside)
    path.write_text("not a directory")
    return aside


def _restore_dir(path: Path, aside: Path) -> None:
    path.unlink()
    aside.rename(path)


def test_breaker_opens_while_the_warehouse_is_unavailable_and_nothing_is_lost(topic, unique, k2_env):
    total, poison = _fill(topic, 400, poison_every=100)
    env = dict(k2_env, K2_BREAKER_FAILURE_THRESHOLD="2", K2_BREAKER_RESET_TIMEOUT="1")
    rc, stats, err = run_consume(env, "--topics", topic, "--max-messages", "100", "--batch-size", "50",
                                 "--group", f"g-{unique}")
    assert rc == 0, err
    data_dir = _table_dir(env) / "data"
    assert data_dir.is_dir()
    port = free_port()
    proc = start_consume(env, "--topics", topic, "--batch-size", "50", "--flush-interval", "0.3",
                         "--group", f"g-{unique}", metrics_port=port)
    try:
        wait_for(lambda: _recorded(env) == total, timeout=60, what="the backlog written")
        aside = _break_dir(data_dir)
        try:
            more, more_poison = _fill_more(topic, 400, 200)
            wait_for(lambda: _metric(port, "k2_circuit_breaker_state", {"breaker": "iceberg"}) == 2, timeout=60,
                     what="breaker OPEN")
            assert _metric(port, "k2_consumer_paused") == 1
            time.sleep(3)
            assert _recorded(env) == total  # nothing committed while the writes fail
            assert len(dlq_entries(env)) == len(poison)  # and the retried batch's poison not written twice
            assert _metric(port, "k2_consumer_errors_total", {"error_type": "iceberg_write"}) >= 2
        finally:
            _restore_dir(data_dir, aside)
        wait_for(lambda: _recorded(env) == total + more, timeout=60, what="recovery")
        wait_for(lambda: _metric(port, "k2_circuit_breaker_state", {"breaker": "iceberg"}) == 0, timeout=30,
                 what="breaker CLOSED")
    finally:
        rc, stats, err = stop(proc)
    assert rc == 0, err
    assert stats["breaker_opened"] >= 1 and stats["errors_by_type"]["iceberg_write"] >= 2
    _assert_exactly_once(env, total + more - len(poison) - len(more_poison), poison | more_poison)


def _fill_more(topic: str, n: int, start: int) -> tuple[int, set[tuple[int, bytes]]]:
    p = Producer(topic)
    poison = set()
    for i in range(n):
        rec = make_trade(100_000 + start + i)
        p.send(p.encode(rec), partition=i % 4)
    value = b"\x09late-poison"
    p.send(value, partition=3)
    poison.add((3, value))
    p.flush()
    return n + 1, poison


def test_breaker_with_the_sqlite_catalog_locked_retries_and_loses_nothing(topic, unique, k2_env):
    total, poison = _fill(topic, 200)
    env = dict(k2_env, K2_BREAKER_FAILURE_THRESHOLD="1", K2_BREAKER_RESET_TIMEOUT="1")
    rc, _, err = run_consume(env, "--topics", topic, "--max-messages", "200", "--batch-size", "100",
                             "--group", f"g-{unique}")
    assert rc == 0, err
    port = free_port()
    proc = start_consume(env, "--topics", topic, "--batch-size", "100", "--flush-interval", "0.3",
                         "--group", f"g-{unique}", metrics_port=port)
    lock = sqlite3.connect(Path(env["K2_DATA_DIR"]) / "catalog.db", isolation_level=None, timeout=30)
    try:
        wait_for(lambda: _metric(port, "k2_consumer_assigned_partitions") == 4, timeout=60, what="assignment")
        lock.execute("BEGIN EXCLUSIVE")  # nobody else can read or write the catalog now
        more, more_poison = _fill_more(topic, 100, 0)
        wait_for(lambda: _metric(port, "k2_circuit_breaker_state", {"breaker": "iceberg"}) == 2, timeout=60,
                 what="breaker OPEN")
        assert _metric(port, "k2_messages_written_total", {"topic": topic}) in (None, 0)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    try:
        wait_for(lambda: _recorded(env) == total + more, timeout=90, what="recovery after the lock")
    finally:
        rc, stats, err = stop(proc)
    assert rc == 0, err
    assert stats["breaker_opened"] >= 1
    _assert_exactly_once(env, total + more - len(more_poison), more_poison)


def test_two_consumers_split_partitions_and_keep_exactly_once_across_rebalances(topic, unique, k2_env):
    first, poison = _fill(topic, 3000, poison_every=500)
    env = dict(k2_env, K2_CONSUMER_SESSION_TIMEOUT="6")
    group = f"g-{unique}"
    port_a, port_b = free_port(), free_port()
    a = start_consume(env, "--topics", topic, "--batch-size", "100", "--flush-interval", "0.2", "--group", group,
                      metrics_port=port_a)
    b = None
    produced = {"n": 0}
    enough = threading.Event()

    def produce_slowly() -> None:  # keeps records coming until both consumers have written after the rebalance
        p = Producer(topic)
        i = 0
        while (not enough.is_set() or i < 1000) and i < 20_000:
            p.send(p.encode(make_trade(50_000 + i)), partition=i % 4)
            i += 1
            if i % 40 == 0:
                p.flush()
                time.sleep(0.05)
        p.flush()
        produced["n"] = i

    feeder = threading.Thread(target=produce_slowly)
    try:
        wait_for(lambda: (_metric(port_a, "k2_messages_written_total", {"topic": topic}) or 0) > 0, timeout=60,
                 what="A writing")
        b = start_consume(env, "--topics", topic, "--batch-size", "100", "--flush-interval", "0.2", "--group",
                          group, metrics_port=port_b)
        feeder.start()
        wait_for(lambda: (_metric(port_b, "k2_consumer_assigned_partitions") or 0) >= 1, timeout=60,
                 what="B assigned after the rebalance")
        wait_for(lambda: (_metric(port_b, "k2_messages_written_total", {"topic": topic}) or 0) > 0, timeout=60,
                 what="B writing")
        assert (_metric(port_a, "k2_consumer_assigned_partitions") or 0) >= 1
        written_a = _metric(port_a, "k2_messages_written_total", {"topic": topic})
        wait_for(lambda: _metric(port_a, "k2_messages_written_total", {"topic": topic}) > written_a, timeout=60,
                 what="A writing after the rebalance")
        enough.set()
        feeder.join(120)
        rc_a, stats_a, err_a = stop(a)  # static member: its partitions move to B after the session timeout
        assert rc_a == 0, err_a
        p = Producer(topic)  # records for every partition, A's included: only B can write them
        p.send_trades([make_trade(90_000 + i) for i in range(400)], partition_of=lambda i: i % 4)
        p.flush()
        total = first + produced["n"] + 400
        wait_for(lambda: _recorded(env) == total, timeout=90, what="B taking over A's partitions")
        assert _metric(port_b, "k2_consumer_assigned_partitions") == 4
    finally:
        enough.set()
        if feeder.is_alive():
            feeder.join(120)
        if a.poll() is None:
            a.kill()
        if b is not None:
            rc_b, stats_b, err_b = stop(b)
    assert rc_b == 0, err_b
    assert stats_a["messages_written"] > 0 and stats_b["messages_written"] > 0
    assert stats_a["messages_consumed"] + stats_b["messages_consumed"] == total
    _assert_exactly_once(env, total - len(poison), poison)


def test_postgresql_catalog_exactly_once_across_kills(topic, unique, k2_env):
    require("postgres")
    table = f"it_{unique}.trades_v2"
    env = dict(k2_env, K2_ICEBERG_CATALOG_URI="postgresql+psycopg2://k2:k2@localhost:5432/k2_catalog",
               K2_ICEBERG_WAREHOUSE=f"file://{k2_env['K2_DATA_DIR']}/pg-warehouse", K2_TABLE=table)
    total, poison = _fill(topic, 3000, poison_every=1000)
    try:
        for delay in (1.5, 2.5, 3.5):
            proc = start_consume(env, "--topics", topic, "--batch-size", "200", "--flush-interval", "0.3",
                                 "--group", f"g-{unique}")
            time.sleep(delay)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        remaining = total - _recorded_table(env, table)
        if remaining:
            rc, stats, err = run_consume(env, "--topics", topic, "--batch-size", "200", "--group", f"g-{unique}",
                                         "--max-messages", str(remaining))
            assert rc == 0, err
        rows = table_rows(env, table)
        assert len(rows) == total - len(poison) == len({r["message_id"] for r in rows})
        entries = dlq_entries(env)
        assert sorted((e.source["partition"], e.value) for e in entries) == sorted(poison)
        assert all(e.source["table"] == table for e in entries)
    finally:
        try:
            from pyiceberg.catalog.sql import SqlCatalog

            cat = SqlCatalog("k2", uri=env["K2_ICEBERG_CATALOG_URI"], warehouse=env["K2_ICEBERG_WAREHOUSE"])
            cat.drop_table(table)
            cat.drop_namespace(table.split(".")[0])
        except Exception:
            pass


def _recorded_table(env: dict[str, str], table: str) -> int:
    try:
        snap = load_table(env, table).current_snapshot()
    except Exception:
        return 0
    return sum(off.decode_offsets(snap.summary.additional_properties.get(off.OFFSETS_KEY)).values()) if snap else 0


def test_commit_latency_stays_flat_and_expiry_keeps_every_partitions_offsets(tmp_path):
    """300 commits of 500 rows (the 2,000-commit run is in benchmarks/consume_bench.py)."""
    import pyarrow as pa

    from k2cli import trade
    from k2cli.lake.catalog import open_catalog
    from k2cli.lake.writer import TableWriter
    from k2cli.settings import Settings

    settings = Settings(data_dir=tmp_path)
    writer = TableWriter(open_catalog(settings), "market_data.trades_v2", snapshots_to_keep=100, expire_step=20)
    rows = pa.Table.from_pylist([make_trade(i) for i in range(500)], schema=trade.arrow_schema())
    writer.commit(rows.slice(0, 10), {("early", 0): (0, 10)}, {("early", 0): None}, records=10)
    lat, cpu = [], []
    for i in range(300):
        started = time.process_time()
        result = writer.commit(rows, {("t", 0): (i * 500, (i + 1) * 500)}, {("t", 0): i * 500 if i else None},
                               records=500)
        cpu.append(time.process_time() - started)
        lat.append(result.seconds)
    # the work a commit does must not grow with the commits: its CPU time (all threads of this process), which other
    # processes on a busy box do not inflate as they do its wall time (the wall-time series: consume_bench.py)
    early, late = statistics.median(cpu[20:70]), statistics.median(cpu[-50:])
    walls = f"wall {statistics.median(lat[20:70]) * 1000:.0f} -> {statistics.median(lat[-50:]) * 1000:.0f} ms"
    assert late < 2 * early + 0.03, f"commit CPU time grew from {early * 1000:.0f} to {late * 1000:.0f} ms ({walls})"
    assert writer.snapshot_count() <= 100 + 20
    assert writer.expired_total >= 180
    # the partition committed once, 300 commits ago, is still carried in the current snapshot
    assert writer.offsets() == {("early", 0): 10, ("t", 0): 150_000}
    meta = _table_dir({"K2_DATA_DIR": str(tmp_path)}) / "metadata"
    files = list(meta.iterdir())
    assert len(files) < 2 * (100 + 20) + 40, f"{len(files)} metadata files: expired snapshots' files not removed"
    scanned = load_table({"K2_DATA_DIR": str(tmp_path)}).scan().to_arrow()
    assert scanned.num_rows == 300 * 500 + 10


def test_unwritable_dlq_stops_the_consumer_before_the_poison_offset_is_committed(topic, unique, k2_env):
    p = Producer(topic)
    p.send_trades([make_trade(i) for i in range(40)], partition_of=lambda i: 0)
    p.flush()
    port = free_port()
    proc = start_consume(k2_env, "--topics", topic, "--batch-size", "20", "--flush-interval", "0.2",
                         "--group", f"g-{unique}", metrics_port=port)
    try:
        wait_for(lambda: _recorded(k2_env) == 40, timeout=60, what="the valid records written")
        dlq = Path(k2_env["K2_DLQ_DIR"])
        dlq.rmdir()
        dlq.write_text("the DLQ directory is now a file")  # unwritable, even for root
        p.send(b"\x09poison", partition=0)
        p.send_trades([make_trade(100 + i) for i in range(5)], partition_of=lambda i: 0)
        p.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3
    lines = [line for line in err.splitlines() if line.startswith("k2: error:")]
    assert len(lines) == 1 and "dead-letter queue" in lines[0] and "K2_DLQ_DIR" in lines[0]
    assert "Traceback" not in err
    assert _recorded(k2_env) == 40  # the poison's offset (40) and everything after it stay uncommitted
    assert len(table_rows(k2_env)) == 40


def test_writers_fence_stale_batches_and_retry_concurrent_commits(tmp_path):
    """Two writers on one table: a commit racing another is retried on fresh metadata with all offsets carried;
    a batch whose offsets another writer already committed is refused (CommitConflict)."""
    import pyarrow as pa

    from k2cli import trade
    from k2cli.lake.catalog import open_catalog
    from k2cli.lake.writer import CommitConflict, TableWriter
    from k2cli.settings import Settings

    settings = Settings(data_dir=tmp_path)
    w1 = TableWriter(open_catalog(settings), "market_data.trades_v2")
    w2 = TableWriter(open_catalog(settings), "market_data.trades_v2")  # loads the table now: soon stale
    rows = pa.Table.from_pylist([make_trade(i) for i in range(10)], schema=trade.arrow_schema())
    w1.commit(rows, {("t", 0): (0, 10)}, {("t", 0): None}, records=10)
    result = w2.commit(rows.slice(0, 5), {("t", 1): (0, 5)}, {("t", 1): None}, records=5)
    assert result.attempts >= 2  # the first attempt hit the concurrent commit (CommitFailedException)
    assert result.offsets == {("t", 0): 10, ("t", 1): 5}
    with pytest.raises(CommitConflict, match=r"t\[0\] expected None found 10"):
        w2.commit(rows, {("t", 0): (0, 10)}, {("t", 0): None}, records=10)
    w1.commit(rows, {("t", 0): (10, 20)}, {("t", 0): 10}, records=10)
    assert w2.offsets() == {("t", 0): 20, ("t", 1): 5}
    assert load_table({"K2_DATA_DIR": str(tmp_path)}).scan().to_arrow().num_rows == 25


def test_unreachable_registry_is_retried_never_dead_lettered(topic, unique, k2_env):
    # The registry goes away after the consumer started (a registry unreachable at start fails the start at once,
    # as it fails the stream's): through a relay to the real registry, closed before any record exists. The
    # records carry a writer schema of their own (decimals at scale 10, values exact at 8), so decoding them
    # needs the registry.
    from k2cli import trade

    relay = TcpRelay(("127.0.0.1", 8081))
    port = free_port()
    down = dict(k2_env, K2_SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{relay.port}")
    proc = start_consume(down, "--topics", topic, "--batch-size", "10", "--flush-interval", "0.2",
                         "--group", f"g-{unique}", metrics_port=port)
    wait_for(lambda: _metric(port, "k2_consumer_assigned_partitions") == 4, timeout=60, what="the consumer started")
    relay.close()
    p = Producer(topic)
    for i in range(50):
        record = make_trade(i)
        p.send(scale10_value(f"{topic}-scale10-value", record, trade.unscaled(record["price"]) * 100),
               key=record["symbol"].encode(), partition=i % 4)
    p.flush()
    try:
        wait_for(lambda: (_metric(port, "k2_consumer_errors_total", {"error_type": "registry_unavailable"}) or 0)
                 >= 2, timeout=60, what="registry retries")
        assert _metric(port, "k2_dlq_entries_total") is None
        assert _recorded(k2_env) == 0
    finally:
        rc, stats, err = stop(proc)
    assert rc == 0, err
    assert stats["messages_written"] == 0 and stats["dlq_entries"] == 0
    assert dlq_entries(k2_env) == []
    rc, stats, err = run_consume(k2_env, "--topics", topic, "--max-messages", "50", "--group", f"g-{unique}")
    assert rc == 0, err
    assert stats["messages_written"] == 50 and len(table_rows(k2_env)) == 50


def test_unreachable_catalog_at_start_fails_with_one_line(unique, k2_env):
    require("kafka")
    env = dict(k2_env, K2_ICEBERG_CATALOG_URI=f"postgresql+psycopg2://k2:k2@127.0.0.1:{free_port()}/nope",
               K2_CONSUMER_STARTUP_TIMEOUT="3")
    rc, stats, err = run_consume(env, "--topics", f"test.none.{unique}", "--max-messages", "1")
    assert rc == 3, err
    lines = [line for line in err.splitlines() if line.startswith("k2: error:")]
    assert len(lines) == 1 and "catalog" in lines[0].lower() and "K2_ICEBERG_CATALOG_URI" in lines[0]
    assert "Traceback" not in err and stats == {}

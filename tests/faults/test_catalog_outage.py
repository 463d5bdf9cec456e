"""The Iceberg catalog unavailable for 30 s under a running consumer, with trades arriving all the time.

- PostgreSQL: the shared server keeps running; the consumer reaches it through a TCP proxy that this test stops
  (port closed, open connections cut) and starts again. Its table lives in a namespace of its own.
- SQLite: the catalog file is locked by another connection holding an exclusive transaction.

While the catalog is gone the consumer must write nothing, pause (breaker open), and lose nothing; afterwards it
catches up. Independent count: the message ids the feeder produced against the Iceberg rows; the poison
values against the dead-letter entries.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.faults import support
from tests.faults.support import (
    Feeder,
    TcpProxy,
    consume,
    count_ids,
    end_offsets,
    iceberg_columns,
    metric,
    table_offsets,
    wait_caught_up,
    wait_until,
    with_env,
    written,
)
from tests.integration.consume_support import create_topic, delete_topic, dlq_entries, free_port

pytestmark = pytest.mark.faults
OUTAGE = 30
PG = "postgresql+psycopg2://k2:k2@{host}:{port}/k2_catalog"


class _PostgresOutage:
    name = "catalog down: PostgreSQL"

    def __init__(self, env: dict[str, str], unique: str, tmp: Path) -> None:
        require("postgres")
        self.proxy = TcpProxy("127.0.0.1", 5432)
        self.table = f"faults_{unique}.trades_v2"
        settings = {"iceberg_warehouse": f"file://{tmp}/warehouse", "table": self.table}
        self.env = with_env(env, iceberg_catalog_uri=PG.format(host="127.0.0.1", port=self.proxy.port), **settings)
        self.read_env = with_env(env, iceberg_catalog_uri=PG.format(host="localhost", port=5432), **settings)
        self.fault = "PostgreSQL catalog unreachable (proxy stopped, connections cut)"

    def begin(self) -> None:
        self.proxy.down()

    def end(self) -> None:
        self.proxy.up()

    def close(self) -> None:
        self.proxy.close()
        with contextlib.suppress(Exception):
            from pyiceberg.catalog.sql import SqlCatalog

            cat = SqlCatalog("k2", uri=self.read_env["K2_ICEBERG_CATALOG_URI"],
                             warehouse=self.read_env["K2_ICEBERG_WAREHOUSE"])
            cat.drop_table(self.table)
            cat.drop_namespace(self.table.split(".")[0])


class _SqliteLock:
    name = "catalog down: SQLite"

    def __init__(self, env: dict[str, str], unique: str, tmp: Path) -> None:
        self.table = "market_data.trades_v2"
        self.env = self.read_env = env
        self.fault = "SQLite catalog file locked (another connection holds BEGIN EXCLUSIVE)"
        self._lock: sqlite3.Connection | None = None

    def begin(self) -> None:
        self._lock = sqlite3.connect(Path(self.env["K2_DATA_DIR"]) / "catalog.db", isolation_level=None, timeout=60)
        self._lock.execute("BEGIN EXCLUSIVE")  # nobody else can read or write the catalog now

    def end(self) -> None:
        assert self._lock is not None
        self._lock.execute("ROLLBACK")
        self._lock.close()
        self._lock = None

    def close(self) -> None:
        if self._lock is not None:
            self.end()


@pytest.mark.parametrize("kind", [_PostgresOutage, _SqliteLock], ids=["postgresql", "sqlite"])
def test_catalog_unavailable_30s(request, tmp_path, k2_env, unique, kind):
    require("kafka", "schema-registry")
    topic = f"test.faults.catalog.{unique}"
    create_topic(topic, partitions=4)
    outage = kind(k2_env, unique, tmp_path)
    port = free_port()
    feeder = Feeder(topic, rate=300, poison_every=500)
    consumer = None
    try:
        feeder.produce(1000)
        feeder.start()
        consumer = consume(outage.env, tmp_path / "logs", "--topics", topic, "--group", f"faults-catalog-{unique}",
                           "--batch-size", "500", "--flush-interval", "0.5", metrics_port=port)
        wait_until(lambda: (written(port) or 0) >= 1000, 90, "the consumer writing")
        outage.begin()
        down_at = time.monotonic()
        time.sleep(3)  # a commit in flight when the catalog went away may still finish
        written_early = written(port)
        wait_until(lambda: metric(port, "k2_circuit_breaker_state", 'breaker="iceberg"') == 2, OUTAGE - 5,
                   "the Iceberg breaker to open")
        time.sleep(max(0.0, OUTAGE - 1 - (time.monotonic() - down_at)))
        during = {"written_after_3s": written_early, "written_at_end": written(port),
                  "paused": metric(port, "k2_consumer_paused")}
        assert consumer.alive(), "the consumer gave up while the catalog was down"
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        outage.end()
        seconds_down = time.monotonic() - down_at
        recovery = wait_caught_up(outage.read_env, outage.table, end_offsets(topic), 180,
                                  "the consumer to write everything produced before the catalog returned")
        feeder.stop()
        wait_caught_up(outage.read_env, outage.table, end_offsets(topic), 120, "the consumer to read the whole topic")
        rc = consumer.stop(60)
        stats = consumer.summary()
        rows = iceberg_columns(outage.read_env, outage.table, "message_id")
        recorded = sum(table_offsets(outage.read_env, outage.table).values())
        entries = dlq_entries(outage.env)
    finally:
        feeder.stop()
        if consumer is not None and consumer.alive():
            consumer.kill()
        outage.close()
        delete_topic(topic)

    count = count_ids(feeder.valid_ids, [r["message_id"] for r in rows])
    support.record(request.node.nodeid, outage.name, f"{outage.fault} for {seconds_down:.0f} s", count, len(entries),
                   recovery, "catalog back -> table offsets cover what Kafka held then",
                   notes=f"{feeder.total:,} records incl. {len(feeder.poison)} poison; breaker opened "
                         f"{stats.get('breaker_opened')}x, {stats.get('errors_by_type', {}).get('iceberg_write')} "
                         f"failed writes", during=during)
    assert rc == 0 and stats["unwritten_records"] == 0, support.tail(consumer.stderr())
    assert during["written_after_3s"] is not None and during["written_after_3s"] >= 1000, during  # it was scraped
    assert during["written_at_end"] == during["written_after_3s"], f"writes while the catalog was down: {during}"
    assert during["paused"] == 1, during
    assert stats["breaker_opened"] >= 1 and stats["errors_by_type"].get("iceberg_write", 0) >= 1, stats
    assert count.exact, (count, count.detail)
    assert sorted(e.value for e in entries) == sorted(feeder.poison), "dead-letter entries are not the poison once"
    assert recorded == feeder.total  # the table's offsets account for every record, poison included

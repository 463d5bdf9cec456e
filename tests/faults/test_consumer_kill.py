"""The consumer SIGKILLed at random points, over and over, while trades keep arriving; then one clean run.

Independent count: the message ids the feeder produced (and the broker acknowledged) against the message ids
of the Iceberg rows; the poison values it produced against the dead-letter entries (each exactly once).
"""

from __future__ import annotations

import random
import time

import pytest

from tests.conftest import require
from tests.faults import support
from tests.faults.support import (
    Feeder,
    consume,
    count_ids,
    end_offsets,
    iceberg_columns,
    wait_caught_up,
    wait_until,
    written,
)
from tests.integration.consume_support import create_topic, delete_topic, dlq_entries, free_port

pytestmark = pytest.mark.faults
KILLS = 22
TABLE = "market_data.trades_v2"


def test_consumer_sigkilled_at_random_points_loses_and_duplicates_nothing(request, tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.faults.kill.{unique}"
    create_topic(topic, partitions=4)
    group = f"faults-kill-{unique}"
    rng = random.Random(unique)
    feeder = Feeder(topic, rate=500, poison_every=400)
    proc = clean = None
    try:
        feeder.produce(3000)
        feeder.start()
        kills, mid_run, points = 0, 0, []
        while kills < KILLS:
            port = free_port()
            proc = consume(k2_env, tmp_path / "logs", "--topics", topic, "--group", group, "--batch-size", "300",
                           "--flush-interval", "0.3", metrics_port=port)
            if rng.random() < 0.3:  # anywhere in start-up: imports, catalog, group join, first fetch
                time.sleep(rng.uniform(0.2, 2.5))
            else:  # in steady state: mid-batch, mid-commit, between DLQ write and commit
                wait_until(lambda: (written(port) or 0) > 0 or not proc.alive(), 60,  # noqa: B023
                           "the consumer's first commit", interval=0.05)
                time.sleep(rng.uniform(0.0, 1.2))
            if not proc.alive():
                raise AssertionError(f"consumer exited {proc.proc.returncode} before the kill: "
                                     f"{support.tail(proc.stderr())}")
            if (written(port) or 0) > 0:
                mid_run += 1  # this one had committed batches: killed in steady state, not at start-up
            proc.kill()
            kills += 1
            points.append(round(time.monotonic() - proc.started, 2))
        feeder.stop()
        want = end_offsets(topic)
        clean = consume(k2_env, tmp_path / "logs", "--topics", topic, "--group", group, "--batch-size", "2000",
                        "--flush-interval", "0.5")
        recovery = wait_caught_up(k2_env, TABLE, want, 180, "the clean run to write everything")
        rc = clean.stop()
        stats = clean.summary()
    finally:
        feeder.stop()
        for p in (proc, clean):
            if p is not None and p.alive():
                p.kill()
        delete_topic(topic)

    rows = iceberg_columns(k2_env, TABLE, "message_id")
    count = count_ids(feeder.valid_ids, [r["message_id"] for r in rows])
    entries = dlq_entries(k2_env)
    support.record(request.node.nodeid, "consumer SIGKILL", f"{kills} SIGKILLs at random points "
                   f"({mid_run} after the process had committed), then a clean run", count, len(entries), recovery,
                   "clean run start -> table offsets cover the topic",
                   notes=f"{feeder.total:,} records incl. {len(feeder.poison)} poison; batch 300; kills at "
                         f"{min(points)}-{max(points)} s after start", kills=kills, kills_mid_run=mid_run,
                   kill_points_s=points)
    assert rc == 0, support.tail(clean.stderr())
    assert stats["unwritten_records"] == 0
    assert kills >= 20 and mid_run >= 10, f"only {mid_run} of {kills} kills hit a consumer that was writing"
    assert count.exact, count
    assert sorted(e.value for e in entries) == sorted(feeder.poison), "dead-letter entries are not the poison once"
    assert len({(e.source["partition"], e.source["offset"]) for e in entries}) == len(entries)

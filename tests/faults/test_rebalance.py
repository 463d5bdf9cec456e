"""Two consumers in one group and rebalances in the middle of a batch, while trades keep arriving.

Consumer A writes batches of 2,000; B joins while A's batch is half full (A's partitions are revoked: it must
write or give back the partial batch, and B must resume exactly where the table says), then B is SIGKILLed
with a batch of its own half full, and A takes B's partitions back after the session timeout, reading B's
unwritten records again from the table's offsets. Independent count: the feeder's message ids against the
Iceberg rows; its poison values against the dead-letter entries.
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
    metric,
    wait_caught_up,
    wait_until,
    with_env,
    written,
)
from tests.integration.consume_support import create_topic, delete_topic, dlq_entries, free_port, load_table

pytestmark = pytest.mark.faults
TABLE = "market_data.trades_v2"
BATCH = 2000


def _batches_by_consumer(env: dict[str, str]) -> dict[str, list[tuple[int, int]]]:
    """(commit time in ms, records) of every committed snapshot, per consumer label (from the snapshot summaries)."""
    from k2cli.lake import offsets as off

    out: dict[str, list[tuple[int, int]]] = {}
    for snap in load_table(env, TABLE).metadata.snapshots:
        props = snap.summary.additional_properties if snap.summary else {}
        if off.RECORDS_KEY in props:
            out.setdefault(props.get(off.CONSUMER_KEY, "?"), []).append((snap.timestamp_ms,
                                                                          int(props[off.RECORDS_KEY])))
    return out


def test_two_consumers_and_rebalances_mid_batch(request, tmp_path, k2_env, unique):
    require("kafka", "schema-registry")
    topic = f"test.faults.rebalance.{unique}"
    create_topic(topic, partitions=4)
    env = with_env(k2_env, consumer_session_timeout=6)
    group = f"faults-rebalance-{unique}"
    rng = random.Random(unique)
    args = ("--topics", topic, "--group", group, "--batch-size", str(BATCH), "--flush-interval", "8")
    port_a, port_b = free_port(), free_port()
    feeder = Feeder(topic, rate=1000, poison_every=300)
    a = b = None
    try:
        feeder.produce(2000)
        feeder.start()
        a = consume(env, tmp_path / "logs", *args, "--instance-id", f"{group}-a", metrics_port=port_a)
        wait_until(lambda: (written(port_a) or 0) >= BATCH, 90, "A's first full batch")
        time.sleep(rng.uniform(0.4, 1.2))  # A's next batch is part-way full
        b_started = time.time() * 1000
        b = consume(env, tmp_path / "logs", *args, "--instance-id", f"{group}-b", metrics_port=port_b)
        wait_until(lambda: (metric(port_b, "k2_consumer_assigned_partitions") or 0) >= 1, 60, "B joining the group")
        assert (metric(port_a, "k2_consumer_assigned_partitions") or 0) >= 1
        wait_until(lambda: (written(port_b) or 0) > 0, 60, "B writing")
        time.sleep(rng.uniform(0.4, 1.2))  # B's next batch is part-way full
        b.kill()
        killed = time.time() * 1000
        want = end_offsets(topic)
        recovery = wait_caught_up(env, TABLE, want, 120, "A to take B's partitions back and write their records")
        wait_until(lambda: metric(port_a, "k2_consumer_assigned_partitions") == 4, 30, "A owning every partition")
        feeder.stop()
        wait_caught_up(env, TABLE, end_offsets(topic), 120, "A to write the whole topic")
        rc_a = a.stop(60)
        stats_a = a.summary()
        batches = _batches_by_consumer(env)
        rows = iceberg_columns(env, TABLE, "message_id")
        entries = dlq_entries(env)
    finally:
        feeder.stop()
        for proc in (a, b):
            if proc is not None and proc.alive():
                proc.kill()
        delete_topic(topic)

    count = count_ids(feeder.valid_ids, [r["message_id"] for r in rows])
    a_label = next((k for k in batches if k.endswith("-a")), "")
    b_label = next((k for k in batches if k.endswith("-b")), "")
    b_first = min((t for t, _ in batches.get(b_label, [])), default=killed)
    # A's partial batches written when B joined (before B's first commit) and when B's partitions came back
    at_join = [n for t, n in batches.get(a_label, []) if b_started <= t <= b_first and n < BATCH]
    at_takeover = [n for t, n in batches.get(a_label, []) if killed <= t <= killed + 20_000 and n < BATCH]
    support.record(request.node.nodeid, "rebalance mid-batch", "consumer B joins while A's batch is part-full, then "
                   "B is SIGKILLed part-way through a batch", count, len(entries), recovery,
                   "B killed -> table offsets cover what Kafka held then (session timeout 6 s included)",
                   notes=f"A committed {len(batches.get(a_label, []))} batches (partial ones of {at_join} records "
                         f"when B joined, {at_takeover} when it took B's partitions back), B "
                         f"{len(batches.get(b_label, []))}; "
                         f"{feeder.total:,} records incl. {len(feeder.poison)} poison",
                   batches={k: len(v) for k, v in batches.items()})
    assert rc_a == 0 and stats_a["unwritten_records"] == 0, support.tail(a.stderr())
    assert batches.get(b_label), f"B committed nothing: {batches}"
    assert at_join, f"A wrote no partial batch when B joined: {batches.get(a_label)}"
    assert count.exact, (count, count.detail)
    assert sorted(e.value for e in entries) == sorted(feeder.poison), "dead-letter entries are not the poison once"
    assert len({(e.source["partition"], e.source["offset"]) for e in entries}) == len(entries)

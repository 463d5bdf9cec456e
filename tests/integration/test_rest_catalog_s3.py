"""consume -> query -> dlq replay on the Iceberg REST catalog with an S3 warehouse (`k2 stack up --with
rest-catalog,s3`): every record once with exact decimals, the offsets read back from the snapshot summary on
restart, query reading the S3 data files."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from k2cli.lake import offsets as off
from k2cli.reliability.dlq import DeadLetterQueue, DLQEntry
from tests.conftest import run_k2
from tests.integration.consume_support import Producer, load_table, make_trade, run_consume, scratch_topic, table_rows
from tests.integration.rest_s3_support import judge, rest_s3_env

pytestmark = pytest.mark.integration
N = 300


def test_consume_query_and_dlq_replay_through_rest_catalog_on_s3(k2_env: dict[str, str], unique: str) -> None:
    env = rest_s3_env(k2_env, f"rest_s3_{unique}.trades_v2")
    group = f"k2-rest-s3-{unique}"
    records = [make_trade(i, symbol=("BTCUSDT", "ETHUSDT")[i % 2]) for i in range(N)]
    with scratch_topic("test.rest-s3", unique, partitions=2) as topic:
        producer = Producer(topic)
        producer.send_trades(records[:-1])
        producer.send(b"\x09poison", key=b"BTCUSDT")  # dead-lettered by consume, never replayed here
        producer.flush()
        consume = ("--topics", topic, "--group", group, "--batch-size", "100")
        rc, stats, err = run_consume(env, *consume, "--max-messages", str(N), timeout=180)
        assert rc == 0 and stats["messages_written"] == N - 1, err[-2000:]

        # The last trade reaches the table through the DLQ: as if a consumer had dead-lettered it.
        lost = DLQEntry(error="test", error_type="unknown_schema_id", origin="consume",
                        value=producer.encode(records[-1]),
                        source={"topic": topic, "partition": 0, "offset": 10_000, "key": "ETHUSDT"})
        DeadLetterQueue(Path(env["K2_DLQ_DIR"]), "consume").write([lost])
        out = json.loads(run_k2(["dlq", "replay", "--id", lost.id, "-f", "json"], env=env, check=True).stdout)
        assert out["counts"] == {"replayed": 1}
        rc, stats, err = run_consume(env, *consume, "--max-messages", "1", timeout=180)  # resumes at the summary
        assert rc == 0 and stats["messages_written"] == 1, err[-2000:]

        table = load_table(env, env["K2_TABLE"])
        assert table.location().startswith("s3://"), table.location()
        summary = table.current_snapshot().summary.additional_properties
        assert sum(off.decode_offsets(summary[off.OFFSETS_KEY]).values()) == N + 1  # N trades, 1 poison, 1 replay
    assert judge(table_rows(env, env["K2_TABLE"]), records) == (0, 0, 0, 0)

    sql = "SELECT count(*) AS n, count(DISTINCT message_id) AS ids, sum(price) AS p, sum(quantity) AS q FROM trades"
    got = json.loads(run_k2(["query", "sql", sql, "-f", "json"], env=env, check=True).stdout)[0]
    assert (got["n"], got["ids"]) == (N, N)
    assert Decimal(got["p"]) == sum(Decimal(r["price"]) for r in records)
    assert Decimal(got["q"]) == sum(Decimal(r["quantity"]) for r in records)
    newest = json.loads(run_k2(["query", "trades", "--limit", "3", "-f", "json"], env=env, check=True).stdout)
    assert [r["trade_id"] for r in newest] == [f"BINANCE-{i}" for i in (N - 1, N - 2, N - 3)]

"""Another engine reads the lake: Spark (pyspark + Iceberg's runtime jar, installed by `k2 stack install`) reads
the table `k2 consume` wrote through the same SQL catalog — every row, decimals exact, microseconds intact."""

from __future__ import annotations

import json
import os
import subprocess
import time
from decimal import Decimal
from pathlib import Path

from k2cli import trade
from tests.conftest import run_k2
from tests.integration.consume_support import T0, Producer, scratch_topic

N = 2_000
JOB = Path(__file__).with_name("spark_read_job.py")


def _spark():  # -> k2cli.stack.spark.SparkInstall
    from k2cli.stack.paths import StackPaths
    from k2cli.stack.spark import find_spark

    paths = StackPaths.for_home(Path(os.environ.get("K2_HOME") or Path.home() / ".k2"))
    spark = find_spark(paths)
    assert spark is not None, (f"Spark is not installed under {paths.cache}: run scripts/install.sh "
                               "(or python -m k2cli.stack.install)")
    return spark


def _trades() -> list[dict]:
    """Trades with 8-decimal prices and quantities and timestamps that are not whole milliseconds."""
    return [trade.new_trade(
        message_id=f"00000000-0000-4000-8000-{i:012d}", trade_id=f"BINANCE-{i}", symbol="BTCUSDT",
        exchange="BINANCE", timestamp_us=T0 + i * 1_001 + 7, price=f"{43210 + i % 977}.{(i * 7919) % 10**8:08d}",
        quantity=f"0.{(i * 104729) % 10**8 + 1:08d}", currency="USDT", side="BUY" if i % 2 else "SELL",
        ingestion_timestamp_us=T0 + i * 1_001 + 500, source_sequence=i + 1) for i in range(N)]


def test_spark_reads_what_k2_consume_wrote(k2_env: dict[str, str], unique: str, tmp_path: Path) -> None:
    spark = _spark()
    catalog, warehouse = f"sqlite:///{tmp_path / 'catalog.db'}", f"file://{tmp_path / 'warehouse'}"
    env = dict(k2_env, K2_ICEBERG_CATALOG_URI=catalog, K2_ICEBERG_WAREHOUSE=warehouse)
    sent = _trades()
    with scratch_topic("test.spark", unique, partitions=2) as topic:
        producer = Producer(topic)
        producer.send_trades(sent, partition_of=lambda i: i % 2)
        producer.flush()
        run_k2(["consume", "--topics", topic, "--max-messages", str(N), "--batch-size", "500", "--group",
                f"spark-{unique}", "--metrics-port", "0", "--format", "json"], env=env, timeout=120, check=True)

    from k2cli.stack.spark import catalog_conf, spark_env

    started = time.monotonic()
    proc = subprocess.run([str(spark.python), str(JOB), json.dumps(catalog_conf(spark, "k2", catalog, warehouse)),
                           "market_data.trades_v2"], capture_output=True, text=True, env=spark_env(spark),
                          timeout=180)
    spark_seconds = time.monotonic() - started
    assert proc.returncode == 0, f"Spark read failed ({proc.returncode}): {proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["count"] == N
    assert out["price_types"] == [f"decimal({trade.PRECISION},{trade.SCALE})"]
    want = {t["message_id"]: (Decimal(t["price"]), Decimal(t["quantity"]), t["timestamp"]) for t in sent}
    got = {mid: (Decimal(p), Decimal(q), ts) for mid, p, q, ts in out["rows"]}
    assert got == want
    assert sum(p for p, _, _ in got.values()) == sum(Decimal(t["price"]) for t in sent)
    assert any(ts % 1000 for _, _, ts in got.values())  # sub-millisecond digits survived
    print(f"spark read of {N} rows: {spark_seconds:.1f}s")

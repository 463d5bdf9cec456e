"""This machine's limits in the same run: the raw Kafka read rate and the Parquet write rate of the same rows."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lake import Lake
from topic import PARTITIONS


def kafka_read_rate(topic: str, records: int) -> float:
    """msg/s of a bare confluent-kafka consumer over the topic, no decoding (consume_bench's reader), with the fetch
    sizes `k2 consume` uses (librdkafka's default 1 MiB per-partition fetches read this topic at less than half)."""
    from benchmarks.consume_bench import raw_read_rate
    from k2cli.consume.kafka_client import FETCH

    return raw_read_rate(topic, records, PARTITIONS, FETCH)


def parquet_write_rate(lake: Lake, table: str) -> dict[str, float]:
    """rows/s of pyarrow writing the rows k2 wrote (read back from its table) to one Parquet file, zstd like
    pyiceberg's default; best of two writes."""
    import pyarrow.parquet as pq

    data = lake.catalog().load_table(table).scan().to_arrow()
    best = float("inf")
    with tempfile.TemporaryDirectory(prefix="k2-peers-parquet-") as tmp:
        for n in range(2):
            started = time.perf_counter()
            pq.write_table(data, Path(tmp) / f"{n}.parquet", compression="zstd")
            best = min(best, time.perf_counter() - started)
    return {"rows": data.num_rows, "seconds": round(best, 3), "rows_per_s": round(data.num_rows / best, 1)}

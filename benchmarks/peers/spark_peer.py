"""Spark Structured Streaming (pyspark 3.5.9, Iceberg's Spark runtime) from the topic into a table of the same
SQLite catalog, micro-batches of at most `max_offsets` records (back to back, or one every `trigger_s` s)."""

from __future__ import annotations

import json
from pathlib import Path

from lake import Lake
from procs import Tree

HERE = Path(__file__).resolve().parent


def starter(topic: str, lake: Lake, table: str, max_offsets: int, trigger_s: float, work: Path, spark,
            extra_jars: tuple[Path, ...]):
    """start(first) for drive(); a restart resumes from the same checkpoint."""
    from k2cli import trade
    from k2cli.stack.spark import catalog_conf, spark_env

    conf = catalog_conf(spark, "k2", lake.catalog_uri, lake.warehouse, extra_jars)
    conf.update({"spark.sql.iceberg.check-nullability": "false", "spark.driver.memory": "2g"})
    args = {"conf": conf, "bootstrap": "localhost:9092", "topic": topic, "table": table,
            "checkpoint": str(work / "checkpoint"), "max_offsets": max_offsets, "trigger_s": trigger_s,
            "avro_schema": json.dumps(trade.avro_schema()), "columns": list(trade.FIELD_NAMES)}
    runs = [0]

    def start(first: bool) -> Tree:
        runs[0] += 1
        return Tree([str(spark.python), str(HERE / "spark_job.py"), json.dumps(args)], spark_env(spark),
                    work / f"spark-{runs[0]}.log")

    return start

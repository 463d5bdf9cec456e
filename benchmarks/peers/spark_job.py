"""Run by the Spark venv's python: Structured Streaming from the Kafka topic into an Iceberg table.

    python spark_job.py ARGS_JSON   (conf, topic, table, checkpoint, max_offsets, trigger_s: 0 = back to back, ...)

It runs until killed (the harness stops it once the table holds every record)."""

import json
import sys

from pyspark.sql import SparkSession
from pyspark.sql.avro.functions import from_avro
from pyspark.sql.functions import col, expr


def main() -> None:
    args = json.loads(sys.argv[1])
    builder = SparkSession.builder.master("local[2]").appName("k2-peer-spark")
    for key, value in args["conf"].items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    raw = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", args["bootstrap"])
           .option("subscribe", args["topic"]).option("startingOffsets", "earliest")
           .option("maxOffsetsPerTrigger", str(args["max_offsets"])).option("failOnDataLoss", "false").load())
    # Confluent framing: magic byte and 4-byte schema id before the Avro body
    body = expr("substring(value, 6, length(value) - 5)")
    rows = raw.select(from_avro(body, args["avro_schema"], {"mode": "FAILFAST"}).alias("t")).select(
        *[col(f"t.{name}") for name in args["columns"]])
    writer = rows.writeStream.format("iceberg").outputMode("append").option("checkpointLocation", args["checkpoint"])
    if args["trigger_s"]:  # else the default trigger: the next micro-batch as soon as the last one committed
        writer = writer.trigger(processingTime=f"{args['trigger_s']} seconds")
    query = writer.toTable(f"k2.{args['table']}")
    query.awaitTermination()


if __name__ == "__main__":
    main()

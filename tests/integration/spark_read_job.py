"""Run by the Spark venv's python (not pytest): read a k2 table through Spark and print it as JSON.

    python spark_read_job.py CONF_JSON TABLE   ->  {"count": n, "rows": [[message_id, price, quantity, ts_us], ...]}
"""

import json
import sys

from pyspark.sql import SparkSession


def main() -> None:
    conf, table = json.loads(sys.argv[1]), sys.argv[2]
    builder = SparkSession.builder.master("local[2]").appName("k2-spark-read")
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        df = spark.sql(f"SELECT message_id, CAST(price AS STRING) AS price, CAST(quantity AS STRING) AS quantity, "
                       f"unix_micros(timestamp) AS ts_us, typeof(price) AS ptype FROM k2.{table}")
        rows = df.collect()
        types = sorted({r.ptype for r in rows})
        print(json.dumps({"count": df.count(), "price_types": types,
                          "rows": [[r.message_id, r.price, r.quantity, r.ts_us] for r in rows]}))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()

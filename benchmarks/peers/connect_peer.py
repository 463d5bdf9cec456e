"""Apache Iceberg's Kafka Connect sink in a standalone Connect 4.3.2 worker, reading the same Confluent-framed
Avro through Apicurio's converter and committing to the same kind of JDBC (SQLite) catalog every `commit_s`."""

from __future__ import annotations

from pathlib import Path

from lake import Lake
from procs import Tree

APICURIO_V2 = "http://127.0.0.1:18081/apis/registry/v2"  # the stack's Apicurio, its own API (not ccompat)

LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{ISO8601}} %p %c{{1}} %m%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.iceberg.name = org.apache.iceberg.connect.channel
logger.iceberg.level = info
"""


def _props(values: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


def starter(topic: str, lake: Lake, table: str, name: str, tasks: int, commit_s: float, work: Path,
            jars: Path, registry_v2: str = APICURIO_V2):
    """start(first) for drive(); the control topic `<name>-control` must exist."""
    from k2cli.proc import free_port
    from k2cli.stack.install import find_java
    from k2cli.stack.spark import jdbc_uri

    jdk = find_java(17)
    if jdk is None:
        raise SystemExit("Kafka Connect needs Java 17+: run scripts/install.sh")
    work.mkdir(parents=True, exist_ok=True)
    conv = "value.converter.apicurio.registry"
    worker = {
        "bootstrap.servers": "localhost:9092", "plugin.discovery": "only_scan",
        "offset.storage.file.filename": str(work / "connect.offsets"), "offset.flush.interval.ms": "10000",
        "key.converter": "org.apache.kafka.connect.converters.ByteArrayConverter",
        "value.converter": "io.apicurio.registry.utils.converter.AvroConverter",
        f"{conv}.url": registry_v2, f"{conv}.as-confluent": "true",
        f"{conv}.id-handler": "io.apicurio.registry.serde.Legacy4ByteIdHandler",
        f"{conv}.use-id": "contentId", f"{conv}.headers.enabled": "false",
        "consumer.max.poll.records": "10000", "listeners": f"http://127.0.0.1:{free_port()}",
    }
    url, _ = jdbc_uri(lake.catalog_uri)
    connector = {
        "name": name, "connector.class": "org.apache.iceberg.connect.IcebergSinkConnector",
        "tasks.max": str(tasks), "topics": topic, "iceberg.tables": table,
        "iceberg.catalog": "k2", "iceberg.catalog.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        "iceberg.catalog.uri": url, "iceberg.catalog.jdbc.schema-version": "V1",
        "iceberg.catalog.warehouse": lake.warehouse,
        "iceberg.control.topic": f"{name}-control", "iceberg.control.commit.interval-ms": str(int(commit_s * 1000)),
        # timestamp-micros arrives as a plain long the sink would take for milliseconds; Kafka's converter makes
        # it a Timestamp (and truncates it to milliseconds: the sink cannot keep microseconds this way)
        "transforms": "ts,its",
        **{f"transforms.{t}.{k}": v for t, field in (("ts", "timestamp"), ("its", "ingestion_timestamp"))
           for k, v in (("type", "org.apache.kafka.connect.transforms.TimestampConverter$Value"),
                        ("field", field), ("target.type", "Timestamp"), ("unix.precision", "microseconds"))},
    }
    (work / "worker.properties").write_text(_props(worker))
    (work / "connector.properties").write_text(_props(connector))
    (work / "log4j2.properties").write_text(LOG4J.format(log=work / "connect-worker.log"))
    argv = [str(jdk.java), "-Xms256m", "-Xmx2g", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={work / 'log4j2.properties'}", "-cp", f"{jars}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone", str(work / "worker.properties"),
            str(work / "connector.properties")]
    runs = [0]

    def start(first: bool) -> Tree:
        runs[0] += 1
        return Tree(argv, {"PATH": "/usr/bin:/bin"}, work / f"connect-{runs[0]}.log")

    return start

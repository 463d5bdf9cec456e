"""The Iceberg catalog (SQL: SQLite embedded, PostgreSQL for production) and the trades table."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from k2cli.errors import ServiceUnavailable, first_line
from k2cli.redaction import redact
from k2cli.settings import Settings, ensure_writable_dir

# Keep metadata small so commit latency stays flat (pyiceberg rewrites the whole metadata per commit).
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "10",
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "20",
}


def split_identifier(name: str) -> tuple[str, str]:
    """Split `namespace.table`."""
    namespace, _, table = name.rpartition(".")
    if not namespace or not table:
        raise ValueError(f"table name {name!r} must be namespace.table")
    return namespace, table


def open_catalog(settings: Settings) -> Any:  # -> pyiceberg.catalog.sql.SqlCatalog
    """Open the SQL catalog named by the settings, creating local directories it needs."""
    from pyiceberg.catalog.sql import SqlCatalog

    uri = settings.catalog_uri
    if uri.startswith("sqlite:"):
        db_path = Path(uri.split("sqlite:///", 1)[-1])
        ensure_writable_dir(db_path.parent, "K2_ICEBERG_CATALOG_URI" if settings.iceberg_catalog_uri
                            else "K2_DATA_DIR")
    warehouse = settings.warehouse
    if warehouse.startswith("file://"):
        ensure_writable_dir(Path(urlparse(warehouse).path), "K2_ICEBERG_WAREHOUSE" if settings.iceberg_warehouse
                            else "K2_DATA_DIR")
    props = {"uri": uri, "warehouse": warehouse}
    if settings.s3_endpoint:
        props.update({"s3.endpoint": settings.s3_endpoint, "s3.access-key-id": settings.s3_access_key,
                      "s3.secret-access-key": settings.s3_secret_key, "s3.region": settings.s3_region,
                      "s3.path-style-access": "true"})
    try:
        return SqlCatalog("k2", **props)
    except Exception as exc:  # sqlalchemy raises OperationalError and friends for unreachable databases
        raise ServiceUnavailable(f"Iceberg catalog at {redact(uri)} is unreachable: {first_line(exc)}",
                                 setting="K2_ICEBERG_CATALOG_URI") from None


def trades_partition_spec() -> Any:
    """Partition by day(timestamp)."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform

    from k2cli.trade import FIELD_NAMES

    source_id = FIELD_NAMES.index("timestamp") + 1
    return PartitionSpec(PartitionField(source_id=source_id, field_id=1000, transform=DayTransform(),
                                        name="timestamp_day"))


def ensure_trades_table(catalog: Any, name: str) -> Any:  # -> pyiceberg.table.Table
    """Load the trades table, creating its namespace and the table if missing."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError

    from k2cli.trade import iceberg_schema

    namespace, _ = split_identifier(name)
    try:
        return catalog.load_table(name)
    except NoSuchTableError:
        pass
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(namespace)
    try:
        return catalog.create_table(name, schema=iceberg_schema(), partition_spec=trades_partition_spec(),
                                    properties=TABLE_PROPERTIES)
    except TableAlreadyExistsError:  # another process won the race
        return catalog.load_table(name)

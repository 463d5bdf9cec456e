"""The Iceberg catalog (SQL: SQLite embedded or PostgreSQL; or an Iceberg REST catalog) and the trades table."""

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


def is_rest(uri: str) -> bool:
    """Whether the catalog URI names an Iceberg REST catalog."""
    return uri.startswith(("http://", "https://"))


def storage_properties(settings: Settings) -> dict[str, str]:
    """pyiceberg FileIO properties for an S3-compatible object store (empty when no endpoint is set)."""
    if not settings.s3_endpoint:
        return {}
    return {"s3.endpoint": settings.s3_endpoint, "s3.access-key-id": settings.s3_access_key,
            "s3.secret-access-key": settings.s3_secret_key, "s3.region": settings.s3_region,
            "s3.path-style-access": "true" if settings.s3_path_style else "false"}


def catalog_properties(settings: Settings) -> dict[str, str]:
    """The properties pyiceberg's catalog is opened with (REST: credential, token, scope as pyiceberg names them)."""
    props = {"uri": settings.catalog_uri, **storage_properties(settings)}
    if not is_rest(settings.catalog_uri):
        props["warehouse"] = settings.warehouse
        return props
    if settings.iceberg_warehouse:
        props["warehouse"] = settings.iceberg_warehouse
    optional = {"credential": settings.iceberg_catalog_credential, "token": settings.iceberg_catalog_token,
                "scope": settings.iceberg_catalog_scope}
    props.update({k: v for k, v in optional.items() if v})
    return props


def _rest_catalog_class() -> type:
    """pyiceberg's RestCatalog, minus the client-side deletion of superseded metadata files.

    The REST server writes each metadata file and deletes the ones `write.metadata.previous-versions-max` lets go;
    the client deleting them too only races the server and logs "Failed to delete metadata file" on every commit.
    """
    from pyiceberg.catalog.rest import RestCatalog

    class ServerOwnedMetadataRestCatalog(RestCatalog):
        @staticmethod
        def _delete_old_metadata(io: Any, base: Any, metadata: Any) -> None:
            return None

    return ServerOwnedMetadataRestCatalog


def open_catalog(settings: Settings) -> Any:  # -> pyiceberg.catalog.Catalog (SqlCatalog or RestCatalog)
    """Open the catalog named by the settings (SQL or REST), creating local directories it needs."""
    uri = settings.catalog_uri
    if uri.startswith("sqlite:"):
        db_path = Path(uri.split("sqlite:///", 1)[-1])
        ensure_writable_dir(db_path.parent, "K2_ICEBERG_CATALOG_URI" if settings.iceberg_catalog_uri
                            else "K2_DATA_DIR")
    warehouse = settings.warehouse
    if warehouse.startswith("file://") and not is_rest(uri):
        ensure_writable_dir(Path(urlparse(warehouse).path), "K2_ICEBERG_WAREHOUSE" if settings.iceberg_warehouse
                            else "K2_DATA_DIR")
    try:
        if is_rest(uri):
            return _rest_catalog_class()("k2", **catalog_properties(settings))
        from pyiceberg.catalog.sql import SqlCatalog

        return SqlCatalog("k2", **catalog_properties(settings))
    except Exception as exc:  # sqlalchemy/requests raise their own errors for unreachable services
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

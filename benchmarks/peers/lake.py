"""The peers' tables: one SQLite catalog per run, snapshots read cheaply while a peer writes, fidelity after."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from topic import Expected


@dataclass(frozen=True)
class Lake:
    """A SQLite catalog file and a local warehouse (what k2, Connect and Spark all open)."""

    catalog_uri: str  # sqlite:////abs/path (k2's form)
    warehouse: str  # file:///abs/path

    @classmethod
    def under(cls, work: Path) -> Lake:
        (work / "warehouse").mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{work / 'catalog.db'}", f"file://{work / 'warehouse'}")

    def catalog(self) -> Any:
        from pyiceberg.catalog.sql import SqlCatalog

        return SqlCatalog("k2", uri=self.catalog_uri, warehouse=self.warehouse)

    def create_trades_table(self, name: str) -> None:
        """The table k2 would create (schema, day(timestamp) partitions), for the peers that write into one."""
        from k2cli.lake.catalog import ensure_trades_table

        ensure_trades_table(self.catalog(), name)


@dataclass(frozen=True)
class Snapshot:
    at_ms: int
    added: int
    total: int


def snapshots(lake: Lake, table: str) -> list[Snapshot]:
    """The table's appends so far, oldest first, from its metadata file ([] before the table exists)."""
    from k2cli.lake.metadata import NoSuchTable, local_path, metadata_location

    try:
        location = metadata_location(lake.catalog_uri, table)
    except NoSuchTable:
        return []
    if not location:
        return []
    raw = Path(local_path(location)).read_bytes()
    meta = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    out = []
    for snap in meta.get("snapshots", []):
        summary = snap.get("summary", {})
        added = int(summary.get("added-records", 0))
        if added:
            out.append(Snapshot(int(snap["timestamp-ms"]), added, int(summary.get("total-records", 0))))
    return sorted(out, key=lambda s: s.at_ms)


def fidelity(lake: Lake, table: str, expected: Expected) -> dict[str, Any]:
    """Rows, distinct ids, exact decimal sums and microsecond timestamps of the table against what was produced."""
    import pyarrow.compute as pc

    data = lake.catalog().load_table(table).scan(
        selected_fields=("message_id", "price", "quantity", "timestamp")).to_arrow()
    ts = pc.subtract(pc.cast(data["timestamp"], "int64"), expected.t0)  # >= 0: integer division truncates
    rows = data.num_rows
    price = _dec(pc.sum(data["price"]).as_py())
    quantity = _dec(pc.sum(data["quantity"]).as_py())
    ts_offset_sum = int(pc.sum(ts).as_py() or 0)
    whole_ms = pc.multiply(pc.divide(ts, 1000), 1000)  # t0 is a whole second: the offset's µs are the timestamp's
    sub_ms = int(pc.sum(pc.cast(pc.not_equal(ts, whole_ms), "int64")).as_py() or 0)
    distinct = pc.count_distinct(data["message_id"]).as_py()
    checks = {
        "rows": rows == expected.records,
        "distinct_ids": distinct == expected.records,
        "price_sum": price == expected.price_sum,
        "quantity_sum": quantity == expected.quantity_sum,
        "microseconds": ts_offset_sum == expected.ts_offset_sum and sub_ms == expected.sub_ms,
    }
    return {"rows": rows, "distinct_ids": distinct, "price_sum": str(price), "quantity_sum": str(quantity),
            "timestamps_not_whole_ms": sub_ms, "timestamp_offset_sum_us": ts_offset_sum, "checks": checks,
            "ok": all(checks.values())}


def _dec(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(value)

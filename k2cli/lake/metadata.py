"""The trades table's current Iceberg metadata read directly: catalog row, metadata JSON, Avro manifests.

This is the planner `k2 query` uses by default because it costs ~50 ms of imports (sqlite3, fastavro) where
pyiceberg's SQL catalog costs ~1 s (sqlalchemy, pydantic models) — the difference between a command that
answers in under half a second and one that takes two. It prunes exactly as documented below and never
more than pyiceberg would (it may keep a file pyiceberg drops, never the reverse; tests compare the two).
Anything it does not understand raises `Unsupported`, and the caller falls back to pyiceberg:
delete files, non-local storage, format versions other than 1/2, a catalog that is not SQLite/PostgreSQL.

Pruning, per manifest (partition summaries) and per data file:
- day(timestamp) partition values outside the filter's day range;
- timestamp lower/upper bounds entirely outside [since, until);
- symbol / exchange lower/upper bounds (UTF-8 bytes; truncated bounds stay conservative) not containing
  the wanted value.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from k2cli.lake.plan import DataFile, ScanPlan, SnapshotInfo, TradeFilter

CATALOG_NAME = "k2"  # the name k2cli.lake.catalog.open_catalog gives its SqlCatalog
_EPOCH_DATE = _dt.date(1970, 1, 1)


class Unsupported(Exception):
    """Something this reader does not handle; use pyiceberg instead."""


class NoSuchTable(Exception):
    """The catalog has no such table."""


def local_path(location: str) -> str:
    """The filesystem path of a file:// (or plain) location; Unsupported for object stores."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "":
        return location
    raise Unsupported(f"{parsed.scheme}:// storage")


def metadata_location(catalog_uri: str, name: str) -> str:
    """The table's current metadata file, straight from the SQL catalog's iceberg_tables row."""
    namespace, _, table = name.rpartition(".")
    if not namespace:
        raise Unsupported(f"table name {name!r}")
    query = ("SELECT metadata_location FROM iceberg_tables "
             "WHERE catalog_name = {p} AND table_namespace = {p} AND table_name = {p}")
    args = (CATALOG_NAME, namespace, table)
    if catalog_uri.startswith("sqlite:"):
        import sqlite3

        db = catalog_uri.split("sqlite:///", 1)[-1]
        if not Path(db).is_file():
            raise NoSuchTable(name)
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                row = con.execute(query.format(p="?"), args).fetchone()
            finally:
                con.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise NoSuchTable(name) from None
            raise Unsupported(f"sqlite: {exc}") from None
    elif catalog_uri.startswith("postgresql"):
        row = _postgres_row(catalog_uri, query.format(p="%s"), args)
    else:
        raise Unsupported(f"catalog {catalog_uri.split(':', 1)[0]}")
    if row is None or not row[0]:
        raise NoSuchTable(name)
    return str(row[0])


def _postgres_row(uri: str, query: str, args: tuple[str, ...]) -> Any:
    try:
        import psycopg2
    except ImportError:
        raise Unsupported("psycopg2 missing") from None
    parsed = urlparse(uri)
    try:
        con = psycopg2.connect(host=parsed.hostname or "localhost", port=parsed.port or 5432,
                               user=unquote(parsed.username or ""), password=unquote(parsed.password or ""),
                               dbname=parsed.path.lstrip("/"), connect_timeout=5)
    except psycopg2.Error:
        raise Unsupported("postgres connection (pyiceberg will report it)") from None
    try:
        with con.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchone()
    except psycopg2.Error as exc:
        if "does not exist" in str(exc):
            raise NoSuchTable(query) from None
        raise Unsupported(f"postgres: {exc}") from None
    finally:
        con.close()


def _read_json(location: str) -> dict[str, Any]:
    path = local_path(location)
    opener = gzip.open if path.endswith(".gz.metadata.json") or path.endswith(".metadata.json.gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
        return data


def _avro_records(location: str) -> list[dict[str, Any]]:
    import fastavro

    with open(local_path(location), "rb") as fh:
        return [rec for rec in fastavro.reader(fh) if isinstance(rec, dict)]


_MANIFESTS: OrderedDict[str, list[_Entry]] = OrderedDict()  # immutable files: safe to keep while the process runs
_MANIFEST_CACHE_MAX = 2048


@dataclass(frozen=True)
class _Entry:
    """What planning needs of one live data-file entry of a manifest."""

    path: str
    partition: dict[str, Any]
    record_count: int
    size: int
    lower: dict[int, bytes]
    upper: dict[int, bytes]


def _manifest_entries(location: str) -> list[_Entry]:
    """The live data files of a manifest (cached: manifests are never rewritten in place)."""
    cached = _MANIFESTS.get(location)
    if cached is not None:
        _MANIFESTS.move_to_end(location)
        return cached
    entries = []
    for entry in _avro_records(location):
        if entry.get("status") == 2:  # DELETED
            continue
        data = entry["data_file"]
        if data.get("content", 0) != 0:
            raise Unsupported("delete files")
        if str(data.get("file_format", "PARQUET")).upper() != "PARQUET":
            raise Unsupported(f"{data.get('file_format')} data files")
        entries.append(_Entry(local_path(data["file_path"]), data.get("partition") or {}, int(data["record_count"]),
                              int(data["file_size_in_bytes"]), _bounds(data.get("lower_bounds")),
                              _bounds(data.get("upper_bounds"))))
    _MANIFESTS[location] = entries
    while len(_MANIFESTS) > _MANIFEST_CACHE_MAX:
        _MANIFESTS.popitem(last=False)
    return entries


def _days(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, _dt.date):
        return (value - _EPOCH_DATE).days
    return int(value)


def _bounds(pairs: Any) -> dict[int, bytes]:
    if not pairs:
        return {}
    if isinstance(pairs, dict):
        return dict(pairs)
    return {int(kv["key"]): kv["value"] for kv in pairs}


def _ts(raw: bytes | None) -> int | None:
    return struct.unpack("<q", raw)[0] if raw is not None and len(raw) == 8 else None


class MetadataTable:
    """One table version, from its metadata file."""

    planner = "metadata"

    def __init__(self, location: str, name: str) -> None:
        self.location = location
        self._name = name
        self.metadata = _read_json(location)
        version = self.metadata.get("format-version", 1)
        if version not in (1, 2):
            raise Unsupported(f"format version {version}")
        schemas = self.metadata.get("schemas") or [self.metadata.get("schema")]
        current_schema = next((s for s in schemas if s and s.get("schema-id") == self.metadata.get(
            "current-schema-id", 0)), schemas[0])
        self.field_ids = {f["name"]: f["id"] for f in current_schema["fields"]}
        if "timestamp" not in self.field_ids:
            raise Unsupported("no timestamp column")
        specs = self.metadata.get("partition-specs") or [{"spec-id": 0, "fields": self.metadata.get(
            "partition-spec", [])}]
        ts_id = self.field_ids["timestamp"]
        # spec id -> (position, name) of its day(timestamp) partition field, if it has one
        self._day_field: dict[int, tuple[int, str] | None] = {}
        for spec in specs:
            found = None
            for pos, f in enumerate(spec.get("fields", [])):
                if f.get("source-id") == ts_id and f.get("transform") == "day":
                    found = (pos, f["name"])
            self._day_field[int(spec.get("spec-id", 0))] = found

    def name(self) -> str:
        """namespace.table."""
        return self._name

    def _snapshot(self, raw: dict[str, Any]) -> SnapshotInfo:
        summary = {str(k): str(v) for k, v in (raw.get("summary") or {}).items()}
        return SnapshotInfo(int(raw["snapshot-id"]), raw.get("parent-snapshot-id"), int(raw["timestamp-ms"]),
                            int(raw.get("sequence-number") or 0), summary)

    def current_snapshot(self) -> SnapshotInfo | None:
        """The snapshot readers see."""
        current = self.metadata.get("current-snapshot-id")
        if current is None or current == -1:
            return None
        raw = next((s for s in self.metadata.get("snapshots", []) if s["snapshot-id"] == current), None)
        return self._snapshot(raw) if raw is not None else None

    def snapshots(self) -> list[SnapshotInfo]:
        """Every retained snapshot."""
        return [self._snapshot(s) for s in self.metadata.get("snapshots", [])]

    def plan(self, flt: TradeFilter) -> ScanPlan:
        """The data files of the current snapshot that can hold rows matching the filter."""
        started = time.perf_counter()
        current: Any = self.metadata.get("current-snapshot-id")
        raw = next((s for s in self.metadata.get("snapshots", []) if s["snapshot-id"] == current), None)
        if raw is None:
            return ScanPlan(None, [], 0, (time.perf_counter() - started) * 1000, self.planner)
        if "manifest-list" not in raw:
            raise Unsupported("inline manifests (format v1)")
        first_day, last_day = flt.day_range()
        wanted = {self.field_ids[c]: v.encode("utf-8") for c, v in (("symbol", flt.symbol),
                                                                      ("exchange", flt.exchange))
                  if v is not None and c in self.field_ids}
        ts_id = self.field_ids["timestamp"]
        files: list[DataFile] = []
        for manifest in _avro_records(raw["manifest-list"]):
            if manifest.get("content", 0) != 0:
                raise Unsupported("delete files")
            day_field = self._day_field.get(int(manifest.get("partition_spec_id", 0)))
            if day_field is not None and (first_day is not None or last_day is not None):
                summaries = manifest.get("partitions") or []
                if len(summaries) > day_field[0]:
                    s = summaries[day_field[0]]
                    lo = struct.unpack("<i", s["lower_bound"])[0] if s.get("lower_bound") else None
                    hi = struct.unpack("<i", s["upper_bound"])[0] if s.get("upper_bound") else None
                    if not _overlaps(lo, hi, first_day, last_day):
                        continue
            for entry in _manifest_entries(manifest["manifest_path"]):
                if day_field is not None and (first_day is not None or last_day is not None):
                    day = _days(entry.partition.get(day_field[1]))
                    if not _overlaps(day, day, first_day, last_day):
                        continue
                lower, upper = entry.lower, entry.upper
                if any(not _contains(lower.get(fid), upper.get(fid), value) for fid, value in wanted.items()):
                    continue
                lo_ts, hi_ts = _ts(lower.get(ts_id)), _ts(upper.get(ts_id))
                if flt.since_us is not None and hi_ts is not None and hi_ts < flt.since_us:
                    continue
                if flt.until_us is not None and lo_ts is not None and lo_ts >= flt.until_us:
                    continue
                files.append(DataFile(entry.path, entry.record_count, entry.size, lo_ts, hi_ts))
        total = int((raw.get("summary") or {}).get("total-data-files") or 0)
        return ScanPlan(int(current), files, max(total, len(files)), (time.perf_counter() - started) * 1000,
                        self.planner)


def _overlaps(lo: int | None, hi: int | None, first: int | None, last: int | None) -> bool:
    if first is not None and hi is not None and hi < first:
        return False
    return not (last is not None and lo is not None and lo > last)


def _contains(lower: bytes | None, upper: bytes | None, value: bytes) -> bool:
    if lower is not None and value < lower:
        return False
    return not (upper is not None and value > upper)

"""Shared ground of `k2 lake`: the table, its live data files, the consumer's state a maintenance snapshot carries
forward, optimistic commits with retries, and the table's shape (stats)."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from k2cli.errors import K2Error, ServiceUnavailable, described
from k2cli.lake import dedupstate as dd
from k2cli.lake import offsets as off
from k2cli.lake.maintenance_plan import FileEntry, by_partition
from k2cli.settings import Settings

log = logging.getLogger("k2.lake.maintenance")

MAINTENANCE_KEY = "k2.maintenance"  # summary key: which `k2 lake` command made the snapshot
CARRIED_KEYS = (off.OFFSETS_KEY, dd.DEDUP_KEY)
MAX_ATTEMPTS = 30
T = TypeVar("T")


class MaintenanceConflict(K2Error):
    """Other writers kept winning the race for the table: the maintenance step gave up (run it again)."""


class Abandon(Exception):
    """The table moved on so that this step no longer applies (e.g. its files were rewritten by someone else)."""


@dataclass(frozen=True)
class LiveFile:
    """A live data file with its pyiceberg DataFile (needed to delete it in a commit)."""

    entry: FileEntry
    data_file: Any


def open_table(settings: Settings, name: str | None = None) -> Any:  # -> pyiceberg.table.Table
    """Load the trades table (never creates it); a missing table or catalog is one clear error."""
    from k2cli.errors import ConfigError
    from k2cli.lake.catalog import split_identifier
    from k2cli.lake.query import TableNotFound, load_pyiceberg_table

    name = name or settings.table
    try:
        split_identifier(name)
    except ValueError as exc:
        raise ConfigError(str(exc), setting="K2_TABLE") from None
    missing = TableNotFound(f"table {name} does not exist in the catalog at {settings.catalog_uri} "
                            "(run `k2 consume` first, or check K2_ICEBERG_CATALOG_URI)",
                            setting="K2_ICEBERG_CATALOG_URI")
    try:
        return load_pyiceberg_table(settings, name, missing)
    except K2Error:
        raise
    except Exception as exc:  # sqlalchemy and friends: the catalog is unreachable
        raise ServiceUnavailable(f"Iceberg catalog unavailable: {described(exc)}",
                                 setting="K2_ICEBERG_CATALOG_URI") from None


def day_label(value: object) -> str:
    """A day-partition value (days since the epoch) as an ISO date; other values as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (_dt.date(1970, 1, 1) + _dt.timedelta(days=value)).isoformat()
    return "null" if value is None else str(value)


def partition_of(data_file: Any) -> str:
    """The display name of a data file's partition (`2026-01-01` for the day partition)."""
    record = data_file.partition
    values = [record[i] for i in range(len(record))] if record is not None else []
    return ",".join(day_label(v) for v in values) or "(unpartitioned)"


def live_files(table: Any, snapshot: Any = None) -> list[LiveFile]:
    """Every data file the snapshot (default: the current one) references."""
    from pyiceberg.manifest import DataFileContent, ManifestContent

    snap = snapshot if snapshot is not None else table.current_snapshot()
    if snap is None:
        return []
    out: list[LiveFile] = []
    for manifest in snap.manifests(table.io):
        if manifest.content != ManifestContent.DATA:
            continue
        for e in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            df = e.data_file
            if df.content == DataFileContent.DATA:
                out.append(LiveFile(FileEntry(df.file_path, partition_of(df), int(df.file_size_in_bytes),
                                              int(df.record_count)), df))
    return out


def summary_of(snapshot: Any) -> dict[str, str]:
    """A snapshot's summary properties (k2's and pyiceberg's), {} when it has none."""
    return dict(snapshot.summary.additional_properties) if snapshot is not None and snapshot.summary else {}


def carried_summary(table: Any, command: str) -> dict[str, str]:
    """The summary a maintenance snapshot records: the consumer's offsets and dedup state as the current
    snapshot has them (so a consumer resuming from the new snapshot alone finds both), and the command."""
    props = {MAINTENANCE_KEY: command}
    summary = summary_of(table.current_snapshot())
    props.update({k: summary[k] for k in CARRIED_KEYS if k in summary})
    return props


def with_retries(table: Any, attempt: Callable[[], T], what: str) -> T:
    """Run `attempt` against the table as loaded; on a lost race (another commit landed) refresh and run it again."""
    from pyiceberg.exceptions import CommitFailedException

    for n in range(1, MAX_ATTEMPTS + 1):
        try:
            return attempt()
        except CommitFailedException:
            log.info("%s: another writer committed first (attempt %d), retrying", what, n)
            time.sleep(min(1.0, 0.02 * n))
            refresh(table)
    raise MaintenanceConflict(f"{what}: other writers committed first {MAX_ATTEMPTS} times in a row; run it again")


def refresh(table: Any) -> None:
    """Reload the table metadata; an unreachable catalog is a ServiceUnavailable."""
    try:
        table.refresh()
    except Exception as exc:
        raise ServiceUnavailable(f"Iceberg catalog unavailable: {described(exc)}",
                                 setting="K2_ICEBERG_CATALOG_URI") from None


@dataclass
class PartitionStats:
    """Data files of one partition."""

    partition: str
    files: int = 0
    records: int = 0
    size_bytes: int = 0
    small_files: int = 0


@dataclass
class TableStats:
    """The table's shape: files per partition, snapshots, manifests."""

    table: str
    location: str
    partitions: list[PartitionStats] = field(default_factory=list)
    snapshots: int = 0
    snapshots_by_operation: dict[str, int] = field(default_factory=dict)
    oldest_snapshot: str | None = None
    newest_snapshot: str | None = None
    manifests: int = 0
    manifest_bytes: int = 0
    metadata_log: int = 0

    def totals(self) -> dict[str, int]:
        """Files, records, bytes and small files over all partitions."""
        return {k: sum(getattr(p, k) for p in self.partitions) for k in ("files", "records", "size_bytes",
                                                                       "small_files")}


def table_stats(table: Any, small_below: int) -> TableStats:
    """Files per partition (files under `small_below` bytes counted as small), snapshots and manifests."""
    from k2cli.timespec import from_micros, iso

    md = table.metadata
    stats = TableStats(table=".".join(table.name()), location=table.location(), metadata_log=len(md.metadata_log))
    for partition, entries in by_partition(f.entry for f in live_files(table)).items():
        stats.partitions.append(PartitionStats(partition, len(entries), sum(f.records for f in entries),
                                               sum(f.size_bytes for f in entries),
                                               sum(1 for f in entries if f.size_bytes < small_below)))
    stats.snapshots = len(md.snapshots)
    for snap in md.snapshots:
        op = str(snap.summary.operation.value) if snap.summary else "unknown"
        stats.snapshots_by_operation[op] = stats.snapshots_by_operation.get(op, 0) + 1
    if md.snapshots:
        times = sorted(s.timestamp_ms for s in md.snapshots)
        stats.oldest_snapshot, stats.newest_snapshot = (iso(from_micros(t * 1000)) for t in (times[0], times[-1]))
    current = table.current_snapshot()
    if current is not None:
        manifests = current.manifests(table.io)
        stats.manifests = len(manifests)
        stats.manifest_bytes = sum(int(m.manifest_length) for m in manifests)
    return stats

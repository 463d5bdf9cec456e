"""`k2 lake compact`: rewrite a partition's small data files into target-size files, one group per commit.

Each group's rows are read once (same schema, same Decimal values), sorted by (exchange, symbol, timestamp) so
row groups (of `ROW_GROUP_ROWS`) prune well on symbol and time, and written once through pyiceberg's own
partitioned writer. The commit replaces exactly the group's files (an OVERWRITE snapshot deleting them and
adding the new ones) and carries the consumer's offsets and dedup state forward from the snapshot it replaces,
so a consumer resuming from the new snapshot finds both. A commit that loses the race against the consumer (or
anyone) is rebuilt on the refreshed table, with the state carried from the new current snapshot; a group whose
files someone else rewrote meanwhile is abandoned and its new files deleted.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k2cli.errors import K2Error
from k2cli.lake import maintenance as mt
from k2cli.lake.maintenance_plan import CompactionGroup, plan_compaction

log = logging.getLogger("k2.lake.compaction")

SORT_KEYS = [("exchange", "ascending"), ("symbol", "ascending"), ("timestamp", "ascending")]
# Row groups of this many rows: with rows sorted by symbol, a one-symbol query skips most of a day's row groups.
ROW_GROUP_ROWS = 16_384
Progress = Callable[[CompactionGroup, int, int], None]  # (group just done, groups done, groups in all)


@dataclass
class CompactionResult:
    """What a compaction did."""

    groups: int = 0
    partitions: list[str] = field(default_factory=list)
    files_removed: int = 0
    files_added: int = 0
    records: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    abandoned: int = 0
    attempts: int = 0
    snapshots: list[int] = field(default_factory=list)


def plan(table: Any, target_bytes: int, min_files: int = 2, partitions: set[str] | None = None,
         ) -> tuple[list[mt.LiveFile], list[CompactionGroup]]:
    """The live files and the groups worth rewriting (only in `partitions` when given)."""
    live = mt.live_files(table)
    entries = [f.entry for f in live if partitions is None or f.entry.partition in partitions]
    return live, plan_compaction(entries, target_bytes, min_files)


def compact(table: Any, target_bytes: int, *, min_files: int = 2, partitions: set[str] | None = None,
            on_progress: Progress | None = None) -> CompactionResult:
    """Compact the table's small files, partition by partition (oldest first), one commit per group."""
    _refuse_delete_files(table)
    ensure_own_retries(table)
    live, groups = plan(table, target_bytes, min_files, partitions)
    by_path = {f.entry.path: f.data_file for f in live}
    result = CompactionResult()
    for n, group in enumerate(groups, 1):
        _compact_group(table, group, [by_path[f.path] for f in group.files], target_bytes, result)
        if group.partition not in result.partitions:
            result.partitions.append(group.partition)
        if on_progress is not None:
            on_progress(group, n, len(groups))
    return result


def ensure_own_retries(table: Any) -> None:
    """Turn off pyiceberg's commit retry on the table (as `k2 consume` does): a retry it rebuilt would carry the
    consumer's state from a stale snapshot; `k2 lake` retries itself with the state re-read."""
    from k2cli.lake.writer import WRITER_TABLE_PROPERTIES

    missing = {k: v for k, v in WRITER_TABLE_PROPERTIES.items() if table.metadata.properties.get(k) != v}
    if missing:
        def attempt() -> None:
            with table.transaction() as tx:
                tx.set_properties(missing)

        mt.with_retries(table, attempt, "setting table properties")


def _refuse_delete_files(table: Any) -> None:
    from pyiceberg.manifest import ManifestContent

    snap = table.current_snapshot()
    if snap is not None and any(m.content != ManifestContent.DATA for m in snap.manifests(table.io)):
        raise K2Error(f"table {'.'.join(table.name())} has delete files; k2 lake compact rewrites append-only "
                      "tables only")


def _compact_group(table: Any, group: CompactionGroup, old: list[Any], target_bytes: int,
                   result: CompactionResult) -> None:
    data = read_files(table, old)
    if data.num_rows != group.records:
        raise K2Error(f"read {data.num_rows} rows from {len(old)} files of {group.partition}, their metadata says "
                      f"{group.records}; nothing was changed")
    new = write_files(table, data.sort_by(SORT_KEYS), target_bytes * max(1.0, data.nbytes / max(1, group.size_bytes)))
    attempts = 0

    def attempt() -> int:
        nonlocal attempts
        attempts += 1
        return replace_files(table, old, new)

    try:
        snapshot_id = mt.with_retries(table, attempt, f"compacting {group.partition}")
    except mt.Abandon:
        log.info("%s: its files were rewritten meanwhile; group left alone", group.partition)
        _delete_quietly(table, new)
        result.abandoned += 1
        return
    except BaseException:
        _delete_quietly(table, new)
        raise
    result.groups += 1
    result.attempts += attempts
    result.snapshots.append(snapshot_id)
    result.files_removed += len(old)
    result.files_added += len(new)
    result.records += data.num_rows
    result.bytes_before += group.size_bytes
    result.bytes_after += sum(int(f.file_size_in_bytes) for f in new)


def read_files(table: Any, data_files: list[Any]) -> Any:  # -> pyarrow.Table
    """The rows of these data files, in the table's current schema."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import FileScanTask

    md = table.metadata
    scan = ArrowScan(md, table.io, md.schema(), AlwaysTrue())
    return scan.to_table([FileScanTask(df) for df in data_files])


def write_files(table: Any, data: Any, target_memory_bytes: float) -> list[Any]:
    """Data files holding `data`, split by partition and into files of about the target size."""
    from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible, _dataframe_to_data_files

    md = table.metadata
    _check_pyarrow_schema_compatible(md.schema(), provided_schema=data.schema, format_version=md.format_version)
    props = {**md.properties, "write.target-file-size-bytes": str(int(target_memory_bytes)),
             "write.parquet.row-group-limit": str(ROW_GROUP_ROWS)}
    staged = md.model_copy(update={"properties": props})
    return list(_dataframe_to_data_files(table_metadata=staged, df=data, io=table.io, write_uuid=uuid.uuid4()))


def replace_files(table: Any, old: list[Any], new: list[Any]) -> int:
    """One commit deleting `old` and adding `new`, carrying the consumer's state (Abandon: `old` are gone)."""
    from pyiceberg.exceptions import ValidationException

    tx = table.transaction()
    try:
        with tx.update_snapshot(snapshot_properties=mt.carried_summary(table, "compact")).overwrite() as rewrite:
            for df in old:
                rewrite.delete_data_file(df)
            for df in new:
                rewrite.append_data_file(df)
        tx.commit_transaction()
    except ValidationException:
        raise mt.Abandon() from None
    snap = table.current_snapshot()
    return int(snap.snapshot_id) if snap is not None else 0


def _delete_quietly(table: Any, data_files: list[Any]) -> None:
    for df in data_files:
        with contextlib.suppress(Exception):
            table.io.delete(df.file_path)

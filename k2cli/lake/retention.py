"""`k2 lake expire` and `k2 lake orphans`: drop old snapshots and the files only they referenced; find (and
delete) files under the table that nothing references any more.

Both are safe beside a running `k2 consume`: the newest snapshot carrying the consumer's offsets and dedup state
is never expired, the expiry commit is retried on a lost race, and a file is deleted only when no retained
snapshot references it (a file a newer commit could still add is never among those) or, for orphans, when it is
also older than a safety age (a writer's data files exist before the commit that adds them).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from k2cli.errors import K2Error
from k2cli.lake import maintenance as mt
from k2cli.lake.maintenance_plan import BadMaintenanceFlag, SnapshotEntry, StoredFile, find_orphans, plan_expiry


@dataclass
class ExpireResult:
    """What an expiry did (or, dry, would do)."""

    expired: list[int] = field(default_factory=list)
    retained: int = 0
    files_deleted: int = 0
    dry_run: bool = False


def expiry_victims(table: Any, keep: int, older_than_ms: int | None) -> list[int]:
    """Snapshot ids the table as loaded would lose (see `plan_expiry`)."""
    md = table.metadata
    entries = [SnapshotEntry(s.snapshot_id, s.timestamp_ms,
                             any(k in mt.summary_of(s) for k in mt.CARRIED_KEYS)) for s in md.snapshots]
    by_id = {s.snapshot_id: s for s in md.snapshots}
    ancestry: list[int] = []
    snap = by_id.get(md.current_snapshot_id) if md.current_snapshot_id is not None else None
    while snap is not None and len(ancestry) <= len(by_id):
        ancestry.append(snap.snapshot_id)
        snap = by_id.get(snap.parent_snapshot_id) if snap.parent_snapshot_id is not None else None
    return plan_expiry(entries, keep=keep, older_than_ms=older_than_ms,
                       protected=[r.snapshot_id for r in md.refs.values()], ancestry=ancestry)


def expire(table: Any, keep: int, older_than_ms: int | None, dry_run: bool = False) -> ExpireResult:
    """Expire snapshots beyond the newest `keep` (and older than `older_than_ms`), then delete their files."""
    if keep < 1:
        raise BadMaintenanceFlag("--keep must be at least 1")
    mt.refresh(table)
    if dry_run:
        victims = expiry_victims(table, keep, older_than_ms)
        return ExpireResult(victims, len(table.metadata.snapshots) - len(victims), dry_run=True)
    expired_snaps: list[Any] = []

    def attempt() -> list[int]:
        victims = expiry_victims(table, keep, older_than_ms)
        if not victims:
            return []
        expired_snaps[:] = [table.metadata.snapshot_by_id(v) for v in victims]
        try:
            table.maintenance.expire_snapshots().by_ids(victims).commit()
        except ValueError:  # another writer expired some of them first: plan again on the fresh table
            from pyiceberg.exceptions import CommitFailedException

            raise CommitFailedException("snapshots to expire changed") from None
        return victims

    victims = mt.with_retries(table, attempt, "expiring snapshots")
    result = ExpireResult(victims, len(table.metadata.snapshots))
    if victims:
        result.files_deleted = _delete_unreferenced(table, expired_snaps)
    return result


class _Manifests:
    """Manifest paths per snapshot and live data-file paths per manifest, each read once."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._data: dict[str, frozenset[str]] = {}

    def manifests(self, snap: Any) -> list[Any]:
        """A snapshot's manifests ([] when its manifest list is gone)."""
        try:
            return list(snap.manifests(self.table.io))
        except (OSError, FileNotFoundError):
            return []

    def data_paths(self, manifest: Any) -> frozenset[str]:
        """Live data and delete files a manifest lists."""
        got = self._data.get(manifest.manifest_path)
        if got is None:
            got = frozenset(e.data_file.file_path
                            for e in manifest.fetch_manifest_entry(self.table.io, discard_deleted=True))
            self._data[manifest.manifest_path] = got
        return got

    def referenced(self, snapshots: list[Any]) -> set[str]:
        """Manifest lists, manifests and data files the snapshots reference."""
        out: set[str] = set()
        for snap in snapshots:
            out.add(snap.manifest_list)
            for m in self.manifests(snap):
                out.add(m.manifest_path)
                out.update(self.data_paths(m))
        return out


def _delete_unreferenced(table: Any, expired: list[Any]) -> int:
    """Delete what only the expired snapshots referenced; how many files went."""
    reader = _Manifests(table)
    live = reader.referenced(list(table.metadata.snapshots))
    doomed = reader.referenced([s for s in expired if s is not None]) - live
    deleted = 0
    for path in sorted(doomed):
        with contextlib.suppress(FileNotFoundError, OSError):
            table.io.delete(path)
            deleted += 1
    return deleted


def referenced_paths(table: Any) -> set[str]:
    """Every file the table's metadata references: metadata files, manifest lists, manifests, data files."""
    md = table.metadata
    out = {table.metadata_location, *(e.metadata_file for e in md.metadata_log)}
    out.update(s.statistics_path for s in md.statistics)
    out.update(s.statistics_path for s in md.partition_statistics)
    return out | _Manifests(table).referenced(list(md.snapshots))


def stored_files(table: Any) -> list[StoredFile]:
    """Every file under the table's location, with its modification time."""
    from pyarrow import fs as pafs
    from pyiceberg.io.pyarrow import PyArrowFileIO

    io = table.io
    if not isinstance(io, PyArrowFileIO):
        raise K2Error("k2 lake orphans needs pyiceberg's PyArrow file IO to list the warehouse")
    scheme, netloc, path = PyArrowFileIO.parse_location(table.location())
    filesystem = io.fs_by_scheme(scheme, netloc)
    infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    prefix = f"{scheme}://" if scheme != "file" else ""
    return [StoredFile(prefix + info.path, int(info.mtime_ns // 1_000_000) if info.mtime_ns else 0, int(info.size))
            for info in infos if info.type == pafs.FileType.File]


@dataclass
class OrphanResult:
    """Orphan files found (and deleted unless dry)."""

    orphans: list[StoredFile]
    scanned: int
    deleted: int = 0
    dry_run: bool = True


def orphans(table: Any, min_age_ms: int, delete: bool = False) -> OrphanResult:
    """Files under the table no snapshot or metadata references, older than `min_age_ms`; deleted if asked."""
    stored = stored_files(table)  # listed before the metadata is read: a file added meanwhile is referenced
    mt.refresh(table)
    found = find_orphans(stored, referenced_paths(table), now_ms=int(time.time() * 1000), min_age_ms=min_age_ms)
    result = OrphanResult(found, len(stored), dry_run=not delete)
    if delete:
        for f in found:
            with contextlib.suppress(FileNotFoundError, OSError):
                table.io.delete(f.path)
                result.deleted += 1
    return result

"""Pure planning for `k2 lake`: which data files to rewrite together, which snapshots to expire, which files are
orphans. Plain values in, plain values out: no pyiceberg, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from k2cli.errors import K2Error

MB = 1024 * 1024
DEFAULT_TARGET_BYTES = 128 * MB
SMALL_FRACTION = 0.75  # a file below this share of the target is worth rewriting
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|kib|mb|m|mib|gb|g|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": MB, "mb": MB, "mib": MB,
               "g": 1024 * MB, "gb": 1024 * MB, "gib": 1024 * MB}


class BadMaintenanceFlag(K2Error):
    """A `k2 lake` flag has a value that cannot be used."""

    exit_code = 2


def parse_size(text: str, flag: str = "size") -> int:
    """Parse `128MB`, `64m`, `512KB` or plain bytes (binary units) into bytes (at least 1 KB)."""
    match = _SIZE.match(text or "")
    if not match:
        raise BadMaintenanceFlag(f"{flag} {text!r} is not a size like 128MB, 512KB or 1GB")
    size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    if size < 1024:
        raise BadMaintenanceFlag(f"{flag} {text!r} is below 1KB")
    return size


@dataclass(frozen=True)
class FileEntry:
    """One live data file: its path, partition (e.g. a day number), size and row count."""

    path: str
    partition: str
    size_bytes: int
    records: int


@dataclass(frozen=True)
class CompactionGroup:
    """Files of one partition to rewrite into as few target-size files as their rows need."""

    partition: str
    files: tuple[FileEntry, ...]

    @property
    def size_bytes(self) -> int:
        """Bytes the group reads."""
        return sum(f.size_bytes for f in self.files)

    @property
    def records(self) -> int:
        """Rows the group rewrites."""
        return sum(f.records for f in self.files)


def by_partition(files: Iterable[FileEntry]) -> dict[str, list[FileEntry]]:
    """Files grouped by partition, partitions in sorted order, files by path."""
    out: dict[str, list[FileEntry]] = {}
    for f in sorted(files, key=lambda f: (f.partition, f.path)):
        out.setdefault(f.partition, []).append(f)
    return out


def plan_compaction(files: Iterable[FileEntry], target_bytes: int = DEFAULT_TARGET_BYTES,
                    min_files: int = 2, small_fraction: float = SMALL_FRACTION) -> list[CompactionGroup]:
    """Groups of small files per partition, each filling up to about `target_bytes`.

    A file is small below `small_fraction * target_bytes`. Small files of a partition are packed in path order
    (the writer's names start with a time-ordered counter) into groups closed once they reach the target;
    a group of fewer than `min_files` files would gain nothing and is left out.
    """
    limit = small_fraction * target_bytes
    groups: list[CompactionGroup] = []
    for partition, entries in by_partition(files).items():
        current: list[FileEntry] = []
        size = 0
        for f in (f for f in entries if f.size_bytes < limit):
            if current and size + f.size_bytes > target_bytes:
                groups.append(CompactionGroup(partition, tuple(current)))
                current, size = [], 0
            current.append(f)
            size += f.size_bytes
        if current:
            groups.append(CompactionGroup(partition, tuple(current)))
    return [g for g in groups if len(g.files) >= max(2, min_files)]


@dataclass(frozen=True)
class SnapshotEntry:
    """One snapshot: id, commit time (ms since the epoch), and whether its summary carries the consumer's state."""

    snapshot_id: int
    timestamp_ms: int
    carries_state: bool = False


def plan_expiry(snapshots: Iterable[SnapshotEntry], *, keep: int, older_than_ms: int | None = None,
                protected: Iterable[int] = (), ancestry: Iterable[int] = ()) -> list[int]:
    """Snapshot ids to expire, oldest first.

    The newest `keep` snapshots stay; of the rest, only those older than `older_than_ms` go (when given). The
    `protected` ids (branch and tag heads) stay, and so does the newest snapshot of `ancestry` (current first)
    that carries the consumer's offsets and dedup state, whatever its age.
    """
    ordered = sorted(snapshots, key=lambda s: (s.timestamp_ms, s.snapshot_id), reverse=True)
    keep_ids = set(protected) | {s.snapshot_id for s in ordered[:max(1, keep)]}
    carrying = {s.snapshot_id for s in ordered if s.carries_state}
    keep_ids.update(next(([sid] for sid in ancestry if sid in carrying), []))
    victims = [s for s in ordered[max(1, keep):] if s.snapshot_id not in keep_ids
               and (older_than_ms is None or s.timestamp_ms < older_than_ms)]
    return [s.snapshot_id for s in reversed(victims)]


@dataclass(frozen=True)
class StoredFile:
    """A file found under the table's location: path and last-modified time (ms since the epoch)."""

    path: str
    modified_ms: int
    size_bytes: int = 0


def find_orphans(stored: Iterable[StoredFile], referenced: Iterable[str], *, now_ms: int,
                 min_age_ms: int) -> list[StoredFile]:
    """Files no snapshot or metadata references, last modified at least `min_age_ms` ago (by path)."""
    known = {normalise_path(p) for p in referenced}
    cutoff = now_ms - min_age_ms
    return sorted((f for f in stored if normalise_path(f.path) not in known and f.modified_ms <= cutoff),
                  key=lambda f: f.path)


def normalise_path(path: str) -> str:
    """A location without its scheme and with single slashes, so `file:///a/b` and `/a/b` compare equal."""
    _, sep, rest = path.partition("://")
    body = rest if sep else path
    return "/" + "/".join(part for part in body.split("/") if part)


def partition_label(values: Mapping[str, object]) -> str:
    """A partition's display name: `timestamp_day=2026-01-01` style, fields in order."""
    return ",".join(f"{k}={v}" for k, v in values.items()) or "(unpartitioned)"

"""Snapshot expiry inside the consumer's commits, and deleting the files only expired snapshots referenced."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from k2cli.errors import described
from k2cli.lake import offsets as off

log = logging.getLogger("k2.lake.writer")


class SnapshotExpiry:
    """Which snapshots a writer's next commit expires, and the clean-up after it did."""

    def __init__(self, snapshots_to_keep: int, expire_step: int) -> None:
        self.snapshots_to_keep = max(1, snapshots_to_keep)
        self.expire_step = max(1, expire_step)
        self.expired_total = 0
        self._since_expiry = 0
        self._manifests_of: dict[int, frozenset[str]] = {}

    def plan(self, table: Any, chain: list[Any]) -> tuple[list[int], list[Any]]:
        """Snapshots to expire with this commit.

        A writer expires at most once per `expire_step` of its own commits: then, if the table (with the new
        snapshot) holds more than `snapshots_to_keep`, the oldest go. So a short run (fewer commits than the
        step) only ever adds snapshots, and a long one keeps the count between keep and keep + step.
        """
        if self._since_expiry + 1 < self.expire_step:
            return [], []
        md = table.metadata
        excess = len(md.snapshots) + 1 - self.snapshots_to_keep
        if excess <= 0:
            return [], []
        protected = {ref.snapshot_id for ref in md.refs.values()}
        for snap in chain:  # the newest snapshot carrying offsets stays, whatever else happened to the table
            if snap.summary and off.OFFSETS_KEY in snap.summary.additional_properties:
                protected.add(snap.snapshot_id)
                break
        ordered = sorted(md.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number or 0))
        victims = [s for s in ordered if s.snapshot_id not in protected][:excess]
        return [s.snapshot_id for s in victims], victims

    def committed(self, table: Any, expired: list[Any]) -> set[int] | None:
        """Count a landed commit; after one that expired snapshots, delete their files and return the kept ids."""
        self._since_expiry += 1
        if not expired:
            return None
        self._since_expiry = 0
        self.expired_total += len(expired)
        return self._delete_orphans(table, expired)

    def _manifest_paths(self, table: Any, snap: Any) -> frozenset[str]:
        paths = self._manifests_of.get(snap.snapshot_id)
        if paths is None:
            paths = frozenset(m.manifest_path for m in snap.manifests(table.io))
            self._manifests_of[snap.snapshot_id] = paths
        return paths

    def _delete_orphans(self, table: Any, expired: list[Any]) -> set[int] | None:
        """Delete manifest lists of expired snapshots and manifests no retained snapshot references (best effort)."""
        io = table.io
        try:
            retained = table.metadata.snapshots
            live: set[str] = set()
            for snap in retained:
                live.update(self._manifest_paths(table, snap))
            doomed: set[str] = set()
            for snap in expired:
                with contextlib.suppress(Exception):  # its manifest list may already be gone
                    doomed.update(self._manifest_paths(table, snap))
                doomed.add(snap.manifest_list)
            for path in doomed - live:
                with contextlib.suppress(Exception):
                    io.delete(path)
            keep_ids = {s.snapshot_id for s in retained}
            self._manifests_of = {k: v for k, v in self._manifests_of.items() if k in keep_ids}
            return keep_ids
        except Exception as exc:
            log.warning("could not clean files of expired snapshots: %s", described(exc))
            return None

"""Exactly-once commits of consumer batches into the Iceberg table, and the maintenance that keeps commits flat.

Protocol (one Iceberg commit per batch):

1. The batch's rows are written to Parquet data files once.
2. The table is refreshed. If a snapshot in the current ancestry carries this commit's ``k2.commit-id``, an
   earlier attempt already landed (its reply was lost): done. If, for any partition in the batch, the table's
   recorded offset is not the one the consumer started the batch from, another writer has committed those
   records: `CommitConflict` (the caller drops the batch and re-reads from the table's offsets).
3. A snapshot is committed that adds the data files and records in its summary the offsets of every partition
   (carried forward from the current snapshot, moved on by this batch); see `k2cli.lake.offsets` for the keys.
   The catalog swaps the metadata pointer atomically, so data and offsets land together or not at all.
   A concurrent commit (CommitFailedException) sends us back to step 2 with the same data files.

Commit latency stays flat because (a) snapshots beyond `snapshots_to_keep` are expired in the same commit,
once per `expire_step` commits of this writer (so a run shorter than the step only adds snapshots, and a long
run keeps the count between keep and keep + step), with the manifest lists and manifests only they referenced
deleted afterwards, and (b) the transaction caches its staged metadata:
pyiceberg otherwise rebuilds and deep-copies the whole table metadata on every internal access (about 20 per
append), which is what made commits grow by ~1.5 ms per retained snapshot.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from k2cli.errors import K2Error, ServiceUnavailable, described
from k2cli.lake import dedupstate as dd
from k2cli.lake import offsets as off
from k2cli.lake.expiry import SnapshotExpiry

log = logging.getLogger("k2.lake.writer")

WRITER_TABLE_PROPERTIES = {
    # pyiceberg's own commit retry would re-apply our snapshot on top of another writer's without re-checking
    # the offsets fence or re-computing the carried offsets, so the writer disables it and retries itself.
    "commit.retry.num-retries": "0",
    # Manifest merging rewrites every manifest of a bin; with the 8 MB default the one merged manifest holds
    # every data file of the table, so each merge (every 20 commits) grew with the table (p95 commit 140 ms at
    # commit 100, 600 ms at commit 1,900). Full 128 KB manifests are left alone: merges stay bounded.
    "commit.manifest.target-size-bytes": str(128 * 1024),
}
MAX_COMMIT_ATTEMPTS = 20


class CommitConflict(K2Error):
    """Another writer has committed offsets for partitions of this batch; the batch must be dropped and re-read."""

    def __init__(self, partitions: Mapping[off.TopicPartition, tuple[int | None, int | None]]) -> None:
        detail = ", ".join(f"{t}[{p}] expected {e} found {f}" for (t, p), (e, f) in sorted(partitions.items()))
        super().__init__(f"table offsets moved on under this consumer: {detail}")
        self.partitions = dict(partitions)


class WriteUnavailable(ServiceUnavailable):
    """The catalog or the warehouse could not take the commit (transient: retry, breaker)."""


@dataclass
class CommitResult:
    """What one `TableWriter.commit` did."""

    snapshot_id: int | None
    seconds: float
    attempts: int = 1
    already_committed: bool = False
    expired: int = 0
    offsets: off.Offsets = field(default_factory=dict)


def _lean_transaction_class() -> type:
    from pyiceberg.table import Transaction

    _stage_all: Callable[[Any, Any], Any]
    try:  # the per-update step of update_table_metadata, without its final deep copy
        from pyiceberg.table.update import _apply_table_update, _TableMetadataUpdateContext
    except ImportError:  # pragma: no cover - other pyiceberg versions: cache the public (deep-copying) result
        from pyiceberg.table.update import update_table_metadata

        _stage_all = update_table_metadata
    else:
        def _stage_lean(base: Any, updates: Any) -> Any:
            context = _TableMetadataUpdateContext()
            for update in updates:
                base = _apply_table_update(update, base, context)
            return base

        _stage_all = _stage_lean

    class LeanTransaction(Transaction):
        """A Transaction that stages metadata only when its updates change, without deep copies (models are frozen).

        The catalog still builds the committed metadata from the updates with pyiceberg's full rules.
        """

        _k2_cache: tuple[Any, Any, Any] | None = None

        @property
        def table_metadata(self):
            base, updates = self._table.metadata, self._updates
            if not updates:
                return base
            cache = self._k2_cache
            if cache is not None and cache[0] is base and cache[1] is updates:
                return cache[2]
            staged = _stage_all(base, updates)
            self._k2_cache = (base, updates, staged)
            return staged

    return LeanTransaction


_LEAN: type | None = None


def _transient(exc: BaseException) -> bool:
    """Whether a write failure is worth retrying (services and storage) rather than a bug."""
    if isinstance(exc, OSError | TimeoutError | ServiceUnavailable | ConnectionError):
        return True
    from pyiceberg.exceptions import ServerError, ServiceUnavailableError

    if isinstance(exc, ServerError | ServiceUnavailableError):  # a REST catalog's 5xx answers
        return True
    try:
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.exc import TimeoutError as PoolTimeout
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, DBAPIError | PoolTimeout)


def _raise_if_transient(exc: BaseException, doing: str, setting: str = "K2_ICEBERG_CATALOG_URI") -> None:
    """Raise WriteUnavailable ("<doing>: <the error>") for a transient failure; return for any other."""
    if _transient(exc):
        raise WriteUnavailable(f"{doing}: {described(exc)}", setting=setting) from None


class TableWriter:
    """Commits batches with their Kafka offsets to one Iceberg table, exactly once."""

    def __init__(self, catalog: Any, table_name: str, *, snapshots_to_keep: int = 100,
                 expire_step: int = 20, consumer_label: str = "") -> None:
        from k2cli.lake.catalog import ensure_trades_table
        from k2cli.lake.leancommit import lean_catalog

        global _LEAN
        if _LEAN is None:
            _LEAN = _lean_transaction_class()
        self._lean: type = _LEAN
        self.catalog = catalog
        self.table_name = table_name
        self.expiry = SnapshotExpiry(snapshots_to_keep, expire_step)
        self.consumer_label = consumer_label
        self.commits = 0
        self._checked_schema: tuple[int, Any] | None = None
        self._summaries: dict[int, tuple[str | None, off.Offsets]] = {}
        self._dedup_states: dict[int, dd.DedupState] = {}
        try:
            self.table = ensure_trades_table(catalog, table_name)
            self.table.catalog = lean_catalog(self.table.catalog)
            self._ensure_properties()
        except Exception as exc:
            _raise_if_transient(exc, f"Iceberg table {table_name} unavailable")
            raise

    @property
    def expired_total(self) -> int:
        """Snapshots this writer has expired."""
        return self.expiry.expired_total

    @property
    def _merge(self) -> bool:
        return self.table.metadata.properties.get("commit.manifest-merge.enabled", "false").lower() == "true"

    def _ensure_properties(self) -> None:
        props = self.table.metadata.properties
        missing = {k: v for k, v in WRITER_TABLE_PROPERTIES.items() if props.get(k) != v}
        if missing:
            from pyiceberg.exceptions import CommitFailedException

            for _ in range(MAX_COMMIT_ATTEMPTS):
                try:
                    with self.table.transaction() as tx:
                        tx.set_properties(missing)
                    return
                except CommitFailedException:
                    self.table.refresh()

    # ------------------------------------------------------------ reading offsets

    def refresh(self) -> None:
        """Reload the table metadata from the catalog."""
        try:
            self.table.refresh()
        except Exception as exc:
            _raise_if_transient(exc, "Iceberg catalog unavailable")
            raise

    def _ancestry(self) -> list[Any]:
        md = self.table.metadata
        by_id = {s.snapshot_id: s for s in md.snapshots}
        chain: list[Any] = []
        snap = by_id.get(md.current_snapshot_id) if md.current_snapshot_id is not None else None
        while snap is not None and len(chain) <= len(by_id):
            chain.append(snap)
            snap = by_id.get(snap.parent_snapshot_id) if snap.parent_snapshot_id is not None else None
        return chain

    def _recorded(self, snap: Any) -> tuple[str | None, off.Offsets]:
        """(commit id, offsets) of a snapshot's summary, decoded once per snapshot (summaries never change)."""
        got = self._summaries.get(snap.snapshot_id)
        if got is None:
            props = snap.summary.additional_properties if snap.summary else {}
            got = (props.get(off.COMMIT_ID_KEY), off.decode_offsets(props.get(off.OFFSETS_KEY)))
            self._summaries[snap.snapshot_id] = got
        return got

    def _chain_offsets(self, chain: list[Any]) -> off.Offsets:
        if len(self._summaries) > 2 * len(chain) + 100:  # snapshots another writer expired
            live = {s.snapshot_id for s in chain}
            self._summaries = {k: v for k, v in self._summaries.items() if k in live}
        return off.merge_max(*(self._recorded(s)[1] for s in chain))

    def offsets(self, refresh: bool = True) -> off.Offsets:
        """Resume offsets: per partition, the max recorded by the current snapshot and its ancestors."""
        if refresh:
            self.refresh()
        return self._chain_offsets(self._ancestry())

    def _chain_dedup(self, chain: list[Any]) -> tuple[dd.DedupState, str | None]:
        """The dedup state of the newest snapshot in the chain carrying one, and its summary text."""
        for snap in chain:
            props = snap.summary.additional_properties if snap.summary else {}
            text = props.get(dd.DEDUP_KEY)
            if text is None:
                continue
            state = self._dedup_states.get(snap.snapshot_id)
            if state is None:
                state = self._remember_dedup(snap.snapshot_id, dd.decode_state(text))
            return state, text
        return dd.DedupState(), None

    def _remember_dedup(self, snapshot_id: int, state: dd.DedupState) -> dd.DedupState:
        self._dedup_states[snapshot_id] = state
        if len(self._dedup_states) > 8:  # only the newest snapshots' states are ever asked for again
            del self._dedup_states[next(iter(self._dedup_states))]
        return state

    def dedup_state(self) -> dd.DedupState:
        """The trade ids in the table per (exchange, symbol), as the newest summary records them (as last loaded)."""
        return self._chain_dedup(self._ancestry())[0]

    def snapshot_count(self) -> int:
        """How many snapshots the table's metadata holds (as last loaded)."""
        return len(self.table.metadata.snapshots)

    # ------------------------------------------------------------ committing

    def _write_files(self, data: Any, write_uuid: uuid.UUID) -> list[Any]:
        from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible, _dataframe_to_data_files

        md = self.table.metadata
        key = (md.current_schema_id, data.schema)
        if key != self._checked_schema:
            _check_pyarrow_schema_compatible(md.schema(), provided_schema=data.schema,
                                             format_version=md.format_version)
            self._checked_schema = key
        return list(_dataframe_to_data_files(table_metadata=md, df=data, io=self.table.io, write_uuid=write_uuid))

    def commit(self, data: Any, ranges: Mapping[off.TopicPartition, tuple[int, int]],
               expected: Mapping[off.TopicPartition, int | None], *, records: int = 0, dlq_records: int = 0,
               dedup: dd.DedupState | None = None) -> CommitResult:
        """Commit `data` (a pyarrow Table, possibly empty) with the offsets of `ranges` ({tp: (first, next)}).

        `expected[tp]` is the table offset this batch continues from (None: the table had none). `dedup` holds
        the trade ids of `data`, merged into the table's (None: the table's state is carried forward as it is).
        Raises CommitConflict, WriteUnavailable (transient), or lets a programming error through.
        """
        from pyiceberg.exceptions import CommitFailedException

        started = time.perf_counter()
        batch = _Batch(uuid.uuid4().hex, ranges, expected, records, dlq_records, dedup)
        try:
            files = self._write_files(data, uuid.uuid4()) if data is not None and data.num_rows else []
        except Exception as exc:
            _raise_if_transient(exc, "cannot write data files", "K2_ICEBERG_WAREHOUSE")
            raise
        attempts = 0
        while True:
            attempts += 1
            try:
                if attempts > 1:
                    self.table.refresh()
                result = self._attempt(batch, files, attempts)
            except CommitFailedException:
                if attempts >= MAX_COMMIT_ATTEMPTS:
                    raise WriteUnavailable(f"commit to {self.table_name} kept conflicting with other writers "
                                           f"({attempts} attempts)", setting="K2_ICEBERG_CATALOG_URI") from None
                time.sleep(min(0.5, 0.005 * attempts))
                continue
            except CommitConflict:
                raise
            except Exception as exc:
                _raise_if_transient(exc, f"Iceberg commit to {self.table_name} failed")
                raise
            result.seconds = time.perf_counter() - started
            return result

    def _attempt(self, batch: _Batch, files: list[Any], attempts: int) -> CommitResult:
        """One try at committing the batch against the table as last loaded (CommitFailedException: try again)."""
        chain = self._ancestry()
        current = self._chain_offsets(chain)
        if attempts > 1 and any(self._recorded(s)[0] == batch.commit_id for s in chain):
            # an earlier attempt landed although it was reported as failed
            return CommitResult(chain[0].snapshot_id, 0.0, attempts, already_committed=True, offsets=current)
        moved = {tp: (batch.expected.get(tp), current.get(tp)) for tp in batch.ranges
                 if current.get(tp) != batch.expected.get(tp)}
        if moved:
            raise CommitConflict(moved)
        new_offsets = off.advance(current, {tp: nxt for tp, (_, nxt) in batch.ranges.items()})
        props, new_state = self._summary(batch, new_offsets, chain)
        expire_ids, expired_snaps = self.expiry.plan(self.table, chain)
        tx = self._lean(self.table)
        update = tx.update_snapshot(snapshot_properties=props)
        with (update.merge_append() if self._merge else update.fast_append()) as append:
            for data_file in files:
                append.append_data_file(data_file)
        snapshot_id = append.snapshot_id
        if expire_ids:
            from pyiceberg.table.update.snapshot import ExpireSnapshots

            ExpireSnapshots(tx).by_ids(expire_ids).commit()
        tx.commit_transaction()
        self.commits += 1
        if dd.DEDUP_KEY in props:
            self._remember_dedup(snapshot_id, new_state)
        keep_ids = self.expiry.committed(self.table, expired_snaps)
        if keep_ids is not None:
            self._summaries = {k: v for k, v in self._summaries.items() if k in keep_ids}
        return CommitResult(snapshot_id, 0.0, attempts, expired=len(expire_ids), offsets=new_offsets)

    def _summary(self, batch: _Batch, new_offsets: off.Offsets,
                 chain: list[Any]) -> tuple[dict[str, str], dd.DedupState]:
        """The new snapshot's summary properties, and the dedup state they record."""
        props = {
            off.OFFSETS_KEY: off.encode_offsets(new_offsets),
            off.BATCH_KEY: off.encode_ranges(batch.ranges),
            off.COMMIT_ID_KEY: batch.commit_id,
            off.RECORDS_KEY: str(batch.records),
            off.DLQ_RECORDS_KEY: str(batch.dlq_records),
        }
        if self.consumer_label:
            props[off.CONSUMER_KEY] = self.consumer_label
        carried, carried_text = self._chain_dedup(chain)
        new_state = carried.merged(batch.dedup) if batch.dedup is not None else carried
        if batch.dedup is not None:
            props[dd.DEDUP_KEY] = dd.encode_state(new_state)
        elif carried_text is not None:
            props[dd.DEDUP_KEY] = carried_text
        return props, new_state


@dataclass(frozen=True)
class _Batch:
    """What one commit records besides its data files."""

    commit_id: str
    ranges: Mapping[off.TopicPartition, tuple[int, int]]
    expected: Mapping[off.TopicPartition, int | None]
    records: int
    dlq_records: int
    dedup: dd.DedupState | None

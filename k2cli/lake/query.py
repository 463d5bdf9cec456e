"""Read the trades table: pyiceberg plans the data files (partition and column-stat pruning), DuckDB reads them.

Object-store data files (an `s3://` warehouse) are read through local copies (k2cli/lake/objectcache.py).
DuckDB never sees more than the files the filters allow, and it runs locked down: no extension loading,
no file access beyond the planned Parquet files (`enable_external_access=false` + `allowed_paths`), and
the configuration locked, so even a query that slipped past the read-only check cannot write anything.
Every value an operator gives is a bound parameter or checked against a fixed set.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2cli.errors import K2Error, ServiceUnavailable, first_line
from k2cli.lake.plan import BadQuery, DataFile, ScanPlan, SnapshotInfo, TradeFilter
from k2cli.settings import Settings
from k2cli.timespec import iso, to_micros
from k2cli.trade import FIELD_NAMES

__all__ = ["BadQuery", "DataFile", "QueryResult", "ScanPlan", "TableNotFound", "TradeFilter", "TradesLake"]

MAX_LIMIT = 1_000_000
ORDERS = {"asc": "ASC", "desc": "DESC"}
PLANNERS = ("auto", "metadata", "pyiceberg")
_COLUMNS = ", ".join(f'"{name}"' for name in FIELD_NAMES)
# The operator's `trades` view: price and quantity widened to DECIMAL(38,8), so price*quantity (DECIMAL(38,16))
# and its sums stay exact instead of overflowing DECIMAL(18); `notional` is that product.
_WIDE = "DECIMAL(38,8)"
_VIEW_COLUMNS = ", ".join(
    f'CAST("{name}" AS {_WIDE}) AS "{name}"' if name in ("price", "quantity") else f'"{name}"'
    for name in FIELD_NAMES) + f', CAST("price" AS {_WIDE}) * CAST("quantity" AS {_WIDE}) AS "notional"'


class TableNotFound(K2Error):
    """The trades table does not exist in the catalog yet."""

    exit_code = 1


@dataclass
class QueryResult:
    """Rows as Python values (Decimal, aware UTC datetime, list, dict) plus how they were obtained."""

    columns: list[str]
    rows_: list[dict[str, Any]]
    plan: ScanPlan | None = None
    files_read: int = 0
    elapsed_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    arrow_schema: Any = None  # pyarrow.Schema for to_arrow(), or None to infer
    arrow_table: Any = None  # set when the rows came from Arrow already

    @property
    def num_rows(self) -> int:
        """How many rows."""
        return len(self.rows_)

    def rows(self) -> list[dict[str, Any]]:
        """The rows."""
        return self.rows_

    def to_arrow(self) -> Any:  # -> pyarrow.Table
        """The rows as an Arrow table (pyarrow is imported only here)."""
        if self.arrow_table is not None:
            return self.arrow_table
        import pyarrow as pa

        schema = self.arrow_schema
        if isinstance(schema, _lazy):
            schema = schema.factory()
        if schema is not None:
            return pa.Table.from_pylist(self.rows_, schema=schema)
        return pa.Table.from_pylist(self.rows_)


def _pythonize(value: Any) -> Any:
    if isinstance(value, _dt.datetime) and value.tzinfo is not None:
        return value.astimezone(_dt.UTC)
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return dict(value)  # Arrow maps come back as lists of (key, value) pairs
    return value


def _fetch(relation: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """All rows of a DuckDB relation as dicts of Python values, without going through Arrow."""
    columns = list(relation.columns)
    return columns, [{c: _pythonize(v) for c, v in zip(columns, row, strict=True)} for row in relation.fetchall()]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _decode_ts(raw: bytes | None) -> int | None:
    if raw is None or len(raw) != 8:
        return None
    return struct.unpack("<q", raw)[0]


class PyIcebergSource:
    """Planning and snapshots through pyiceberg (the reference; used when the metadata reader declines)."""

    planner = "pyiceberg"

    def __init__(self, table: Any, cache_dir: Path | None = None) -> None:
        self.table = table
        self.cache_dir = cache_dir  # where object-store data files are copied for DuckDB; None: local files only
        self._ts_field_id = table.schema().find_field("timestamp").field_id

    def name(self) -> str:
        """namespace.table."""
        return ".".join(self.table.name())

    def _info(self, snap: Any) -> SnapshotInfo:
        summary = snap.summary.model_dump() if snap.summary is not None else {}
        return SnapshotInfo(snap.snapshot_id, snap.parent_snapshot_id, snap.timestamp_ms,
                            snap.sequence_number or 0, {str(k): str(v) for k, v in summary.items()})

    def current_snapshot(self) -> SnapshotInfo | None:
        """The snapshot readers see."""
        snap = self.table.current_snapshot()
        return self._info(snap) if snap is not None else None

    def snapshots(self) -> list[SnapshotInfo]:
        """Every retained snapshot."""
        return [self._info(s) for s in self.table.snapshots()]

    def plan(self, flt: TradeFilter) -> ScanPlan:
        """Plan with pyiceberg's partition and metrics evaluators."""
        from k2cli.lake.metadata import local_path

        started = time.perf_counter()
        snapshot = self.table.current_snapshot()
        if snapshot is None:
            return ScanPlan(None, [], 0, (time.perf_counter() - started) * 1000, self.planner)
        files: list[DataFile] = []
        remote: list[int] = []
        for task in self.table.scan(row_filter=flt.iceberg_expression()).plan_files():
            if task.delete_files:
                raise K2Error(f"table {self.name()} has delete files; k2 query reads append-only tables "
                              "(compact the table first)")
            data_file = task.file
            try:
                path = local_path(data_file.file_path)
            except Exception:
                if self.cache_dir is None:
                    raise K2Error(f"data file {data_file.file_path} is not on the local filesystem",
                                  setting="K2_ICEBERG_WAREHOUSE") from None
                path = data_file.file_path
                remote.append(len(files))
            files.append(DataFile(
                path=path, record_count=data_file.record_count, size_bytes=data_file.file_size_in_bytes,
                lower_ts=_decode_ts((data_file.lower_bounds or {}).get(self._ts_field_id)),
                upper_ts=_decode_ts((data_file.upper_bounds or {}).get(self._ts_field_id)),
            ))
        if remote and self.cache_dir is not None:
            self._localise(files, remote, self.cache_dir)
        total = int(snapshot.summary.get("total-data-files") or 0) if snapshot.summary else 0
        return ScanPlan(snapshot.snapshot_id, files, max(total, len(files)), (time.perf_counter() - started) * 1000,
                        self.planner)


    def _localise(self, files: list[DataFile], remote: list[int], cache_dir: Path) -> None:
        """Point the object-store files of a plan at local copies (downloaded through the table's FileIO)."""
        from k2cli.lake.objectcache import local_copies

        try:
            paths = local_copies(self.table.io, [files[i].path for i in remote], cache_dir)
        except OSError as exc:
            raise ServiceUnavailable(f"reading the table's data files from object storage: {first_line(exc)}",
                                     setting="K2_S3_ENDPOINT") from None
        for i, path in zip(remote, paths, strict=True):
            files[i] = dataclasses.replace(files[i], path=path)


class TradesLake:
    """The trades table opened for reading, through a planning source (metadata reader or pyiceberg)."""

    def __init__(self, source: Any, threads: int | None = None) -> None:
        self.source = source
        self.threads = threads
        self._engine_con: Any = None

    def close(self) -> None:
        """Close the DuckDB connection the engine's own queries reuse."""
        if self._engine_con is not None:
            self._engine_con.close()
            self._engine_con = None

    def _engine(self) -> Any:  # -> duckdb.DuckDBPyConnection
        """One reused connection for k2's own statements (fixed SQL text, every value a bound parameter).

        Operator SQL never runs here: `sql()` gets a fresh connection locked down to the planned files.
        Opening a DuckDB connection costs tens of milliseconds, so trades/ohlcv/freshness share this one.
        """
        if self._engine_con is None:
            import duckdb

            config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
            if self.threads:
                config["threads"] = self.threads
            self._engine_con = duckdb.connect(":memory:", config=config)
            self._engine_con.execute("SET TimeZone = 'UTC'")
            self._engine_con.execute(f"CREATE VIEW trades AS SELECT {_EMPTY_SELECT} WHERE false")
        return self._engine_con

    @classmethod
    def open(cls, settings: Settings, table_name: str | None = None, planner: str = "auto") -> TradesLake:
        """Open the table named by the settings (never creates it).

        planner: auto (the metadata reader, else pyiceberg), metadata (only the reader) or pyiceberg.
        """
        from k2cli.lake import metadata

        if planner not in PLANNERS:
            raise BadQuery(f"planner must be one of {', '.join(PLANNERS)}, got {planner!r}")
        name = table_name or settings.table
        missing = TableNotFound(f"table {name} does not exist in the catalog at {settings.catalog_uri} "
                                "(run `k2 consume` first, or check K2_ICEBERG_CATALOG_URI)",
                                setting="K2_ICEBERG_CATALOG_URI")
        if planner in ("auto", "metadata"):
            try:
                return cls(metadata.MetadataTable(metadata.metadata_location(settings.catalog_uri, name), name))
            except metadata.NoSuchTable:
                raise missing from None
            except (metadata.Unsupported, OSError, ValueError, KeyError) as exc:
                if planner == "metadata":
                    raise K2Error(f"the metadata reader cannot read {name}: {exc}") from None
        return cls(PyIcebergSource(load_pyiceberg_table(settings, name, missing),
                                   cache_dir=settings.resolved_data_dir / "object-cache"))

    # ------------------------------------------------------------ planning

    def plan(self, flt: TradeFilter | None = None) -> ScanPlan:
        """Plan the data files the filter can match, pruned by partition and column statistics."""
        return self.source.plan(flt or TradeFilter())

    # ------------------------------------------------------------ DuckDB

    def connect(self, plan: ScanPlan) -> Any:  # -> duckdb.DuckDBPyConnection
        """A fresh in-memory DuckDB with a `trades` view over the planned files, then locked down (for `sql`)."""
        import duckdb

        config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        if self.threads:
            config["threads"] = self.threads
        con = duckdb.connect(":memory:", config=config)
        con.execute("SET TimeZone = 'UTC'")
        if plan.files:
            file_list = "[" + ", ".join(_sql_string(p) for p in plan.paths) + "]"
            con.execute(f"CREATE VIEW trades AS SELECT {_VIEW_COLUMNS} FROM read_parquet({file_list}, "
                        "hive_partitioning = false)")
            con.execute(f"SET allowed_paths = {file_list}")
        else:
            con.execute(f"CREATE VIEW trades AS SELECT {_VIEW_COLUMNS} FROM (SELECT {_EMPTY_SELECT}) WHERE false")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    @staticmethod
    def _source(files: list[DataFile]) -> tuple[str, list[Any]]:
        if not files:
            return "trades", []
        return "read_parquet(?, hive_partitioning = false)", [[f.path for f in files]]

    # ------------------------------------------------------------ queries

    def trades(self, flt: TradeFilter, limit: int = 100, order: str = "desc") -> QueryResult:
        """The newest (desc) or oldest (asc) `limit` trades matching the filter, all v2 fields."""
        from k2cli.trade import arrow_schema

        started = time.perf_counter()
        limit = check_limit(limit)
        if order not in ORDERS:
            raise BadQuery(f"--order must be asc or desc, got {order!r}")
        plan = self.plan(flt)
        direction = ORDERS[order]
        where, params = flt.sql_where()
        tail = f'{where} ORDER BY "timestamp" {direction}, "trade_id" {direction} LIMIT ?'
        con = self._engine()

        def read(chosen: list[DataFile]) -> list[dict[str, Any]]:
            source, args = self._source(chosen)
            return _fetch(con.sql(f"SELECT {_COLUMNS} FROM {source}{tail}", params=args + params + [limit]))[1]

        rows, files_read = _top_n(read, plan.files, limit, order)
        return QueryResult(list(FIELD_NAMES), rows, plan, files_read, (time.perf_counter() - started) * 1000,
                           arrow_schema=_lazy(arrow_schema))

    def ohlcv(self, flt: TradeFilter, interval: str) -> QueryResult:
        """OHLCV bars per exchange and symbol for the trades matching the filter."""
        from k2cli.lake import ohlcv

        started = time.perf_counter()
        width = ohlcv.interval_micros(interval)
        plan = self.plan(flt)
        where, params = flt.sql_where()
        source, args = self._source(plan.files)
        rows = self._engine().sql(ohlcv.bars_sql(source, where), params=[width, width] + args + params).fetchall()
        bars = [ohlcv.bar(ex, sym, bucket, width, o, h, lo, c, vol, notional, n)
                for ex, sym, bucket, o, h, lo, c, vol, notional, n in rows]
        return QueryResult(list(ohlcv.COLUMNS), bars, plan, len(plan.files), (time.perf_counter() - started) * 1000,
                           arrow_schema=_lazy(ohlcv.arrow_schema))

    def gaps(self, flt: TradeFilter, symbols: list[str] | None = None) -> Any:  # -> gaps.GapReport
        """Missing trade-id ranges and duplicated trade ids per exchange and symbol (symbols: any of these)."""
        from k2cli.lake import gaps

        started = time.perf_counter()
        plan = self.plan(flt)
        where, params = flt.sql_where()
        if symbols:
            within = f'"symbol" IN ({", ".join("?" for _ in symbols)})'
            where = f"{where} AND {within}" if where else f" WHERE {within}"
            params = params + list(symbols)
        source, args = self._source(plan.files)
        found = gaps.report(self._engine(), source, where, args + params)
        return gaps.GapReport(found, plan, (time.perf_counter() - started) * 1000)

    def sql(self, text: str, max_rows: int | None = None) -> QueryResult:
        """Run one read-only SELECT over the `trades` view of the whole current snapshot."""
        import duckdb

        from k2cli.lake.sqlguard import ForbiddenSQL, read_only_statement

        started = time.perf_counter()
        statement = read_only_statement(text)
        plan = self.plan(TradeFilter())
        con = self.connect(plan)
        notes = []
        try:
            try:
                reader = con.sql(statement).to_arrow_reader(batch_size=8192)
                table = _take(reader, max_rows)
            except duckdb.PermissionException as exc:
                raise ForbiddenSQL(f"refused: {first_line(exc)}") from None
            except duckdb.Error as exc:
                raise BadQuery(f"the query failed: {first_line(exc)}") from None
        finally:
            con.close()
        if max_rows is not None and table.num_rows > max_rows:
            table = table.slice(0, max_rows)
            notes.append(f"output truncated to {max_rows} rows (raise --max-rows, 0 for all)")
        rows = [{k: _pythonize(v) for k, v in row.items()} for row in table.to_pylist()]
        return QueryResult(list(table.column_names), rows, plan, len(plan.files),
                           (time.perf_counter() - started) * 1000, notes, arrow_table=table)

    def freshness(self, flt: TradeFilter | None = None, now: _dt.datetime | None = None,
                  max_age: _dt.timedelta | None = None) -> QueryResult:
        """Newest trade and ingestion time per exchange and symbol, and how far they lag behind now.

        With max_age, each row also says whether its newest trade is older (`stale`)."""
        started = time.perf_counter()
        now = now or _dt.datetime.now(_dt.UTC)
        flt = flt or TradeFilter()
        plan = self.plan(flt)
        where, params = flt.sql_where()
        source, args = self._source(plan.files)
        rows = self._engine().sql(
            'SELECT "exchange", "symbol", max("timestamp"), max("ingestion_timestamp"), count(*) '
            f"FROM {source}{where} GROUP BY ALL ORDER BY 1, 2", params=args + params).fetchall()
        out = []
        for exchange, symbol, newest, ingested, count in rows:
            newest, ingested = _pythonize(newest), _pythonize(ingested)
            out.append({
                "exchange": exchange, "symbol": symbol, "newest_trade": newest, "newest_ingestion": ingested,
                "lag_seconds": round((now - newest).total_seconds(), 3),
                "ingest_lag_seconds": round((now - ingested).total_seconds(), 3), "trades": count,
                **({"stale": now - newest > max_age} if max_age is not None else {}),
            })
        notes = []
        snapshot = self.source.current_snapshot()
        if snapshot is not None:
            committed = _dt.datetime.fromtimestamp(snapshot.timestamp_ms / 1000, _dt.UTC)
            notes.append(f"last commit {iso(committed)} ({(now - committed).total_seconds():.1f} s ago), "
                         f"snapshot {snapshot.snapshot_id}")
        columns = ["exchange", "symbol", "newest_trade", "newest_ingestion", "lag_seconds", "ingest_lag_seconds",
                   "trades", *(["stale"] if max_age is not None else [])]
        return QueryResult(columns, out, plan, len(plan.files), (time.perf_counter() - started) * 1000, notes)

    def why_empty(self, flt: TradeFilter) -> str | None:
        """For a filter that matched nothing: which of its exchange or symbol the table has no trade of (or None)."""
        if flt.symbol is None and flt.exchange is None:
            return None
        plan = self.plan(TradeFilter())
        source, args = self._source(plan.files)
        pairs = self._engine().sql(f'SELECT DISTINCT "exchange", "symbol" FROM {source}', params=args).fetchall()
        exchanges = sorted({e for e, _ in pairs})
        if flt.exchange is not None and flt.exchange not in exchanges:
            return f"no trades of exchange {flt.exchange} in the table (it has {', '.join(exchanges) or 'none'})"
        symbols = sorted({s for e, s in pairs if flt.exchange is None or e == flt.exchange})
        if flt.symbol is not None and flt.symbol not in symbols:
            where = f" on {flt.exchange}" if flt.exchange else ""
            shown = ", ".join(symbols[:20]) + (f" and {len(symbols) - 20} more" if len(symbols) > 20 else "")
            return f"no trades of symbol {flt.symbol}{where} in the table (it has {shown or 'none'})"
        return None

    def snapshots(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's snapshots, newest first, with their summaries and the Kafka offsets they carry."""
        current = self.source.current_snapshot()
        current_id = current.snapshot_id if current is not None else None
        snaps = sorted(self.source.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number), reverse=True)
        if limit is not None:
            snaps = snaps[: check_limit(limit)]
        out = []
        for snap in snaps:
            summary = dict(snap.summary)
            out.append({
                "snapshot_id": snap.snapshot_id,
                "parent_id": snap.parent_id,
                "time": _dt.datetime.fromtimestamp(snap.timestamp_ms / 1000, _dt.UTC),
                "operation": summary.pop("operation", None),
                "added_records": _int(summary.get("added-records")),
                "added_files": _int(summary.get("added-data-files")),
                "total_records": _int(summary.get("total-records")),
                "total_files": _int(summary.get("total-data-files")),
                **kafka_positions(summary),
                "current": snap.snapshot_id == current_id,
                "summary": summary,
            })
        return out


_EMPTY_SELECT = ", ".join(
    f'CAST(NULL AS {t}) AS "{n}"' for n, t in (
        ("message_id", "VARCHAR"), ("trade_id", "VARCHAR"), ("symbol", "VARCHAR"), ("exchange", "VARCHAR"),
        ("asset_class", "VARCHAR"), ("timestamp", "TIMESTAMPTZ"), ("price", "DECIMAL(18,8)"),
        ("quantity", "DECIMAL(18,8)"), ("currency", "VARCHAR"), ("side", "VARCHAR"),
        ("trade_conditions", "VARCHAR[]"), ("source_sequence", "BIGINT"), ("ingestion_timestamp", "TIMESTAMPTZ"),
        ("platform_sequence", "BIGINT"), ("vendor_data", "MAP(VARCHAR, VARCHAR)")))


def load_pyiceberg_table(settings: Settings, name: str, missing: K2Error) -> Any:
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    from k2cli.lake.catalog import open_catalog

    try:
        return open_catalog(settings).load_table(name)
    except (NoSuchTableError, NoSuchNamespaceError):
        raise missing from None


class _lazy:
    """An Arrow schema built only when asked for (keeps pyarrow out of the JSON/table paths)."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory


def kafka_positions(summary: dict[str, Any]) -> dict[str, Any]:
    """What `k2 consume` records in a snapshot summary (keys documented in k2cli.lake.offsets)."""

    def decoded(key: str) -> Any:
        value = summary.get(key)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value

    return {
        "offsets": decoded("k2.offsets"),  # {topic: {partition: next offset}} after this commit
        "batch": decoded("k2.batch"),  # {topic: {partition: [first, next]}} this commit covers
        "consumer": summary.get("k2.consumer"),
        "commit_id": summary.get("k2.commit-id"),
        "records": _int(summary.get("k2.records")),
        "dlq_records": _int(summary.get("k2.dlq-records")),
    }


def check_limit(limit: int) -> int:
    """A row limit is a whole number from 1 to MAX_LIMIT."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"--limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def _top_n(read: Callable[[list[DataFile]], list[dict[str, Any]]], files: list[DataFile], limit: int,
           order: str) -> tuple[list[dict[str, Any]], int]:
    """Read the fewest files that provably hold the top `limit` rows, using the files' timestamp bounds.

    Start from the files with the newest (desc) / oldest (asc) timestamps; once `limit` rows are found,
    any other file whose bounds reach the limit-th row's timestamp is added and the query re-run.
    """
    if not files:
        return read([]), 0
    desc = order == "desc"
    big = 2**63

    def edge(f: DataFile) -> int:  # the file's most favourable timestamp for this order
        if desc:
            return f.upper_ts if f.upper_ts is not None else big
        return -(f.lower_ts if f.lower_ts is not None else -big)

    ranked = sorted(files, key=edge, reverse=True)
    chosen = _first_band(ranked, limit)
    while True:
        rows = read(chosen)
        if len(chosen) == len(ranked):
            return rows, len(chosen)
        if len(rows) < limit:
            chosen = ranked[: min(len(ranked), max(len(chosen) * 2, len(chosen) + 1))]
            continue
        cutoff = to_micros(rows[-1]["timestamp"])
        chosen_set = {id(f) for f in chosen}
        extra = [f for f in ranked if id(f) not in chosen_set and _may_reach(f, cutoff, desc)]
        if not extra:
            return rows, len(chosen)
        chosen = chosen + extra


def _first_band(ranked: list[DataFile], limit: int) -> list[DataFile]:
    """The leading files whose row counts add up to at least `limit` (the guess before the first read)."""
    total = 0
    for index, f in enumerate(ranked):
        total += f.record_count
        if total >= limit:
            return ranked[: index + 1]
    return list(ranked)


def _may_reach(f: DataFile, cutoff: int, desc: bool) -> bool:
    """Whether a file could hold a row at or beyond the cutoff timestamp in the wanted order."""
    if desc:
        return f.upper_ts is None or f.upper_ts >= cutoff
    return f.lower_ts is None or f.lower_ts <= cutoff


def _take(reader: Any, max_rows: int | None) -> Any:
    """Read batches until max_rows + 1 rows are held (to know whether there were more)."""
    import pyarrow as pa

    batches = []
    held = 0
    for batch in reader:
        batches.append(batch)
        held += batch.num_rows
        if max_rows is not None and held > max_rows:
            break
    return pa.Table.from_batches(batches, schema=reader.schema)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def normalise_names(values: Iterable[str | None]) -> list[str | None]:
    """Symbols and exchanges are stored upper-case; accept any case from operators."""
    return [v.strip().upper() if v is not None and v.strip() else None for v in values]


def stored_symbol(symbol: str, exchange: str | None = None) -> str:
    """An operator's symbol as the table stores it, read in each registered exchange's own notation (BTC/USD -> BTCUSD).

    With an exchange, that exchange's notation is tried first; else the first registered exchange that reads it."""
    from k2cli.exchanges import registry

    typed = symbol.strip()
    named = registry.by_code(exchange.strip().upper()) if exchange and exchange.strip() else None
    for desc in ([named] if named is not None else []) + [d for d in registry.all() if d is not named]:
        try:
            return desc.stored_symbol(desc.check_symbols([typed])[0])
        except Exception:  # not this exchange's notation (each raises its own ConfigError)
            continue
    return typed.upper()

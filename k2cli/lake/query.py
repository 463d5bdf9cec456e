"""Read the trades table: pyiceberg plans the data files (partition and column-stat pruning), DuckDB reads them.

DuckDB never sees more than the files the filters allow, and it runs locked down: no extension loading,
no file access beyond the planned Parquet files (`enable_external_access=false` + `allowed_paths`), and
the configuration locked, so even a query that slipped past the read-only check cannot write anything.
Every value an operator gives is a bound parameter or checked against a fixed set.
"""

from __future__ import annotations

import datetime as _dt
import json
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from k2cli.errors import K2Error
from k2cli.settings import Settings
from k2cli.timespec import from_micros, iso, to_micros
from k2cli.trade import FIELD_NAMES

MAX_LIMIT = 1_000_000
ORDERS = {"asc": "ASC", "desc": "DESC"}
_COLUMNS = ", ".join(f'"{name}"' for name in FIELD_NAMES)


class BadQuery(K2Error):
    """A query flag has a value k2 cannot use."""

    exit_code = 2


class TableNotFound(K2Error):
    """The trades table does not exist in the catalog yet."""

    exit_code = 1


@dataclass(frozen=True)
class TradeFilter:
    """Which trades to read: symbol/exchange equality, since inclusive, until exclusive (UTC µs)."""

    symbol: str | None = None
    exchange: str | None = None
    since_us: int | None = None
    until_us: int | None = None

    def __post_init__(self) -> None:
        if self.since_us is not None and self.until_us is not None and self.since_us >= self.until_us:
            raise BadQuery(f"--since ({iso(from_micros(self.since_us))}) must be before "
                           f"--until ({iso(from_micros(self.until_us))})")

    def iceberg_expression(self) -> Any:
        """The pyiceberg row filter used for file pruning."""
        from pyiceberg.expressions import AlwaysTrue, And, EqualTo, GreaterThanOrEqual, LessThan

        expr: Any = AlwaysTrue()
        if self.symbol is not None:
            expr = And(expr, EqualTo("symbol", self.symbol))
        if self.exchange is not None:
            expr = And(expr, EqualTo("exchange", self.exchange))
        if self.since_us is not None:
            expr = And(expr, GreaterThanOrEqual("timestamp", self.since_us))
        if self.until_us is not None:
            expr = And(expr, LessThan("timestamp", self.until_us))
        return expr

    def sql_where(self) -> tuple[str, list[Any]]:
        """The same filter as a WHERE clause with bound parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.symbol is not None:
            clauses.append('"symbol" = ?')
            params.append(self.symbol)
        if self.exchange is not None:
            clauses.append('"exchange" = ?')
            params.append(self.exchange)
        if self.since_us is not None:
            clauses.append('"timestamp" >= CAST(? AS TIMESTAMPTZ)')
            params.append(iso(from_micros(self.since_us)))
        if self.until_us is not None:
            clauses.append('"timestamp" < CAST(? AS TIMESTAMPTZ)')
            params.append(iso(from_micros(self.until_us)))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


@dataclass(frozen=True)
class DataFile:
    """One planned Parquet file with the timestamp bounds from its Iceberg column statistics."""

    path: str
    record_count: int
    size_bytes: int
    lower_ts: int | None
    upper_ts: int | None


@dataclass
class ScanPlan:
    """The files a filter needs, out of the current snapshot's files."""

    snapshot_id: int | None
    files: list[DataFile]
    total_files: int
    plan_ms: float = 0.0

    @property
    def paths(self) -> list[str]:
        """Local paths of the planned files."""
        return [f.path for f in self.files]


@dataclass
class QueryResult:
    """Rows as an Arrow table plus how they were obtained."""

    table: Any  # pyarrow.Table
    plan: ScanPlan | None = None
    files_read: int = 0
    elapsed_ms: float = 0.0
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """The rows as Python values (Decimal, aware UTC datetime, list, dict for maps)."""
        return [_pythonize(row) for row in self.table.to_pylist()]


def _pythonize(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            value = dict(value)  # Arrow maps come back as lists of (key, value) pairs
        elif isinstance(value, _dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(_dt.UTC)
        out[key] = value
    return out


def _local_path(location: str) -> str:
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return unquote(parsed.path) if parsed.scheme else location
    raise K2Error(f"data file {location} is on {parsed.scheme}://, which k2 query cannot read "
                  "(only a local warehouse is supported)", setting="K2_ICEBERG_WAREHOUSE")


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _decode_ts(raw: bytes | None) -> int | None:
    if raw is None or len(raw) != 8:
        return None
    return struct.unpack("<q", raw)[0]


class TradesLake:
    """The trades table opened for reading."""

    def __init__(self, table: Any, threads: int | None = None) -> None:
        self.table = table
        self.threads = threads
        self._ts_field_id = table.schema().find_field("timestamp").field_id

    @classmethod
    def open(cls, settings: Settings, table_name: str | None = None) -> TradesLake:
        """Load the table named by the settings (never creates it)."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        from k2cli.lake.catalog import open_catalog

        name = table_name or settings.table
        catalog = open_catalog(settings)
        try:
            return cls(catalog.load_table(name))
        except (NoSuchTableError, NoSuchNamespaceError):
            raise TableNotFound(f"table {name} does not exist in the catalog at {settings.catalog_uri} "
                                "(run `k2 consume` first, or check K2_ICEBERG_CATALOG_URI)",
                                setting="K2_ICEBERG_CATALOG_URI") from None

    # ------------------------------------------------------------ planning

    def plan(self, flt: TradeFilter | None = None) -> ScanPlan:
        """Plan the data files the filter can match, pruned by partition and column statistics."""
        started = time.perf_counter()
        flt = flt or TradeFilter()
        snapshot = self.table.current_snapshot()
        if snapshot is None:
            return ScanPlan(None, [], 0, (time.perf_counter() - started) * 1000)
        files = []
        for task in self.table.scan(row_filter=flt.iceberg_expression()).plan_files():
            if task.delete_files:
                raise K2Error(f"table {self.table.name()} has delete files; k2 query reads append-only tables "
                              "(compact the table first)")
            data_file = task.file
            files.append(DataFile(
                path=_local_path(data_file.file_path),
                record_count=data_file.record_count,
                size_bytes=data_file.file_size_in_bytes,
                lower_ts=_decode_ts((data_file.lower_bounds or {}).get(self._ts_field_id)),
                upper_ts=_decode_ts((data_file.upper_bounds or {}).get(self._ts_field_id)),
            ))
        total = int(snapshot.summary.get("total-data-files") or 0) if snapshot.summary else 0
        return ScanPlan(snapshot.snapshot_id, files, max(total, len(files)), (time.perf_counter() - started) * 1000)

    # ------------------------------------------------------------ DuckDB

    def connect(self, plan: ScanPlan) -> Any:  # -> duckdb.DuckDBPyConnection
        """An in-memory DuckDB with a `trades` view over the planned files, then locked down."""
        import duckdb

        config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        if self.threads:
            config["threads"] = self.threads
        con = duckdb.connect(":memory:", config=config)
        con.execute("SET TimeZone = 'UTC'")
        if plan.files:
            file_list = "[" + ", ".join(_sql_string(p) for p in plan.paths) + "]"
            con.execute(f"CREATE VIEW trades AS SELECT {_COLUMNS} FROM read_parquet({file_list}, "
                        "hive_partitioning = false)")
            con.execute(f"SET allowed_paths = {file_list}")
        else:
            from k2cli.trade import arrow_schema

            con.register("_empty_trades", arrow_schema().empty_table())
            con.execute(f"CREATE VIEW trades AS SELECT {_COLUMNS} FROM _empty_trades")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    def _read(self, con: Any, files: list[DataFile], sql_tail: str, params: list[Any]) -> Any:
        """Run `SELECT … FROM <files> <tail>` and return an Arrow table."""
        if not files:
            source = "trades"  # the empty view
            args: list[Any] = []
        else:
            source = "read_parquet(?, hive_partitioning = false)"
            args = [[f.path for f in files]]
        return con.sql(f"SELECT {_COLUMNS} FROM {source}{sql_tail}", params=args + params).to_arrow_table()

    # ------------------------------------------------------------ queries

    def trades(self, flt: TradeFilter, limit: int = 100, order: str = "desc") -> QueryResult:
        """The newest (desc) or oldest (asc) `limit` trades matching the filter, all v2 fields."""
        started = time.perf_counter()
        limit = check_limit(limit)
        if order not in ORDERS:
            raise BadQuery(f"--order must be asc or desc, got {order!r}")
        plan = self.plan(flt)
        direction = ORDERS[order]
        where, params = flt.sql_where()
        tail = f'{where} ORDER BY "timestamp" {direction}, "trade_id" {direction} LIMIT ?'
        con = self.connect(plan)
        try:
            table, read = self._top_n(con, plan.files, tail, params + [limit], limit, order)
        finally:
            con.close()
        return QueryResult(table, plan, read, (time.perf_counter() - started) * 1000)

    def _top_n(self, con: Any, files: list[DataFile], tail: str, params: list[Any], limit: int,
               order: str) -> tuple[Any, int]:
        """Read the fewest files that provably hold the top `limit` rows, using the files' timestamp bounds.

        Start from the files with the newest (desc) / oldest (asc) timestamps; once `limit` rows are found,
        any other file whose bounds reach the limit-th row's timestamp is added and the query re-run.
        """
        if not files:
            return self._read(con, [], tail, params), 0
        desc = order == "desc"
        big = 2**63

        def edge(f: DataFile) -> int:  # the file's most favourable timestamp for this order
            if desc:
                return f.upper_ts if f.upper_ts is not None else big
            return -(f.lower_ts if f.lower_ts is not None else -big)

        ranked = sorted(files, key=edge, reverse=True)
        chosen = _first_band(ranked, limit)
        while True:
            table = self._read(con, chosen, tail, params)
            if len(chosen) == len(ranked):
                return table, len(chosen)
            if table.num_rows < limit:
                chosen = ranked[: min(len(ranked), max(len(chosen) * 2, len(chosen) + 1))]
                continue
            cutoff = to_micros(table.column("timestamp")[table.num_rows - 1].as_py())
            chosen_set = {id(f) for f in chosen}
            extra = [f for f in ranked if id(f) not in chosen_set and _may_reach(f, cutoff, desc)]
            if not extra:
                return table, len(chosen)
            chosen = chosen + extra

    def ohlcv(self, flt: TradeFilter, interval: str) -> QueryResult:
        """OHLCV bars per exchange and symbol for the trades matching the filter."""
        from k2cli.lake.ohlcv import bars_from_rows, bars_sql, interval_micros

        started = time.perf_counter()
        width = interval_micros(interval)
        plan = self.plan(flt)
        where, params = flt.sql_where()
        con = self.connect(plan)
        try:
            source = "read_parquet(?, hive_partitioning = false)" if plan.files else "trades"
            args: list[Any] = [plan.paths] if plan.files else []
            rows = con.sql(bars_sql(source, where), params=[width, width] + args + params).fetchall()
        finally:
            con.close()
        table = bars_from_rows(rows, width)
        return QueryResult(table, plan, len(plan.files), (time.perf_counter() - started) * 1000)

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
                raise ForbiddenSQL(f"refused: {_first_line(exc)}") from None
            except duckdb.Error as exc:
                raise BadQuery(f"the query failed: {_first_line(exc)}") from None
        finally:
            con.close()
        if max_rows is not None and table.num_rows > max_rows:
            table = table.slice(0, max_rows)
            notes.append(f"output truncated to {max_rows} rows (raise --max-rows, 0 for all)")
        return QueryResult(table, plan, len(plan.files), (time.perf_counter() - started) * 1000, notes)

    def freshness(self, flt: TradeFilter | None = None, now: _dt.datetime | None = None) -> QueryResult:
        """Newest trade and ingestion time per exchange and symbol, and how far they lag behind now."""
        import pyarrow as pa

        started = time.perf_counter()
        now = now or _dt.datetime.now(_dt.UTC)
        flt = flt or TradeFilter()
        plan = self.plan(flt)
        where, params = flt.sql_where()
        con = self.connect(plan)
        try:
            source = "read_parquet(?, hive_partitioning = false)" if plan.files else "trades"
            args: list[Any] = [plan.paths] if plan.files else []
            rows = con.sql(
                'SELECT "exchange", "symbol", max("timestamp"), max("ingestion_timestamp"), count(*) '
                f"FROM {source}{where} GROUP BY ALL ORDER BY 1, 2", params=args + params).fetchall()
        finally:
            con.close()
        out = []
        for exchange, symbol, newest, ingested, count in rows:
            newest = newest.astimezone(_dt.UTC)
            ingested = ingested.astimezone(_dt.UTC)
            out.append({
                "exchange": exchange, "symbol": symbol, "newest_trade": newest, "newest_ingestion": ingested,
                "lag_seconds": round((now - newest).total_seconds(), 3),
                "ingest_lag_seconds": round((now - ingested).total_seconds(), 3), "trades": count,
            })
        schema = pa.schema([
            ("exchange", pa.string()), ("symbol", pa.string()), ("newest_trade", pa.timestamp("us", tz="UTC")),
            ("newest_ingestion", pa.timestamp("us", tz="UTC")), ("lag_seconds", pa.float64()),
            ("ingest_lag_seconds", pa.float64()), ("trades", pa.int64()),
        ])
        notes = []
        snapshot = self.table.current_snapshot()
        if snapshot is not None:
            committed = _dt.datetime.fromtimestamp(snapshot.timestamp_ms / 1000, _dt.UTC)
            notes.append(f"last commit {iso(committed)} ({(now - committed).total_seconds():.1f} s ago), "
                         f"snapshot {snapshot.snapshot_id}")
        return QueryResult(pa.Table.from_pylist(out, schema=schema), plan, len(plan.files),
                           (time.perf_counter() - started) * 1000, notes)

    def snapshots(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's snapshots, newest first, with their summaries and the Kafka offsets they carry."""
        current = self.table.current_snapshot()
        current_id = current.snapshot_id if current is not None else None
        snaps = sorted(self.table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number or 0),
                       reverse=True)
        if limit is not None:
            snaps = snaps[: check_limit(limit)]
        out = []
        for snap in snaps:
            summary = snap.summary.model_dump() if snap.summary is not None else {}
            out.append({
                "snapshot_id": snap.snapshot_id,
                "parent_id": snap.parent_snapshot_id,
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


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else exc.__class__.__name__


def normalise_names(values: Iterable[str | None]) -> list[str | None]:
    """Symbols and exchanges are stored upper-case; accept any case from operators."""
    return [v.strip().upper() if v is not None and v.strip() else None for v in values]

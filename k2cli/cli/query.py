"""`k2 query`: trades, OHLCV bars, read-only SQL, snapshots and freshness from the Iceberg trades table."""

from __future__ import annotations

import enum
from typing import Any

import typer

from k2cli.cli._output import FORMAT_OPTION, OUTPUT_OPTION, OutFormat, emit
from k2cli.exchanges import registry

app = typer.Typer(
    help="Query the lake: trades, OHLCV, SQL, snapshots, freshness.\n\n"
    "Reads the current Iceberg snapshot of the trades table (K2_TABLE, default market_data.trades_v2). "
    "Times are UTC: ISO 8601 (2024-05-01, 2024-05-01T12:00:00Z) or a duration ago (15m, 2h, 7d); "
    "--since is inclusive, --until exclusive.",
    no_args_is_help=True,
)


class Order(enum.StrEnum):
    """Trade order."""

    asc = "asc"
    desc = "desc"


TABLE_OPTION = typer.Option(None, "--table", metavar="NS.TABLE", help="Table to read (default: K2_TABLE).")
SINCE_OPTION = typer.Option(None, "--since", metavar="TIME", help="Only trades at or after TIME.")
UNTIL_OPTION = typer.Option(None, "--until", metavar="TIME", help="Only trades before TIME.")
EXCHANGE_OPTION = typer.Option(None, "--exchange", "-e",
                               help=f"Only this exchange (e.g. {', '.join(d.code for d in registry.all())}).")

TRADE_TABLE_COLUMNS = ("timestamp", "exchange", "symbol", "side", "price", "quantity", "trade_id",
                       "source_sequence")


def _lake(table: str | None) -> Any:
    from k2cli.lake.query import TradesLake
    from k2cli.settings import load_settings

    settings = load_settings(table=table)
    return TradesLake.open(settings)


def _filter(symbol: str | None, exchange: str | None, since: str | None, until: str | None) -> Any:
    from k2cli.lake.query import TradeFilter, normalise_names
    from k2cli.timespec import parse_instant, to_micros

    symbol, exchange = normalise_names([symbol, exchange])
    since_us = to_micros(parse_instant(since, "--since")) if since else None
    until_us = to_micros(parse_instant(until, "--until")) if until else None
    return TradeFilter(symbol=symbol, exchange=exchange, since_us=since_us, until_us=until_us)


def _footer(result: Any) -> str:
    plan = result.plan
    files = f"read {result.files_read} of {plan.total_files} data files" if plan is not None else ""
    notes = "".join(f"\n{n}" for n in result.notes)
    return f"{result.num_rows} rows · {files} · {result.elapsed_ms:.0f} ms{notes}"


def _notes_to_stderr(result: Any, fmt: str) -> None:
    if fmt not in ("table", "rich"):
        for note in result.notes:
            typer.echo(f"k2: note: {note}", err=True)


@app.command()
def trades(
    symbol: str = typer.Option(None, "--symbol", "-s", help="Symbol, e.g. BTCUSDT (all symbols when omitted)."),
    exchange: str = EXCHANGE_OPTION,
    since: str = SINCE_OPTION,
    until: str = UNTIL_OPTION,
    limit: int = typer.Option(100, "--limit", "-n", min=1, max=1_000_000, help="At most N trades."),
    order: Order = typer.Option(Order.desc, "--order", case_sensitive=False,
                                help="desc: newest first (default); asc: oldest first."),
    fmt: OutFormat = FORMAT_OPTION,
    output: str = OUTPUT_OPTION,
    table: str = TABLE_OPTION,
) -> None:
    """Trades with every v2 field (Decimals exact, times UTC ISO in json/csv)."""
    from k2cli.trade import FIELD_NAMES

    flt = _filter(symbol, exchange, since, until)
    result = _lake(table).trades(flt, limit=limit, order=order.value)
    arrow = result.to_arrow() if fmt == OutFormat.parquet else None
    emit(result.rows(), FIELD_NAMES, fmt, output, arrow=arrow, table_columns=TRADE_TABLE_COLUMNS,
         title=f"trades {flt.symbol or 'all symbols'}", footer=_footer(result))


@app.command()
def ohlcv(
    symbol: str = typer.Option(..., "--symbol", "-s", help="Symbol, e.g. BTCUSDT."),
    interval: str = typer.Option("1m", "--interval", "-i", help="Bar width: 1m, 5m, 15m, 1h or 1d."),
    exchange: str = EXCHANGE_OPTION,
    since: str = SINCE_OPTION,
    until: str = UNTIL_OPTION,
    fmt: OutFormat = FORMAT_OPTION,
    output: str = OUTPUT_OPTION,
    table: str = TABLE_OPTION,
) -> None:
    """OHLCV bars computed from trades: open, high, low, close, volume, vwap, notional, trade count.

    Bars are UTC, aligned to the epoch, one per exchange and interval with trades.

    Open/close are the first/last trade by (timestamp, source_sequence, trade_id).

    vwap is notional / volume rounded half-even to 8 places; everything else is exact.
    """
    from k2cli.lake.ohlcv import COLUMNS, interval_micros

    interval_micros(interval)  # validate before touching the catalog
    flt = _filter(symbol, exchange, since, until)
    result = _lake(table).ohlcv(flt, interval)
    emit(result.rows(), COLUMNS, fmt, output, arrow=result.to_arrow() if fmt == OutFormat.parquet else None,
         table_columns=[c for c in COLUMNS if c not in ("interval_end", "notional")],
         title=f"OHLCV {flt.symbol} {interval}", footer=_footer(result))


@app.command()
def sql(
    statement: str = typer.Argument(..., metavar="SQL", help="One SELECT (or WITH … SELECT) over the `trades` view."),
    max_rows: int = typer.Option(10_000, "--max-rows", min=0, help="Print at most N rows (0: all)."),
    fmt: OutFormat = FORMAT_OPTION,
    output: str = OUTPUT_OPTION,
    table: str = TABLE_OPTION,
) -> None:
    """Run a read-only SQL query over the `trades` view (the table's current snapshot).

    Anything but a single SELECT is refused; DuckDB runs with file access and extension loading disabled.
    """
    result = _lake(table).sql(statement, max_rows=max_rows or None)
    _notes_to_stderr(result, fmt)
    emit(result.rows(), result.columns, fmt, output, arrow=result.to_arrow() if fmt == OutFormat.parquet else None,
         footer=_footer(result))


@app.command()
def snapshots(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1_000_000, help="The newest N snapshots."),
    fmt: OutFormat = FORMAT_OPTION,
    output: str = OUTPUT_OPTION,
    table: str = TABLE_OPTION,
) -> None:
    """The table's snapshots, newest first: id, time, records and files added, the Kafka offsets carried."""
    rows = _lake(table).snapshots(limit=limit)
    columns = ["snapshot_id", "parent_id", "time", "operation", "added_records", "added_files", "total_records",
               "total_files", "offsets", "batch", "consumer", "commit_id", "records", "dlq_records", "current",
               "summary"]
    if fmt in (OutFormat.table, OutFormat.rich):
        rows = [{**r, "offsets": _positions(r["offsets"]), "batch": _positions(r["batch"])} for r in rows]
    shown = ("snapshot_id", "time", "operation", "added_records", "added_files", "total_records", "offsets",
             "batch", "current")
    emit(rows, columns, fmt, output, table_columns=shown, title="snapshots (newest first)")


def _positions(value: Any) -> Any:
    """{topic: {partition: x}} as `topic[p]=x` lines for the table."""
    if not isinstance(value, dict):
        return value
    parts = []
    for topic, partitions in sorted(value.items()):
        if isinstance(partitions, dict):
            for partition, pos in sorted(partitions.items(), key=lambda kv: str(kv[0]).zfill(6)):
                text = f"{pos[0]}..{pos[1]}" if isinstance(pos, list) and len(pos) == 2 else str(pos)
                parts.append(f"{topic}[{partition}]={text}")
        else:
            parts.append(f"{topic}={partitions}")
    return "\n".join(parts)


@app.command()
def freshness(
    symbol: str = typer.Option(None, "--symbol", "-s", help="Only this symbol."),
    exchange: str = EXCHANGE_OPTION,
    since: str = typer.Option(None, "--since", metavar="TIME",
                              help="Only look at trades at or after TIME (reads less of a large lake)."),
    fmt: OutFormat = FORMAT_OPTION,
    output: str = OUTPUT_OPTION,
    table: str = TABLE_OPTION,
) -> None:
    """Newest trade and ingestion time per exchange and symbol, and how far each lags behind now."""
    flt = _filter(symbol, exchange, since, None)
    result = _lake(table).freshness(flt)
    _notes_to_stderr(result, fmt)
    emit(result.rows(), result.columns, fmt, output,
         arrow=result.to_arrow() if fmt == OutFormat.parquet else None, title="freshness", footer=_footer(result))

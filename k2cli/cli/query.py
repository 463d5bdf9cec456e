"""`k2 query`: trades, OHLCV bars, read-only SQL, snapshots and freshness from the Iceberg trades table."""

from __future__ import annotations

import enum
from typing import Any

import typer

from k2cli.cli._output import emit
from k2cli.cli.options import DATA_FORMAT, OUTPUT, RICH_JSON, TABLE, Format, default_of, format_option
from k2cli.exchanges import registry
from k2cli.settings import env_name

app = typer.Typer(
    help="Query the lake: trades, OHLCV, SQL, snapshots, freshness.\n\n"
    f"Reads the current Iceberg snapshot of the trades table ({env_name('table')}, default {default_of('table')}). "
    "Times are UTC: ISO 8601 (2024-05-01, 2024-05-01T12:00:00Z) or a duration ago (15m, 2h, 7d); "
    "--since is inclusive, --until exclusive.",
    no_args_is_help=True,
)


class Order(enum.StrEnum):
    """Trade order."""

    asc = "asc"
    desc = "desc"


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
    from k2cli.lake.query import TradeFilter, normalise_names, stored_symbol
    from k2cli.timespec import parse_instant, to_micros

    symbol, exchange = normalise_names([stored_symbol(symbol, exchange) if symbol else None, exchange])
    since_us = to_micros(parse_instant(since, "--since")) if since else None
    until_us = to_micros(parse_instant(until, "--until")) if until else None
    return TradeFilter(symbol=symbol, exchange=exchange, since_us=since_us, until_us=until_us)


def _say_why_empty(lake: Any, result: Any, flt: Any) -> None:
    """A query whose exchange or symbol the table has no trade of: say so on stderr and exit 1."""
    if result.num_rows == 0:
        why = lake.why_empty(flt)
        if why is not None:
            typer.echo(f"k2: {why}", err=True)
            raise typer.Exit(1)


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
    symbol: str = typer.Option(None, "--symbol", "-s", help="Symbol as stored or in the exchange's notation "
                               "(BTCUSDT, BTC/USD, BTC-USD); all symbols when omitted."),
    exchange: str = EXCHANGE_OPTION,
    since: str = SINCE_OPTION,
    until: str = UNTIL_OPTION,
    limit: int = typer.Option(100, "--limit", "-n", min=1, max=1_000_000, help="At most N trades."),
    order: Order = typer.Option(Order.desc, "--order", case_sensitive=False,
                                help="desc: newest first (default); asc: oldest first."),
    fmt: Format = DATA_FORMAT,
    output: str = OUTPUT,
    table: str = TABLE,
) -> None:
    """Trades with every v2 field (Decimals exact, times UTC ISO in json/csv)."""
    from k2cli.trade import FIELD_NAMES

    flt = _filter(symbol, exchange, since, until)
    lake = _lake(table)
    result = lake.trades(flt, limit=limit, order=order.value)
    arrow = result.to_arrow() if fmt == Format.parquet else None
    emit(result.rows(), FIELD_NAMES, fmt, output, arrow=arrow, table_columns=TRADE_TABLE_COLUMNS,
         title=f"trades {flt.symbol or 'all symbols'}", footer=_footer(result))
    _say_why_empty(lake, result, flt)


@app.command()
def ohlcv(
    symbol: str = typer.Option(..., "--symbol", "-s", help="Symbol as stored or in the exchange's notation "
                               "(BTCUSDT, BTC/USD, BTC-USD)."),
    interval: str = typer.Option("1m", "--interval", "-i", help="Bar width: 1m, 5m, 15m, 1h or 1d."),
    exchange: str = EXCHANGE_OPTION,
    since: str = SINCE_OPTION,
    until: str = UNTIL_OPTION,
    fmt: Format = DATA_FORMAT,
    output: str = OUTPUT,
    table: str = TABLE,
) -> None:
    """OHLCV bars computed from trades: open, high, low, close, volume, vwap, notional, trade count.

    Bars are UTC, aligned to the epoch, one per exchange and interval with trades.

    Open/close are the first/last trade by (timestamp, source_sequence, trade_id).

    vwap is notional / volume rounded half-even to 8 places; everything else is exact.
    """
    from k2cli.lake.ohlcv import COLUMNS, interval_micros

    interval_micros(interval)  # validate before touching the catalog
    flt = _filter(symbol, exchange, since, until)
    lake = _lake(table)
    result = lake.ohlcv(flt, interval)
    emit(result.rows(), COLUMNS, fmt, output, arrow=result.to_arrow() if fmt == Format.parquet else None,
         table_columns=[c for c in COLUMNS if c not in ("interval_end", "notional")],
         title=f"OHLCV {flt.symbol} {interval}", footer=_footer(result))
    _say_why_empty(lake, result, flt)


@app.command()
def sql(
    statement: str = typer.Argument(..., metavar="SQL", help="One SELECT (or WITH … SELECT) over the `trades` view."),
    max_rows: int = typer.Option(10_000, "--max-rows", min=0, help="Print at most N rows (0: all)."),
    fmt: Format = DATA_FORMAT,
    output: str = OUTPUT,
    table: str = TABLE,
) -> None:
    """Run a read-only SQL query over the `trades` view (the table's current snapshot).

    price and quantity are DECIMAL(38,8) in the view and `notional` is price*quantity, exact
    (SELECT sum(notional) FROM trades).

    Anything but a single SELECT is refused; DuckDB runs with file access and extension loading disabled.
    """
    result = _lake(table).sql(statement, max_rows=max_rows or None)
    _notes_to_stderr(result, fmt)
    emit(result.rows(), result.columns, fmt, output, arrow=result.to_arrow() if fmt == Format.parquet else None,
         footer=_footer(result))


@app.command()
def snapshots(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1_000_000, help="The newest N snapshots."),
    fmt: Format = DATA_FORMAT,
    output: str = OUTPUT,
    table: str = TABLE,
) -> None:
    """The table's snapshots, newest first: id, time, records and files added, the Kafka offsets carried."""
    rows = _lake(table).snapshots(limit=limit)
    columns = ["snapshot_id", "parent_id", "time", "operation", "added_records", "added_files", "total_records",
               "total_files", "offsets", "batch", "consumer", "commit_id", "records", "dlq_records", "current",
               "summary"]
    if fmt in (Format.table, Format.rich):
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
    max_age: str = typer.Option(None, "--max-age", metavar="DURATION",
                                help="Exit 1 when any symbol's newest trade is older than this (90s, 15m, 2h), "
                                     "or when there is none; rows get a `stale` column."),
    fmt: Format = DATA_FORMAT,
    output: str = OUTPUT,
    table: str = TABLE,
) -> None:
    """Newest trade and ingestion time per exchange and symbol, and how far each lags behind now."""
    from k2cli.timespec import parse_duration

    limit = parse_duration(max_age, "--max-age") if max_age is not None else None
    flt = _filter(symbol, exchange, since, None)
    lake = _lake(table)
    result = lake.freshness(flt, max_age=limit)
    _notes_to_stderr(result, fmt)
    emit(result.rows(), result.columns, fmt, output,
         arrow=result.to_arrow() if fmt == Format.parquet else None, title="freshness", footer=_footer(result))
    _say_why_empty(lake, result, flt)
    if limit is not None:
        stale = sum(1 for r in result.rows() if r["stale"])
        if stale or not result.rows():
            typer.echo(f"k2: {stale} of {len(result.rows())} symbols older than {max_age.strip()}"
                       if result.rows() else "k2: no trades, so none within --max-age", err=True)
            raise typer.Exit(1)


@app.command()
def gaps(
    exchange: str = EXCHANGE_OPTION,
    symbol: str = typer.Option(None, "--symbol", "-s",
                               help="Only this symbol, as stored or as typed for its exchange (BTCUSDT, BTC/USD, "
                                    "BTC-USD); all symbols when omitted."),
    since: str = SINCE_OPTION,
    until: str = UNTIL_OPTION,
    fmt: Format = format_option(RICH_JSON, "rich (default) or json."),
    table: str = TABLE,
) -> None:
    """Missing trade-id ranges and duplicated trade ids per exchange and symbol; exit 1 when there are any.

    Ids are the exchange's own sequential trade ids (source_sequence, where trade_id ends with it): between the
    lowest and the highest id of a symbol in the window, every absent id is missing. A trade id on more than
    one row is a duplicate.
    """
    from k2cli.lake.gaps import symbol_candidates

    flt = _filter(None, exchange, since, until)
    found = _lake(table).gaps(flt, symbol_candidates(symbol) if symbol and symbol.strip() else None)
    if fmt == Format.json:
        from k2cli.cli._output import print_json

        print_json(found.to_dict())
    else:
        _print_gaps(found)
    if not found.ok:
        raise typer.Exit(1)


def _print_gaps(found: Any, shown: int = 20) -> None:
    """The report as a table per symbol, the first `shown` missing ranges and duplicates of each listed."""
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    if not found.symbols:
        out.print("no trades in the window")
        return
    view = Table(title="trade ids per symbol", show_lines=True)
    for name in ("exchange", "symbol", "rows", "ids", "first id", "last id"):
        view.add_column(name, justify="left" if name in ("exchange", "symbol") else "right")
    view.add_column("missing", no_wrap=True)
    view.add_column("duplicated", no_wrap=True)
    for s in found.symbols:
        missing = [f"{a}" if a == b else f"{a}..{b}" for a, b in s.missing[:shown]]
        if len(s.missing) > shown:
            missing.append(f"… {len(s.missing) - shown} more ranges")
        dups = [f"{t} ×{n}" for t, n in s.duplicates[:shown]]
        if len(s.duplicates) > shown:
            dups.append(f"… {len(s.duplicates) - shown} more")
        head = f"{s.missing_ids:,} ids" if s.missing else ("none" if s.first_id is not None else "no sequential ids")
        view.add_row(s.exchange, s.symbol, f"{s.rows:,}", f"{s.ids:,}", _or_dash(s.first_id), _or_dash(s.last_id),
                     "\n".join([head, *missing]),
                     "\n".join([f"{len(s.duplicates):,} trades", *dups]) if s.duplicates else "none")
    out.print(view)
    out.print("[green]✓ every id present once[/]" if found.ok else
              f"[red]✗ {sum(s.missing_ids for s in found.symbols):,} ids missing, "
              f"{sum(len(s.duplicates) for s in found.symbols):,} trades duplicated[/]")


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)

"""Render rows as a rich table, JSON, CSV or Parquet, to stdout or a file; Decimals exact, times UTC ISO."""

from __future__ import annotations

import csv
import datetime as _dt
import decimal
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from k2cli.cli.options import Format
from k2cli.errors import K2Error
from k2cli.jsonutil import dumps, plain
from k2cli.redaction import redact, redacting


class OutputError(K2Error):
    """The output cannot be written as asked."""

    exit_code = 2


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    sys.stdout.write(dumps(data, display=True, indent=2) + "\n")


def cell(value: Any) -> str:
    """One CSV or table cell: nested values as compact JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return dumps(value, display=True, separators=(",", ":"))
    value = plain(value)
    return value if isinstance(value, str) else dumps(value)


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str, output: str | None, *,
         arrow: Any = None, table_columns: Sequence[str] | None = None, title: str | None = None,
         footer: str | None = None, document: Any = None) -> None:
    """Write rows in the chosen format; `document` replaces the row list as the JSON body when given."""
    fmt = Format(fmt)
    if fmt == Format.parquet:
        _write_parquet(rows, columns, output, arrow)
    elif fmt == Format.json:
        body = document if document is not None else [{c: r.get(c) for c in columns} for r in rows]
        _write_text(dumps(body, display=True, indent=2) + "\n", output)
    elif fmt == Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([cell(r.get(c)) for c in columns])
        _write_text(buf.getvalue(), output)
    else:
        _write_table(rows, list(table_columns or columns), output, title, footer)


def _write_text(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(redact(text), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write --output {output}: {exc.strerror}") from None


def _write_parquet(rows: Sequence[dict[str, Any]], columns: Sequence[str], output: str | None, arrow: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if output is None:
        raise OutputError("--format parquet needs --output FILE")
    if arrow is None:
        data = [{c: _parquet_value(r.get(c)) for c in columns} for r in rows]
        arrow = pa.Table.from_pylist(data) if data else pa.table({c: pa.array([], pa.string()) for c in columns})
    try:
        pq.write_table(arrow, output, compression="zstd")
    except OSError as exc:
        raise OutputError(f"cannot write --output {output}: {exc}") from None


def _parquet_value(value: Any) -> Any:
    if isinstance(value, dict):
        return dumps(value, display=True, separators=(",", ":"))
    return value


def _table_cell(value: Any) -> str:
    if isinstance(value, _dt.datetime) and value.tzinfo is not None:
        return value.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return cell(value)


def _natural_width(table: Any) -> int:
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=100_000)
    return Measurement.get(console, console.options, table).maximum


def _write_table(rows: Sequence[dict[str, Any]], columns: list[str], output: str | None, title: str | None,
                 footer: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title} (times UTC)" if title else None, show_lines=False, header_style="bold")
    cells = [[_table_cell(r.get(c)) for c in columns] for r in rows]
    for index, c in enumerate(columns):
        sample = next((r.get(c) for r in rows if r.get(c) is not None), None)
        numeric = isinstance(sample, int | decimal.Decimal | float) and not isinstance(sample, bool)
        # numbers and times are never folded: a wrapped price reads as a different price
        keep_whole = numeric or isinstance(sample, _dt.datetime)
        longest = max([len(c)] + [len(row[index]) for row in cells])
        width = longest if keep_whole else min(longest, 24)
        table.add_column(c, justify="right" if numeric else "left", overflow="fold", min_width=width,
                         no_wrap=keep_whole)
    for row in cells:
        table.add_row(*row)
    if output is None:
        console = Console()
        if not console.is_terminal:  # a pipe or file: print the table at its natural width, never squeezed
            console = Console(width=max(80, _natural_width(table)))
        console.print(table)
        if footer:
            Console(stderr=True).print(footer, style="dim", highlight=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            console = Console(file=redacting(fh), width=max(80, _natural_width(table)), force_terminal=False)
            console.print(table)
            if footer:
                console.print(footer, highlight=False)
    except OSError as exc:
        raise OutputError(f"cannot write --output {output}: {exc.strerror}") from None

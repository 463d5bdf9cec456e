"""Helpers shared by the command modules: output formats, JSON rendering, error reporting."""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import typer


class Format(enum.StrEnum):
    """Output formats of commands that print data."""

    rich = "rich"
    table = "table"
    json = "json"
    csv = "csv"


FORMAT_OPTION = typer.Option("rich", "--format", "-f", help="Output format: rich (default) or json.")


def to_jsonable(value: Any) -> Any:
    """Turn k2 values (Decimal, datetime, UUID, bytes, Path) into JSON-safe values, exactly."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Path):
        return str(value)
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def print_json(data: Any) -> None:
    """Print data as JSON on stdout."""
    sys.stdout.write(json.dumps(to_jsonable(data), indent=2) + "\n")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line on stderr and return the Exit to raise."""
    typer.echo(f"k2: error: {message}", err=True)
    return typer.Exit(code)


def not_built(group: str) -> None:
    """Say that a command group's engine is not built yet (exit 3)."""
    from k2cli.errors import NotBuiltYet

    raise NotBuiltYet(f"`k2 {group}` is not built yet in this version of k2")

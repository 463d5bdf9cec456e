"""Helpers shared by the command modules: output formats, JSON rendering, error reporting."""

from __future__ import annotations

import enum
import json
import sys
from typing import Any

import typer

from k2cli.jsonutil import to_jsonable


class Format(enum.StrEnum):
    """Output formats of commands that print data."""

    rich = "rich"
    table = "table"
    json = "json"
    csv = "csv"


FORMAT_OPTION = typer.Option("rich", "--format", "-f", help="Output format: rich (default) or json.")


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

"""The CLI's one vocabulary: the output format enum and the options several commands share.

Help strings name the setting's environment variable and default from `k2cli.settings`, never copies.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import typer
from typer._click.core import Context, Parameter  # typer vendors click
from typer._click.types import ParamType

from k2cli.settings import Settings, env_name


class Format(enum.StrEnum):
    """Every output format; each command accepts the subset it can write."""

    rich = "rich"
    table = "table"  # the same as rich, for data commands
    json = "json"
    csv = "csv"
    parquet = "parquet"
    junit = "junit"
    markdown = "markdown"


RICH_JSON = (Format.rich, Format.json)
DATA = (Format.table, Format.rich, Format.json, Format.csv, Format.parquet)
REPORT = (Format.rich, Format.json, Format.junit, Format.markdown)
LISTING = (Format.rich, Format.json, Format.markdown)


def _unaccepted(value: object, allowed: tuple[Format, ...]) -> str:
    return f"{str(value)!r} is not one of {', '.join(allowed)}"


class FormatChoice(ParamType):
    """A --format value from a command's subset of Format, case-insensitive."""

    name = "format"

    def __init__(self, allowed: tuple[Format, ...]) -> None:
        self.allowed = allowed

    def get_metavar(self, param: Parameter, ctx: Context) -> str:
        return "<" + "|".join(self.allowed) + ">"

    def convert(self, value: Any, param: Parameter | None, ctx: Context | None) -> Format:
        text = str(value).strip().lower()
        if text in self.allowed:
            return Format(text)
        self.fail(_unaccepted(value, self.allowed), param, ctx)


def format_option(allowed: tuple[Format, ...], help_text: str, default: Format | None = None) -> Any:
    """The --format/-f option of a command that writes the formats in `allowed` (the first is the default)."""
    return typer.Option((default or allowed[0]).value, "--format", "-f", click_type=FormatChoice(allowed),
                        help=help_text)


def require_format(fmt: Format, allowed: tuple[Format, ...], why: str = "") -> Format:
    """Reject a --format value the command takes only in other cases, as a bad --format value is rejected."""
    if fmt not in allowed:
        raise typer.BadParameter(_unaccepted(fmt, allowed) + (f" {why}" if why else ""),
                                 param_hint="'--format' / '-f'")
    return fmt


def usage_error(message: str) -> Exception:
    """A usage error (a bad flag combination): `k2: error: MESSAGE` on stderr, exit 2."""
    from typer._click.exceptions import UsageError

    return UsageError(message)


def default_of(name: str) -> Any:
    """The built-in default of a setting."""
    spec = _FIELDS[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if callable(spec.default_factory):
        return spec.default_factory()
    raise KeyError(f"setting {name} has no default")


def setting_help(text: str, name: str, default: str | None = None) -> str:
    """Help text ending in `[K2_NAME, default D]`, both taken from the settings."""
    shown = default if default is not None else _shown(default_of(name))
    return f"{text} [{env_name(name)}, default {shown}]."


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}

DATA_FORMAT = format_option(DATA, "table (rich, default), json, csv or parquet (parquet needs --output).")
OUTPUT = typer.Option(None, "--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")
TABLE = typer.Option(None, "--table", metavar="NS.TABLE", help=setting_help("Iceberg table to use", "table"))
GROUP = typer.Option(None, "--group", "-g", help=setting_help("Kafka consumer group", "consumer_group"))
TOPICS = typer.Option(None, "--topics", "-t", help=setting_help("Comma-separated Kafka topics", "consumer_topics"))

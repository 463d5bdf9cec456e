"""`k2 config show`: every setting in force, its value and where it came from, secrets redacted."""

from __future__ import annotations

import typer

from k2cli.cli.options import RICH_JSON, Format, format_option

app = typer.Typer(help="Show the settings in force and where each came from (secrets redacted).",
                  no_args_is_help=True)


@app.callback()
def config() -> None:
    """Show the settings in force and where each came from (secrets redacted)."""


@app.command()
def show(fmt: Format = format_option(RICH_JSON, "rich (default) or json (settings and warnings).")) -> None:
    """Every setting with its value in force and its source: default, k2.toml, env or flag; secrets as ***.

    Warns on stderr, one line each, about K2_* variables nothing in k2 reads and threshold names no checklist
    knows (with a guess at the one meant); exit 0 with warnings, 2 on a setting k2 cannot use.
    """
    import os

    from k2cli.settings import load_settings_with_sources
    from k2cli.settings_report import report, text_value

    settings, sources = load_settings_with_sources()
    document = report(settings, sources, os.environ)
    for warning in document["warnings"]:
        typer.echo(f"k2: warning: {warning}", err=True)
    if fmt == Format.json:
        from k2cli.cli._output import print_json

        print_json(document)
        return
    from k2cli.cli._output import emit

    shown = [{**row, "value": text_value(row["value"])} for row in document["settings"]]
    emit(shown, ["variable", "value", "source"], Format.table.value, None)

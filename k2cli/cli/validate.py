"""`k2 validate`: not built yet; says so and exits 3."""

from __future__ import annotations

import typer

from k2cli.cli._common import not_built

app = typer.Typer(help="(not built yet)")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def placeholder(ctx: typer.Context) -> None:
    """(not built yet)"""
    not_built("validate")

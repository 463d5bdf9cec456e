"""The root `k2` command: command groups are imported only when they are invoked."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import typer
import typer.core

from k2cli import __version__

# name -> (module, one-line help); the help lives here so `k2 --help` imports no group.
GROUPS: dict[str, tuple[str, str]] = {
    "stack": ("k2cli.cli.stack", "Install, start, stop and check the local stack."),
    "status": ("k2cli.cli.status", "The whole pipeline on one screen, judged (exit 0/1/2 for cron)."),
    "simulate": ("k2cli.cli.simulate", "Serve a local exchange (its real WebSocket protocol) with injectable faults."),
    "stream": ("k2cli.cli.stream", "Stream exchange trades into Kafka as Avro v2 records."),
    "backfill": ("k2cli.cli.backfill", "Fill a historical range of trades from an exchange's REST API into Kafka."),
    "consume": ("k2cli.cli.consume", "Write Kafka trades into Iceberg exactly once."),
    "query": ("k2cli.cli.query", "Query the lake: trades, OHLCV, SQL, snapshots, freshness."),
    "lake": ("k2cli.cli.lake", "Maintain the table: stats, compact small files, expire snapshots, remove orphans."),
    "dlq": ("k2cli.cli.dlq", "List, inspect, replay and purge dead-lettered records."),
    "validate": ("k2cli.cli.validate", "Run the operators' validation checklists with pass/fail reports."),
    "soak": ("k2cli.cli.soak", "Run long stability tests of the stream and consumer, and report."),
    "config": ("k2cli.cli.config", "Show the settings in force and where each came from (secrets redacted)."),
}


class LazyGroup(typer.core.TyperGroup):
    """A group whose subcommands are Typer apps imported on first use, not for `--help`."""

    _describing = False

    def list_commands(self, ctx):
        return list(GROUPS)

    def get_command(self, ctx, cmd_name):
        if cmd_name not in GROUPS:
            return None
        module_name, help_text = GROUPS[cmd_name]
        if self._describing:
            return typer.core.TyperCommand(name=cmd_name, help=help_text, short_help=help_text)
        command = typer.main.get_command(importlib.import_module(module_name).app)
        command.name = cmd_name
        # A group's Typer app would offer its own --install-completion; k2 ships static scripts instead.
        command.params = [p for p in command.params if p.name not in ("install_completion", "show_completion")]
        return command

    def resolve_command(self, ctx, args):
        """As click does, with a guess for a mistyped command (`k2 consme`: Did you mean 'consume'?)."""
        import difflib

        from typer._click.exceptions import UsageError

        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            close = difflib.get_close_matches(args[0] if args else "", list(GROUPS), n=1, cutoff=0.6)
            if close and "Did you mean" not in exc.message:
                exc.message = f"{exc.message.rstrip()} Did you mean {close[0]!r}?"
            raise

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        """Run k2; a usage error or a K2Error ends it with one `k2: error:` line and its exit code."""
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

        from k2cli.errors import K2Error

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        except NoArgsIsHelpError as exc:  # `k2 query` alone: its help, as click shows it
            exc.show()
            code = exc.exit_code
        except UsageError as exc:  # bad option value, unknown option or choice, bad flag combination
            code = _error_line(" ".join(exc.format_message().split()), 2)
        except ClickException as exc:
            code = _error_line(" ".join(exc.format_message().split()), exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            code = 1
        except K2Error as exc:
            code = _error_line(str(exc), exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def format_help(self, ctx, formatter):
        self._describing = True
        try:
            return super().format_help(ctx, formatter)
        finally:
            self._describing = False


def _error_line(message: str, code: int) -> int:
    """Print `k2: error: MESSAGE` (secrets redacted) on stderr and return the exit code."""
    from k2cli.redaction import redact

    typer.echo(f"k2: error: {redact(message)}", err=True)
    return code


app = typer.Typer(
    cls=LazyGroup,
    name="k2",
    help="k2 streams crypto trades from exchanges into Kafka and Iceberg, queries the lake, handles "
    "failed records, and turns validation procedures into executable checklists.\n\n"
    "Settings: defaults < k2.toml < K2_* environment variables < flags.",
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help for the root keeps `k2 --help` fast (rich help costs ~0.2 s)
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"k2 {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    config_file: str = typer.Option(None, "--config", metavar="FILE",
                                    help="Read settings from this k2.toml (else ./k2.toml)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """k2: the crypto market-data pipeline toolkit."""
    if config_file:
        from k2cli.settings import set_config_flag

        set_config_flag(config_file)


def main() -> None:
    """Entry point: run the CLI (LazyGroup.main turns operator errors into one line and an exit code)."""
    from k2cli.redaction import guard_std_streams

    guard_std_streams()  # whatever reaches stdout or stderr has its secrets redacted
    if not sys.stdout.isatty():  # piped help: typer's rich tables at a width that never cuts a default short
        os.environ.setdefault("TERMINAL_WIDTH", "160")
    try:
        typer.main.get_command(app).main(prog_name="k2")
    except KeyboardInterrupt:
        typer.echo("k2: interrupted", err=True)
        sys.exit(130)

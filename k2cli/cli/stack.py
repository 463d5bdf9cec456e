"""`k2 stack`: install, start, stop and check the local stack (Kafka, Schema Registry, PostgreSQL,
Prometheus), natively and on loopback only."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import typer

from k2cli.cli._output import print_json
from k2cli.cli.options import RICH_JSON, Format, format_option

app = typer.Typer(
    help="Install, start, stop and check the local stack: Kafka (KRaft), a Confluent-API Schema Registry "
    "(Apicurio Registry), PostgreSQL and Prometheus, as local processes on 127.0.0.1.\n\n"
    "State lives in $K2_HOME (default ~/.k2): cache/ downloads, stack/ config and data, logs/, run/ pid files.",
    no_args_is_help=True,
)

FORMAT = format_option(RICH_JSON, "Output format: rich (default) or json.")
TIMEOUT = typer.Option(None, "--timeout", min=1.0,
                       help="Seconds to wait for each service to become healthy (default: per service, 30-180).")


WITH = typer.Option("", "--with", metavar="SERVICES",
                    help="Optional services to start too, comma-separated: s3 (versitygw), rest-catalog "
                         "(Iceberg REST catalog on that S3). Once running, status and down include them.")


def _stack(extras: tuple[str, ...] = ()) -> Any:
    from k2cli.stack.manager import Stack

    return Stack.from_settings(extras=extras)


def _extras(value: str) -> tuple[str, ...]:
    """The `--with` names, checked; rest-catalog brings s3 (its warehouse) along."""
    from k2cli.stack.lake_services import OPTIONAL

    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in OPTIONAL]
    if unknown:
        raise typer.BadParameter(f"unknown service {', '.join(unknown)} (choose from {', '.join(OPTIONAL)})",
                                 param_hint="--with")
    return tuple(dict.fromkeys(("s3", *names) if "rest-catalog" in names else names))


def _progress(fmt: str) -> Callable[[str], None]:
    def say(message: str) -> None:
        # Progress goes to stderr, so `--format json` output stays clean on stdout.
        print(f"k2 stack: {message}", file=sys.stderr, flush=True)

    return say


def _table(states: Sequence[Any], title: str, columns: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for s in states:
        row = {
            "service": s.name,
            "state": s.action or ("running" if s.running else "stopped"),
            "health": "[green]healthy[/green]" if s.healthy else "[red]unhealthy[/red]",
            "pid": str(s.pid or "-"),
            "listens on": s.listen,
            "log": s.log,
            "detail": s.detail,
            "time": f"{s.seconds:.1f}s" if s.seconds is not None else "",
        }
        table.add_row(*(row[c] for c in columns))
    _console().print(table)


def _console():
    from rich.console import Console

    # Piped output (CI logs) gets a wide table rather than rich's 80-column default.
    return Console() if sys.stdout.isatty() else Console(width=200)


@app.command()
def up(fmt: Format = FORMAT, timeout: float = TIMEOUT, with_: str = WITH) -> None:
    """Start every service that is not running and wait until all are healthy.

    On first use it installs what is missing (downloads are cached), initialises the data directories,
    creates the contract topics and the catalog database. Running it again changes nothing."""
    import time

    began = time.monotonic()
    states = _stack(_extras(with_)).up(progress=_progress(fmt), timeout=timeout)
    elapsed = time.monotonic() - began
    if fmt == "json":
        print_json({"healthy": all(s.healthy for s in states), "seconds": round(elapsed, 1),
                    "services": [s.to_dict() for s in states]})
        return
    _table(states, f"k2 stack up: all services healthy ({elapsed:.1f}s)",
           ("service", "state", "pid", "listens on", "log", "time"))


@app.command()
def down(fmt: Format = FORMAT) -> None:
    """Stop the processes `k2 stack up` started, and only those.

    Processes are tracked by pid files with their start times; data stays in $K2_HOME/stack."""
    states = _stack().down(progress=_progress(fmt))
    if fmt == "json":
        print_json({"services": [{"name": s.name, "pid": s.pid, "action": s.action} for s in states]})
        return
    _table(states, "k2 stack down", ("service", "state", "pid", "time"))


@app.command()
def status(fmt: Format = FORMAT) -> None:
    """Show each service's process and health; exit 1 when any is not healthy."""
    states = _stack().status()
    healthy = all(s.healthy for s in states)
    if fmt == "json":
        print_json({"healthy": healthy, "services": [s.to_dict() for s in states]})
    else:
        _table(states, f"k2 stack status: {'all healthy' if healthy else 'NOT all healthy'}",
               ("service", "health", "pid", "listens on", "detail", "log"))
    if not healthy:
        raise typer.Exit(1)


@app.command("install")
def install_cmd(fmt: Format = FORMAT) -> None:
    """Install everything the stack runs, without starting it.

    Debian packages (postgresql, prometheus, nginx, maven; as root), then Kafka's jars and Apicurio
    Registry from Maven Central into the cache ($K2_CACHE_DIR, default $K2_HOME/cache)."""
    done = _stack().install(progress=_progress(fmt))
    if fmt == "json":
        print_json(done)
        return
    from rich.table import Table

    table = Table(title="k2 stack install", title_justify="left")
    table.add_column("component")
    table.add_column("installed", overflow="fold")
    for name, what in done.items():
        table.add_row(name, what)
    _console().print(table)

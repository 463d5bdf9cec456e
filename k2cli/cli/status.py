"""`k2 status`: the whole pipeline on one screen (streams, consumer, groups, table, DLQ, services), judged."""

from __future__ import annotations

import sys
from typing import Any

import typer

from k2cli.cli.options import RICH_JSON, Format, format_option, setting_help

app = typer.Typer(add_completion=False)

STATUS_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "ERROR": "red", "SKIP": "dim"}


@app.command()
def status(
    streams: list[str] = typer.Option(None, "--stream", "-e", metavar="EXCHANGE",
                                      help="Only this stream, which must be up (repeat or comma-separate; "
                                           "default: every exchange, judged if it ran within --window)."),
    groups: list[str] = typer.Option(None, "--group", "-g", metavar="GROUP",
                                     help=setting_help("Only this consumer group, which must have members "
                                                       "(repeat or comma-separate)", "consumer_group")),
    window: str = typer.Option("10m", "--window", metavar="DURATION",
                               help="A stream or consumer up at any time in this window and down now fails."),
    stale_after: str = typer.Option("60s", "--stale-after", metavar="DURATION",
                                    help="Warn when a running stream's last message is older."),
    max_lag: int = typer.Option(None, "--max-lag", min=0, metavar="N",
                                help="Warn when a group's total lag is above N records."),
    services: bool = typer.Option(True, "--services/--no-services",
                                  help="Check the local stack's services (`k2 stack status`)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until Ctrl-C (exit code of the last view)."),
    interval: float = typer.Option(2.0, "--interval", min=0.5, help="Seconds between refreshes with --watch."),
    fmt: Format = format_option(RICH_JSON, "rich (default) or json (one document; with --watch one per line)."),
) -> None:
    """The pipeline on one screen; exit 0 all well, 1 warnings, 2 a failure, 3 something could not be read.

    Streams (up, trades/s, last message age, reconnects, gaps filled/unfilled) and the consumer process (commit
    latency, Iceberg breaker) come from Prometheus; consumer groups (members, lag per partition, last commit)
    from Kafka and the table's snapshots; the table (snapshots, files, newest trade per exchange); the DLQ
    (entries by origin and type); the local stack's services.
    """
    from k2cli.observe.status import Options
    from k2cli.settings import load_settings

    opts = Options(streams=_names(streams, "--stream"), groups=_list(groups), window_s=_seconds(window, "--window"),
                   stale_after_s=_seconds(stale_after, "--stale-after"), max_lag=max_lag, services=services)
    settings = load_settings()
    code = _watch(settings, opts, fmt, interval) if watch else _once(settings, opts, fmt)
    raise typer.Exit(code)


def _list(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v.strip() for value in values or [] for v in value.split(",") if v.strip())


def _names(values: list[str] | None, flag: str) -> tuple[str, ...]:
    from k2cli.cli.options import usage_error
    from k2cli.exchanges import registry

    names = tuple(v.lower() for v in _list(values))
    unknown = [n for n in names if n not in registry.names()]
    if unknown:
        raise usage_error(f"{flag} {unknown[0]!r} is not one of {', '.join(registry.names())}")
    return names


def _seconds(text: str, flag: str) -> int:
    from k2cli.timespec import parse_duration

    return int(parse_duration(text, flag).total_seconds())


def _once(settings: Any, opts: Any, fmt: Format) -> int:
    from k2cli.observe.status import collect

    found = collect(settings, opts)
    if fmt == Format.json:
        from k2cli.cli._output import print_json

        print_json(found.to_dict())
    else:
        from rich.console import Console

        console = Console() if sys.stdout.isatty() else Console(width=160)
        console.print(render(found))
    return found.exit_code


def _watch(settings: Any, opts: Any, fmt: Format, interval: float) -> int:
    import time

    from k2cli.observe.status import collect

    code = 3
    try:
        if fmt == Format.json:
            from k2cli.jsonutil import dumps

            while True:
                found = collect(settings, opts)
                code = found.exit_code
                print(dumps(found.to_dict(), display=True), flush=True)
                time.sleep(interval)
        from rich.live import Live

        with Live(auto_refresh=False) as live:
            while True:
                found = collect(settings, opts)
                code = found.exit_code
                live.update(render(found), refresh=True)
                time.sleep(interval)
    except KeyboardInterrupt:
        return code


def _table(title: str, columns: tuple[str, ...]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _st(part: Any) -> str:
    return f"[{STATUS_STYLE.get(part.status.value, '')}]{part.status.value}[/]"


def _or(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def render(found: Any) -> Any:
    """The status as rich renderables: a headline, one table per kind of part, and the problems."""
    import datetime as _dt

    from rich.console import Group

    from k2cli.timespec import iso

    at = iso(_dt.datetime.fromtimestamp(found.time, _dt.UTC))
    overall = found.overall.value
    out: list[Any] = [f"[bold]k2 status: [{STATUS_STYLE[overall]}]{overall}[/][/] at {at}"]
    out += _render_processes(found)
    out += _render_data(found)
    problems = [f"{p.kind} {p.name}: {p.detail}" for p in found.parts if p.status.value in ("WARN", "FAIL", "ERROR")]
    out += [f"[red]✗ {line}[/]" for line in problems] or ["[green]✓ nothing to report[/]"]
    return Group(*out)


def _render_processes(found: Any) -> list[Any]:
    streams = _table("streams", ("exchange", "status", "trades/s", "last msg", "reconnects", "gaps filled",
                                 "gaps unfilled", "detail"))
    for p in found.of("stream"):
        f = p.figures
        streams.add_row(p.name, _st(p), _or(f.get("trades_per_s")), _or(f.get("last_message_age_s"), "s"),
                        _or(f.get("reconnects")), _or(f.get("gaps_filled")), _or(f.get("gaps_unfilled")), p.detail)
    consumer = _table("consumer process (Prometheus)", ("job", "status", "commit latency", "breaker", "lag",
                                                        "detail"))
    for p in found.of("consumer"):
        f = p.figures
        consumer.add_row(p.name, _st(p), _or(f.get("commit_latency_s"), "s"), _or(f.get("breaker")),
                         _or(f.get("lag")), p.detail)
    groups = _table("consumer groups (Kafka)", ("group", "status", "members", "lag", "lag per partition",
                                                "last commit", "detail"))
    for p in found.of("group"):
        f = p.figures
        per = "\n".join(f"{r['topic']}[{r['partition']}] {_or(r['lag'])}" for r in f.get("partitions", []))
        groups.add_row(p.name, _st(p), _or(f.get("members")), _or(f.get("lag")), per or "-",
                       _or(f.get("last_commit_age_s"), "s ago"), p.detail)
    services = _table("services", ("service", "status", "detail"))
    for p in found.of("service"):
        services.add_row(p.name, _st(p), p.detail)
    return [t for t in (services, streams, consumer, groups) if t.row_count]


def _render_data(found: Any) -> list[Any]:
    data = _table("table and dead letters", ("part", "status", "figures", "detail"))
    for p in found.of("table"):
        f = p.figures
        newest = "\n".join(f"{ex}: newest trade {age}s ago" for ex, age in f.get("newest_trade_age_s", {}).items())
        figures = f"{_or(f.get('snapshots'))} snapshots, {_or(f.get('files'))} files, {_or(f.get('records'))} rows"
        data.add_row(f"table {p.name}", _st(p), "\n".join(x for x in (figures, newest) if x) if f else "-",
                     p.detail if p.status.value != "PASS" else "")
    for p in found.of("dlq"):
        f = p.figures
        lines = [f"{f.get('entries', 0)} entries"]
        lines += [f"{k}: {v}" for k, v in (f.get("by_origin") or {}).items()]
        lines += [f"{k}: {v}" for k, v in (f.get("by_error_type") or {}).items()]
        data.add_row(f"dlq {p.name}", _st(p), "\n".join(lines), p.detail if p.status.value != "PASS" else "")
    return [data]

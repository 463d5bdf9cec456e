"""`k2 stream EXCHANGE` (one command per registered exchange): stream its trades into Kafka as Avro v2 records."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from k2cli.cli.logs import LOG_FORMAT, LOG_LEVEL, LogFormat, LogLevel
from k2cli.cli.logs import setup as setup_logs
from k2cli.cli.options import RICH_JSON, Format, format_option, setting_help
from k2cli.exchanges import registry
from k2cli.exchanges.descriptor import ExchangeDescriptor
from k2cli.settings import env_name

if TYPE_CHECKING:
    from rich.console import Console

    from k2cli.settings import Settings
    from k2cli.stream.runner import StreamOptions, StreamSummary

app = typer.Typer(help="Stream exchange trades into Kafka as Avro v2 records (Confluent wire format), with "
                       "heartbeat, idle watchdog, make-before-break rotation, reconnects with backoff, and a "
                       "dead-letter file for bad frames. Metrics on --metrics-port.",
                  no_args_is_help=True, add_completion=False)


def _make(desc: ExchangeDescriptor) -> Callable[..., None]:
    exchange = desc.name

    def command(
        symbols: str = typer.Option(None, "--symbols", "-s", help=f"{desc.symbols_help} [{desc.setting('symbols')}]"),
        url: str = typer.Option(None, "--url", help=f"Exchange WebSocket URL (ws:// for a local simulator"
                                f"{desc.url_note}) "
                                f"[{desc.setting('url')}]. Giving it drops the default failover URLs."),
        failover_urls: str = typer.Option(None, "--failover-urls", help="Comma-separated URLs to fail over to."),
        topic: str = typer.Option(None, "--topic", "-t", help=f"Kafka topic [{desc.setting('topic')}]."),
        max_messages: int = typer.Option(0, "--max-messages", "-n", help="Stop after N trades produced "
                                         "(0 = no limit)."),
        duration: float = typer.Option(0.0, "--duration", "-d", help="Stop after S seconds (0 = no limit)."),
        rotation_interval: float = typer.Option(None, "--rotation-interval", help=setting_help(
            "Seconds between planned make-before-break rotations", "rotation_interval")),
        ping_interval: float = typer.Option(None, "--ping-interval", help=setting_help(
            "Seconds between our pings", "ping_interval")),
        pong_timeout: float = typer.Option(None, "--pong-timeout", help=setting_help(
            "Seconds to wait for a pong before reconnecting", "pong_timeout")),
        idle_timeout: float = typer.Option(None, "--idle-timeout", help=setting_help(
            "Reconnect after S seconds without a frame", "idle_timeout")),
        metrics_port: int = typer.Option(None, "--metrics-port", help=f"Prometheus /metrics port, 0 = off "
                                         f"[{desc.setting('metrics_port')}, {desc.default_metrics_port}]."),
        insecure: bool = typer.Option(False, "--insecure", help="Do not verify the exchange's TLS certificate "
                                      "(testing only; prints a warning)."),
        ca_bundle: Path = typer.Option(None, "--ca-bundle", help="Also trust the CAs in this PEM file "
                                       f"[{env_name('ca_bundle')}]."),
        rest_url: str = typer.Option(None, "--rest-url", help=f"The exchange's REST API for the gap backfill "
                                     f"[{desc.setting('rest_url')}, {desc.default_rest_url or 'none'}; with a --url "
                                     "on another host, that URL's own http(s) origin]."),
        backfill: bool = typer.Option(None, "--backfill/--no-backfill", help=setting_help(
            "Fill gaps in trade ids (reconnects, stalls, restarts) from the REST API; off: only count them",
            "backfill", "on")),
        output_format: Format = format_option(RICH_JSON, "rich (default) or json for the final summary."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log connections and rotations too."),
        log_format: LogFormat = LOG_FORMAT,
        log_level: LogLevel = LOG_LEVEL,
        debug_leak: float = typer.Option(None, "--debug-leak-mb-per-min", hidden=True,
                                         help="Test-only fault: retain this many MiB per minute."),
    ) -> None:
        from k2cli.settings import load_settings
        from k2cli.stream.runner import build_options

        settings = load_settings(
            rotation_interval=rotation_interval, ping_interval=ping_interval, pong_timeout=pong_timeout,
            idle_timeout=idle_timeout, ssl_verify=False if insecure else None,
            ca_bundle=str(ca_bundle) if ca_bundle else None, debug_leak_mb_per_min=debug_leak, backfill=backfill,
        )
        options = build_options(
            settings, exchange, symbols=_listed(symbols), url=url, failover_urls=_listed(failover_urls),
            topic=topic, max_messages=max_messages, duration=duration, metrics_port=metrics_port, rest_url=rest_url,
        )
        console = setup_logs(("k2",), verbose, log_level, log_format)
        _run(settings, options, output_format, console)

    command.__doc__ = (f"Stream {desc.title} trades into Kafka until --max-messages, --duration, "
                       "SIGTERM or SIGINT (then flush and exit).")
    return command


def _listed(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated flag's values (None: the flag was not given)."""
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text is not None else None


def _run(settings: Settings, options: StreamOptions, output_format: Format, console: Console) -> None:
    """Run the stream (with the live panel on a terminal) and report its summary."""
    from k2cli.stream.runner import StreamRunner

    live = sys.stdout.isatty() and output_format == "rich"
    summary = _run_live(StreamRunner, settings, options, console) if live else StreamRunner(settings, options).run()
    _report(summary, output_format, console)


def _panel(summary):
    from rich.table import Table

    table = Table(title=f"k2 stream {summary.exchange} → {summary.topic}", show_header=False, expand=False)
    if summary.status != "running":
        colour = "green" if summary.status == "completed" else "yellow" if summary.status == "interrupted" else "red"
        state = f"[{colour}]{summary.status}[/] ({summary.stopped_by})"
    else:
        state = "[green]connected[/]" if summary.connected else "[red]reconnecting[/]"
    kafka = "[red]down (buffering)[/]" if summary.kafka_down else "[green]up[/]"
    table.add_row("exchange", f"{state}  {summary.url}")
    table.add_row("kafka", kafka)
    table.add_row("trades", f"received {summary.trades_received:,}  produced {summary.produced:,}  "
                            f"buffered {summary.buffered:,}  duplicates {summary.duplicates_dropped:,}"
                            + (f"  [red]undelivered {summary.undelivered:,}[/]" if summary.undelivered else ""))
    table.add_row("rate", f"{summary.trades_per_second:,.0f} trades/s over {summary.duration_seconds:,.0f}s")
    table.add_row("bad frames", _counts(summary.frame_errors))
    table.add_row("reconnects", _counts(summary.reconnects))
    table.add_row("rotations", _counts(summary.rotations))
    table.add_row("heartbeat", f"pings {summary.pings_sent}  pong timeouts {summary.pong_timeouts}")
    table.add_row("gaps", _gaps(summary))
    table.add_row("memory", f"RSS {summary.rss_bytes / 2**20:,.0f} MiB  leak score {summary.leak_score:.2f}")
    return table


def _gaps(summary: StreamSummary) -> str:
    """The gap backfill's line: gaps seen, filled, unfilled, trades backfilled (or that it is off)."""
    if not summary.backfill:
        return f"{summary.gaps_seen:,} seen (backfill off)"
    unfilled = f"[red]unfilled {summary.gaps_unfilled:,}[/]" if summary.gaps_unfilled else "unfilled 0"
    return (f"seen {summary.gaps_seen:,}  filled {summary.gaps_filled:,}  {unfilled}  "
            f"backfilled {summary.trades_backfilled:,} trades  REST calls {_counts(summary.backfill_requests)}")


def _counts(counts: dict) -> str:
    return "  ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"


def _run_live(runner_cls, settings, options, console):
    from rich.live import Live

    with Live(console=console, refresh_per_second=4, transient=True) as live:
        runner = runner_cls(settings, options, on_tick=lambda s: live.update(_panel(s)))
        return runner.run()


def _report(summary: StreamSummary, output_format: str, console: Console) -> None:
    from k2cli.cli._output import print_json
    from k2cli.errors import K2Error

    if output_format == "json":
        print_json(summary.as_dict())
    else:
        from rich.console import Console

        Console().print(_panel(summary))
        if summary.dlq_entries:
            Console().print(f"{summary.dlq_entries} entries written to the dead-letter directory {summary.dlq_dir}")
    if summary.not_delivered:
        raise K2Error(summary.not_delivered_line(), setting="K2_KAFKA_BOOTSTRAP_SERVERS")
    bad = sum(summary.frame_errors.values())
    if summary.status == "completed" and bad and not summary.produced and not summary.trades_received:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary.frame_errors.items()))
        raise K2Error(f"no trade produced: every frame with data was bad ({kinds}); they are kept in the "
                      f"dead-letter directory {summary.dlq_dir}")
    if summary.status == "interrupted" and summary.signal == "SIGINT":  # Ctrl-C: the shell's convention, 128 + 2
        typer.echo(f"k2: interrupted (SIGINT) after flushing: {summary.produced} trades produced", err=True)
        raise typer.Exit(130)


for _desc in registry.all():
    app.command(_desc.name)(_make(_desc))

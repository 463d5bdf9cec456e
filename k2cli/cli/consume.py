"""`k2 consume`: write Kafka trades into Iceberg exactly once, then print the statistics block."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import typer

from k2cli.cli.logs import LOG_FORMAT, LOG_LEVEL, LogFormat, LogLevel
from k2cli.cli.logs import setup as setup_logs
from k2cli.cli.options import GROUP, RICH_JSON, TABLE, TOPICS, Format, format_option, setting_help, usage_error

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from k2cli.consume.engine import ConsumeEngine, ConsumeOptions
    from k2cli.errors import K2Error
    from k2cli.observe.consumer_metrics import ConsumerMetrics
    from k2cli.settings import Settings

app = typer.Typer(help="Write Kafka trades into Iceberg exactly once.", add_completion=False)


@app.command()
def consume(
    topics: str = TOPICS,
    max_messages: int = typer.Option(None, "--max-messages", "-n", min=1,
                                     help="Stop after exactly N records (written + dead-lettered); default: run "
                                          "until SIGTERM/SIGINT."),
    until_caught_up: bool = typer.Option(False, "--until-caught-up",
                                         help="Stop once every partition it owns is read to its end offset "
                                              "(checked every 2 s), after writing what it read."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", min=1,
                                   help=setting_help("Records per Iceberg commit", "batch_size")),
    flush_interval: float = typer.Option(None, "--flush-interval", help=setting_help(
        "Write a partial batch once its first record is S seconds old", "flush_interval")),
    group: str = GROUP,
    table: str = TABLE,
    metrics_port: int = typer.Option(None, "--metrics-port", min=0, max=65535, help=setting_help(
        "Prometheus /metrics port, 0 = off", "consumer_metrics_port")),
    instance_id: str = typer.Option(None, "--instance-id", help=setting_help(
        "Static group member id", "consumer_instance_id",
        default="<group>-<host>-<free slot>, stable across restarts")),
    output_format: Format = format_option(RICH_JSON, "rich (default) or json for the statistics."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log assignments and commits too."),
    log_format: LogFormat = LOG_FORMAT,
    log_level: LogLevel = LOG_LEVEL,
) -> None:
    """Consume trades from Kafka and commit them to Iceberg in batches, exactly once.

    Each batch is one Iceberg snapshot carrying the Kafka offsets of every partition; on start and on every
    rebalance the consumer resumes from those offsets, so a crash never loses or duplicates a record.
    Undecodable records and invalid values go to the dead-letter queue (K2_DLQ_DIR). SIGTERM/SIGINT write
    the current batch, commit, print the statistics and exit.
    """
    # Before pyarrow loads (here and in the decode workers, which inherit it): malloc returns freed Arrow
    # buffers to the OS where the bundled allocator keeps them, for a lower peak RSS.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    from k2cli.consume.engine import ConsumeEngine
    from k2cli.observe.consumer_metrics import ConsumerMetrics
    from k2cli.settings import load_settings

    settings = load_settings(consumer_topics=_topic_list(topics), batch_size=batch_size,
                             flush_interval=flush_interval, consumer_group=group, table=table,
                             consumer_metrics_port=metrics_port, consumer_instance_id=instance_id)
    console = setup_logs(("k2.consume", "k2.lake", "k2.kafka"), verbose, log_level, log_format)
    metrics = ConsumerMetrics()
    options = _options(settings, max_messages)
    options.until_caught_up = until_caught_up
    engine = ConsumeEngine(settings, options, metrics=metrics)
    server = _serve_metrics(metrics, settings.consumer_metrics_port)
    try:
        failure = _run(engine, console, live=sys.stdout.isatty() and output_format == "rich")
    finally:
        if server is not None:
            server.shutdown()
    failure = failure or _unfinished(engine)
    if engine.stats.started:
        _report(engine, output_format, failure)
    if failure is not None:
        raise failure


def _unfinished(engine: ConsumeEngine) -> K2Error | None:
    """A run that ended without failing but is not a success: interrupted by Ctrl-C (exit 130), or every record
    it took went to the dead-letter queue (exit 1)."""
    from k2cli.errors import K2Error

    s = engine.stats
    if s.stopped_by == "SIGINT":
        interrupted = K2Error(f"interrupted (SIGINT) after committing what it had: {s.written} records written, "
                              f"{s.dlq_entries} dead-lettered")
        interrupted.exit_code = 130
        return interrupted
    if s.consumed and not s.written and s.dlq_entries == s.consumed:
        return K2Error(f"all {s.consumed} records were dead-lettered, nothing was written (see `k2 dlq list`)")
    return None


def _topic_list(topics: str | None) -> list[str] | None:
    """--topics as a list (None: the setting); a usage error when it names no topic."""
    topic_list = [t.strip() for t in topics.split(",") if t.strip()] if topics is not None else None
    if topics is not None and not topic_list:
        raise usage_error("--topics needs at least one topic name")
    return topic_list


def _options(settings: Settings, max_messages: int | None) -> ConsumeOptions:
    from k2cli.consume.engine import ConsumeOptions

    return ConsumeOptions(topics=tuple(settings.consumer_topics), group=settings.consumer_group,
                          table=settings.table, batch_size=settings.batch_size,
                          flush_interval=settings.flush_interval, max_messages=max_messages,
                          instance_id=settings.consumer_instance_id,
                          decode_workers=settings.consumer_decode_workers,
                          startup_timeout=settings.consumer_startup_timeout, dedup=settings.consumer_dedup,
                          decoder=settings.consumer_decoder)


def _run(engine: ConsumeEngine, console: Console, live: bool) -> K2Error | None:
    """Run the engine until it ends or a signal stops it; the K2Error that ended it early, if any."""
    from k2cli.consume.engine import stop_on_signals
    from k2cli.errors import K2Error

    try:
        with stop_on_signals(engine):
            if live:
                _run_live(engine, console)
            else:
                engine.run()
    except K2Error as exc:
        return exc
    return None


def _serve_metrics(metrics: ConsumerMetrics, port: int) -> Any:
    from k2cli.errors import ConfigError

    try:
        return metrics.serve(port)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on port {port}: {exc.strerror}",
                          setting="K2_CONSUMER_METRICS_PORT") from None


def _panel(engine: ConsumeEngine) -> Table:
    from rich.table import Table

    s = engine.stats
    o = engine.options
    table = Table(title=f"k2 consume {', '.join(o.topics)} → {o.table}", show_header=False, expand=False)
    table.add_row("group", f"{o.group} as {s.instance_id}")
    table.add_row("records", f"consumed {s.consumed:,}  written {s.written:,}  dead-lettered {s.dlq_entries:,}")
    table.add_row("rate", f"{s.throughput:,.0f} msg/s over {s.duration:,.1f}s")
    table.add_row("iceberg", f"snapshots {s.snapshots:,}  breaker {engine.breaker.state.value}"
                             + (f"  last commit {s.commit_seconds[-1] * 1000:,.0f} ms" if s.commit_seconds else ""))
    table.add_row("sequence gaps", f"{s.sequence_gaps:,}  duplicates skipped {s.duplicates:,}")
    table.add_row("errors", "  ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "0")
    return table


class _LivePanel:
    def __init__(self, engine: ConsumeEngine) -> None:
        self._engine = engine

    def __rich__(self) -> Table:
        return _panel(self._engine)


def _run_live(engine: ConsumeEngine, console: Console) -> None:
    from rich.live import Live

    with Live(_LivePanel(engine), console=console, refresh_per_second=2, transient=True):
        engine.run()


def _report(engine: ConsumeEngine, output_format: str, failure: K2Error | None) -> None:
    from k2cli.cli._output import print_json

    data = engine.stats.to_dict()
    data.update({"topics": list(engine.options.topics), "group": engine.options.group,
                 "table": engine.options.table, "ok": failure is None})
    if output_format == "json":
        print_json(data)
        return
    from rich.console import Console

    out = Console(highlight=False)
    out.print(_headline(engine, failure))
    out.print()
    out.print("Statistics:")
    out.print(f"  Messages consumed: {data['messages_consumed']}")
    out.print(f"  Messages written: {data['messages_written']}")
    out.print(f"  Errors: {data['errors']}")
    out.print(f"  Sequence gaps: {data['sequence_gaps']}")
    out.print(f"  Duration: {data['duration_seconds']:.2f} seconds")
    out.print(f"  Throughput: {data['throughput_msg_per_sec']:.2f} msg/sec")
    out.print(f"  DLQ entries: {data['dlq_entries']}")
    out.print(f"  Duplicates skipped: {data['duplicates_skipped']}")
    out.print(f"  Snapshots committed: {data['snapshots_committed']}")
    if data["kafka_rejoins"]:
        out.print(f"  Kafka rejoins (fenced by its own rejoin): {data['kafka_rejoins']}")


def _headline(engine: ConsumeEngine, failure: K2Error | None) -> str:
    """What the run came to, in one line: complete, stopped by SIGTERM, interrupted, all dead-lettered, or failed."""
    s = engine.stats
    if s.stopped_by == "SIGINT":
        return "[yellow]✗ Consumption interrupted (SIGINT)[/]"
    if failure is not None and s.consumed and not s.written and s.dlq_entries == s.consumed:
        return "[red]✗ Every record was dead-lettered; nothing written[/]"
    if failure is not None:
        return "[red]✗ Consumption stopped early[/]"
    if s.stopped_by == "SIGTERM":
        return "[green]✓ Consumption stopped (SIGTERM)[/]"
    if s.stopped_by == "caught_up":
        return "[green]✓ Consumption complete (caught up)[/]"
    return "[green]✓ Consumption complete![/]"

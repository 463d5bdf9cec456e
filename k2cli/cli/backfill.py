"""`k2 backfill EXCHANGE` (one command per exchange with REST trade history): fill a range of trades into Kafka."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from k2cli.cli.options import RICH_JSON, Format, format_option, usage_error
from k2cli.exchanges import registry
from k2cli.exchanges.descriptor import ExchangeDescriptor

if TYPE_CHECKING:
    from k2cli.settings import Settings
    from k2cli.stream.range_fill import RangeFill, RangeRequest, RangeSummary

app = typer.Typer(help="Fill a historical range of a symbol's trades from the exchange's REST API into Kafka, through "
                       "the stream's own encoder (records marked vendor_data source=rest).",
                  no_args_is_help=True, add_completion=False)


def _make(desc: ExchangeDescriptor) -> Callable[..., None]:
    exchange = desc.name

    def command(
        symbol: str = typer.Option(..., "--symbol", "-s", help=f"One symbol, as --symbols of `k2 stream {exchange}` "
                                   "takes it."),
        from_id: int = typer.Option(None, "--from-id", help="First trade id of the range."),
        to_id: int = typer.Option(None, "--to-id", help="Last trade id (default: the newest when the command "
                                  "started)."),
        since: str = typer.Option(None, "--since", help="Start time instead of ids: ISO 8601 or a duration ago "
                                  "(15m, 2h)."),
        until: str = typer.Option(None, "--until", help="End time of --since (exclusive; default: now)."),
        topic: str = typer.Option(None, "--topic", "-t", help=f"Kafka topic [{desc.setting('topic')}]."),
        rest_url: str = typer.Option(None, "--rest-url", help=f"The exchange's REST API [{desc.setting('rest_url')}, "
                                     f"{desc.default_rest_url or 'none'}]."),
        output_format: Format = format_option(RICH_JSON, "rich (default) or json for the summary."),
    ) -> None:
        from k2cli.settings import load_settings
        from k2cli.stream.range_fill import RangeFill

        if (from_id is None) == (since is None):
            raise usage_error("give either --from-id (and optionally --to-id) or --since (and optionally --until)")
        if (to_id is not None and from_id is None) or (until is not None and since is None):
            raise usage_error("--to-id goes with --from-id, --until with --since")
        settings = load_settings()  # a K2Error ends the command with one line and its exit code (bad input: 2)
        req = _request(settings, exchange, symbol, topic, rest_url, from_id, to_id, since, until)
        _report(_run(RangeFill, settings, req, output_format), output_format)

    command.__doc__ = (f"Fill a range of {desc.title} trades (by id or by time) from its REST API into Kafka, "
                       "with a progress bar; exit 1 if the range could not be fetched or delivered.")
    return command


def _request(settings: Settings, exchange: str, symbol: str, topic: str | None, rest_url: str | None,
             from_id: int | None, to_id: int | None, since: str | None, until: str | None) -> RangeRequest:
    """The range to fill, with the symbol checked and the times read as operators write them."""
    from k2cli.exchanges import registry as reg
    from k2cli.stream.range_fill import RangeRequest
    from k2cli.timespec import parse_instant, to_micros

    desc = reg.get(exchange)
    checked = desc.check_symbols((symbol,))
    if len(checked) != 1:
        raise usage_error("--symbol takes one symbol")
    conf = settings.exchange(exchange)
    return RangeRequest(exchange=exchange, symbol=checked[0], topic=topic or conf.topic,
                        rest_url=rest_url or conf.rest_url or desc.default_rest_url, from_id=from_id, to_id=to_id,
                        since_us=to_micros(parse_instant(since, "--since")) if since else None,
                        until_us=to_micros(parse_instant(until, "--until")) if until else None)


def _run(fill_cls: type[RangeFill], settings: Settings, req: RangeRequest, output_format: Format) -> RangeSummary:
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    live = sys.stderr.isatty() and output_format == "rich"
    columns = (TextColumn(f"backfill {req.symbol}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("{task.fields[trades]:,} trades"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not live) as bar:
        task = bar.add_task("fill", total=None, trades=0)
        fill = fill_cls(settings, req)
        fill.on_progress = lambda done, total: bar.update(task, completed=done, total=total,
                                                          trades=fill.summary.fetched)
        return fill.run()


def _report(summary: RangeSummary, output_format: Format) -> None:
    from k2cli.cli._output import print_json
    from k2cli.errors import K2Error

    if output_format == "json":
        print_json(summary.as_dict())
    else:
        from rich.console import Console

        ids = f"ids {summary.first_id}..{summary.last_id}" if summary.first_id is not None else "no trades"
        Console().print(f"backfill {summary.exchange} {summary.symbol} → {summary.topic}: {summary.status}, "
                        f"{summary.fetched:,} trades fetched ({ids}), {summary.produced:,} produced in "
                        f"{summary.duration_seconds:,.1f}s; requests "
                        + ("  ".join(f"{k} {v}" for k, v in sorted(summary.requests.items())) or "0"))
    if summary.status == "failed":
        raise K2Error(summary.error)
    lost = summary.undelivered + summary.produce_errors
    if lost:
        raise K2Error(f"{lost} trades were not delivered to Kafka", setting="K2_KAFKA_BOOTSTRAP_SERVERS")


for _desc in registry.all():
    if _desc.rest is not None:
        app.command(_desc.name)(_make(_desc))

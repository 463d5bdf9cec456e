"""`k2 soak`: long stability runs of `k2 stream` (and `k2 consume`) with a verdict, a report and a chart."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from k2cli.cli._output import print_json
from k2cli.cli.options import LISTING, RICH_JSON, Format, format_option, require_format, setting_help, usage_error
from k2cli.exchanges import registry
from k2cli.redaction import redact

if TYPE_CHECKING:
    from k2cli.soak.criteria import Evaluation
    from k2cli.soak.profile import RunRecord, Sample
    from k2cli.soak.runner import SoakEvent, SoakPlan, SoakResult, SoakRunner

app = typer.Typer(
    help="Run `k2 stream` (and with --consumer `k2 consume`) as child processes for hours, sample their memory "
    "and metrics every interval, and judge the seeds' soak criteria: memory growth < 50 MB over 24 h "
    "(10 MB up to 1 h, scaled in between), rate > 10 msg/s, drops < 10 per 24 h excluding rotations, "
    "leak score < 0.5, zero integrity errors, never above 450 MB RSS. Thresholds come from k2.toml "
    "\\[thresholds] soak_*.\n\n"
    "Writes <exchange>_soak_memory_profile.json, <exchange>_soak_test_report.txt and "
    "<exchange>_soak_chart.html (+ .svg) into --output-dir.\n\n"
    "Exit status: 0 pass, 1 warn (or a partial run), 2 fail, 3 could not run. Ctrl-C or SIGTERM ends the "
    "run early with a report marked PARTIAL.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
)

EXCHANGES = registry.names()


def _duration(hours: float | None, minutes: float | None) -> float:
    if hours is not None and minutes is not None:
        raise usage_error("give either --hours or --minutes, not both")
    if hours is not None:
        seconds = hours * 3600
    elif minutes is not None:
        seconds = minutes * 60
    else:
        raise usage_error("give the soak's length with --hours H or --minutes M (e.g. --hours 24)")
    if seconds <= 0:
        raise usage_error("--hours/--minutes must be greater than 0")
    return float(seconds)


@app.callback()
def soak(
    ctx: typer.Context,
    hours: float = typer.Option(None, "--hours", help="How long to run, in hours (fractions allowed)."),
    minutes: float = typer.Option(None, "--minutes", help="How long to run, in minutes (for short runs)."),
    exchange: str = typer.Option(None, "--exchange", "-e", help=f"{registry.names_text()}."),
    url: str = typer.Option(None, "--url", help="WebSocket URL to stream from (default: the exchange's URL "
                            "setting); ws:// for a local `k2 simulate`."),
    sample_interval: float = typer.Option(None, "--sample-interval", min=0.1, metavar="S",
                                          help="Seconds between samples (default 60; less for runs too short to "
                                               "give 20 samples after the warm-up)."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", metavar="DIR",
                                    help="Where the profile, report and chart go "
                                    "(default ./k2-soak-<exchange>-<UTC time>)."),
    consumer: bool = typer.Option(False, "--consumer", help="Also run and judge `k2 consume` on the stream's topic."),
    topic: str = typer.Option(None, "--topic", help="Kafka topic for the stream (default: the exchange's topic "
                              "setting); use a scratch topic when soaking against a simulator."),
    symbols: str = typer.Option(None, "--symbols", help="Comma-separated symbols for the stream."),
    group: str = typer.Option(None, "--group", help=setting_help("Consumer group for --consumer", "consumer_group")),
    startup_timeout: float = typer.Option(90.0, "--startup-timeout", min=1.0, metavar="S",
                                          help="Seconds the children get to open their metrics endpoints."),
    fmt: Format = format_option(RICH_JSON, "rich (live display, default) or json (summary)."),
) -> None:
    """Run a soak test (or see `k2 soak report --help`)."""
    if ctx.invoked_subcommand is not None:
        return
    seconds = _duration(hours, minutes)
    if exchange not in EXCHANGES:
        raise usage_error(f"--exchange must be {registry.names_text()}, got {exchange!r}" if exchange
                          else f"give {registry.names_text('--exchange {}')}")
    if sample_interval is not None and sample_interval > seconds:
        raise usage_error(f"--sample-interval {sample_interval:g} s is longer than the run ({seconds:g} s)")

    from k2cli.checks.thresholds import check_overrides
    from k2cli.settings import ensure_writable_dir, load_settings
    from k2cli.soak.criteria import default_sample_interval, thresholds_from
    from k2cli.soak.runner import SoakPlan, SoakRunner

    settings = load_settings()
    check_overrides(settings.thresholds)  # a typo in k2.toml [thresholds] would silently do nothing
    if sample_interval is None:
        sample_interval = default_sample_interval(seconds, thresholds_from(settings.thresholds))
    url = url or settings.exchange_url(exchange)
    if not url.startswith(("ws://", "wss://")):
        raise usage_error(f"--url {url!r} is not a ws:// or wss:// URL")
    if output_dir is None:
        output_dir = Path(f"k2-soak-{exchange}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    ensure_writable_dir(output_dir, "--output-dir")
    plan = SoakPlan(exchange=exchange, url=url, duration_s=seconds, sample_interval_s=sample_interval,
                    output_dir=output_dir, consumer=consumer, topic=topic, symbols=symbols, consumer_group=group,
                    startup_timeout_s=startup_timeout)
    thresholds = thresholds_from(settings.thresholds)
    if fmt == "json":
        runner = SoakRunner(plan, thresholds, on_event=_stderr_lines)
        result = _run_with_signals(runner)
        print_json(_summary(result.record, result.evaluation, output_dir))
    else:
        result = _run_live(plan, thresholds)
    raise typer.Exit(result.exit_code)


def _run_with_signals(runner: SoakRunner) -> SoakResult:
    """Run with SIGINT/SIGTERM turned into a graceful stop (a second Ctrl-C stops at once)."""
    names = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}
    previous = {}

    def handler(signum, frame):
        runner.stop(f"stopped by {names.get(signum, signum)}")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in names:
        previous[sig] = signal.signal(sig, handler)
    try:
        return runner.run()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


class _LiveView:
    """The live display: progress with ETA, current RSS, rate, drops; re-rendered every second."""

    def __init__(self, plan: SoakPlan) -> None:
        self.plan = plan
        self.event: SoakEvent | None = None
        self.sample: Sample | None = None  # the latest sample (kept when the finished event carries none)
        self.taken = 0
        self.ready_at: float | None = None
        self.ended_at: float | None = None
        self.started = time.monotonic()

    def update(self, event: SoakEvent) -> None:
        self.event = event
        if event.sample is not None:
            self.sample, self.taken = event.sample, event.samples_taken
        if event.kind == "ready":
            self.ready_at = time.monotonic()
        if event.kind == "finished":
            self.ended_at = time.monotonic()

    def __rich__(self):
        from rich.markup import escape
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        from k2cli.soak.chart import fmt_elapsed

        plan, ev = self.plan, self.event
        total = plan.sample_count * plan.sample_interval_s
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        if self.ready_at is None:
            state = ev.kind if ev else "starting"
            grid.add_row("status", f"{state}: waiting for the children's metrics endpoints "
                         f"({time.monotonic() - self.started:.0f} s)")
            elapsed = 0.0
        else:
            elapsed = min((self.ended_at or time.monotonic()) - self.ready_at, total)
            grid.add_row("status", "finished" if ev and ev.kind == "finished" else "running")
        bar = ProgressBar(total=total, completed=elapsed, width=50)
        eta = fmt_elapsed(max(0.0, total - elapsed))
        progress = Table.grid(padding=(0, 1))
        progress.add_row(bar, f"{100 * elapsed / total:5.1f}%", f"{fmt_elapsed(elapsed)} of {fmt_elapsed(total)}",
                         f"ETA {eta}")
        grid.add_row("progress", progress)
        s = self.sample
        if s is not None:
            samples = f"{self.taken} of {plan.sample_count}"
            grid.add_row("samples", samples)
            grid.add_row("stream RSS", f"{s.rss_mb:,.1f} MB (VMS {s.vms_mb:,.0f} MB)")
            rate = "n/a" if s.rate_msg_s is None else f"{s.rate_msg_s:,.1f} msg/s"
            msgs = "n/a" if s.messages is None else f"{s.messages:,.0f}"
            grid.add_row("rate", f"{rate}  ({msgs} messages)")
            grid.add_row("drops", f"{_n(s.drops)}  (rotations {_n(s.rotations)}, pings {_n(s.pings)}, "
                         f"pong timeouts {_n(s.pong_timeouts)})")
            grid.add_row("leak score", "needs 10 samples after warm-up" if s.leak_score is None
                         else f"{s.leak_score:.2f}")
            if s.consumer is not None:
                c = s.consumer
                lag = "n/a" if c.lag is None else f"{c.lag:,.0f}"
                crate = "n/a" if c.rate_msg_s is None else f"{c.rate_msg_s:,.1f} msg/s"
                grid.add_row("consumer", f"RSS {c.rss_mb:,.1f} MB, {crate}, lag {lag}")
            if s.scrape_error:
                grid.add_row("scrape", f"[yellow]{escape(s.scrape_error)}[/]")
        grid.add_row("output", escape(str(plan.output_dir)))
        title = f"k2 soak {plan.exchange} <- {escape(plan.url)}"
        return Panel(grid, title=title, title_align="left", subtitle="Ctrl-C ends with a partial report",
                     subtitle_align="right")


def _run_live(plan: SoakPlan, thresholds: dict[str, float]) -> SoakResult:
    """Run with a rich live display on a terminal (plain lines otherwise), then print the verdict."""
    from rich.console import Console
    from rich.live import Live
    from rich.markup import escape

    from k2cli.soak.runner import SoakRunner

    console = Console() if sys.stdout.isatty() else Console(width=200)
    if console.is_terminal:
        view = _LiveView(plan)
        runner = SoakRunner(plan, thresholds, on_event=view.update)
        with Live(view, console=console, refresh_per_second=1, transient=False):
            result = _run_with_signals(runner)
    else:
        runner = SoakRunner(plan, thresholds, on_event=_stderr_lines)
        result = _run_with_signals(runner)
    ev = result.evaluation
    table_color = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}
    for c in ev.criteria:
        color = table_color.get(c.status.value, "magenta")
        console.print(f"[bold {color}]{c.status.value:<5}[/] {escape(c.name)}: {escape(c.measured)} "
                      f"(limit {escape(c.limit)}){' - ' + escape(c.detail) if c.detail else ''}", highlight=False)
    color = table_color.get(ev.verdict.value, "magenta")
    partial = f" [bold]PARTIAL[/]: {escape(result.record.end_reason)}" if result.record.partial else ""
    console.print(f"[bold {color}]{ev.verdict.value}[/] (exit {ev.exit_code}){partial}", highlight=False)
    console.print(f"report: {escape(str(plan.output_dir / (plan.exchange + '_soak_test_report.txt')))}\n"
                  f"chart:  {escape(str(plan.output_dir / (plan.exchange + '_soak_chart.html')))}", highlight=False)
    return result


def _stderr_lines(event: SoakEvent) -> None:
    """Plain progress on stderr (for --format json and logs)."""
    s = event.sample
    if event.kind == "sample" and s is not None:
        rate = "n/a" if s.rate_msg_s is None else f"{s.rate_msg_s:.1f}"
        print(f"k2 soak: {event.samples_taken}/{event.plan.sample_count} t={s.elapsed_s:.0f}s rss={s.rss_mb:.1f}MB "
              f"rate={rate}msg/s drops={s.drops if s.drops is not None else 'n/a'}", file=sys.stderr, flush=True)
    elif event.message:
        print(f"k2 soak: {event.kind}: {event.message}", file=sys.stderr, flush=True)


def _summary(record: RunRecord, evaluation: Evaluation, directory: Path) -> dict[str, Any]:
    from k2cli.soak.profile import CHART_SUFFIX, PROFILE_SUFFIX, REPORT_SUFFIX, path_for

    return {
        "exchange": record.exchange,
        "verdict": evaluation.verdict.value,
        "exit_code": evaluation.exit_code,
        "status": record.status,
        "partial": record.partial,
        "end_reason": record.end_reason,
        "criteria": [{"name": c.name, "status": c.status.value, "measured": c.measured, "limit": c.limit,
                      "detail": c.detail} for c in evaluation.criteria],
        "figures": evaluation.figures,
        "files": {name: str(path_for(directory, record.exchange, suffix))
                  for name, suffix in (("profile", PROFILE_SUFFIX), ("report", REPORT_SUFFIX),
                                       ("chart", CHART_SUFFIX))},
    }


@app.command("report")
def report(
    directory: Path = typer.Argument(None, metavar="[DIR]", help="A soak output directory to render again."),
    exchange: str = typer.Option(None, "--exchange", "-e",
                                 help="Which exchange's run (needed only when DIR holds several; "
                                 f"with --prometheus: {registry.names_text(mark_default=True)})."),
    prometheus: str = typer.Option(None, "--prometheus", metavar="URL",
                                   help="Build the seeds' 7-day production validation report from this Prometheus."),
    days: float = typer.Option(7.0, "--days", min=0.0001, help="Look-back window for --prometheus (default 7)."),
    output: Path = typer.Option(None, "--output", metavar="FILE", help="Also write the report to FILE."),
    fmt: Format = format_option(LISTING, "rich (default), json, or markdown (--prometheus)."),
) -> None:
    """Re-render the report and chart of a soak directory from its files, or (--prometheus URL --days 7)
    build the 7-day production validation report from Prometheus. Exit status is the verdict."""
    if (directory is None) == (prometheus is None):
        raise usage_error("give either a soak directory or --prometheus URL")
    if prometheus is not None:
        _weekly(prometheus, exchange or registry.default().name, days, output, fmt)
        return
    require_format(fmt, RICH_JSON, "(markdown goes with --prometheus)")
    from k2cli.soak.report import rerender

    record, evaluation, text = rerender(directory, exchange)
    if output is not None:
        output.write_text(redact(text))
    if fmt == "json":
        print_json(_summary(record, evaluation, directory))
    else:
        from rich.console import Console
        from rich.markup import escape

        console = Console() if sys.stdout.isatty() else Console(width=200)
        console.print(escape(text), highlight=False)
        color = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}.get(evaluation.verdict.value, "magenta")
        console.print(f"[bold {color}]{evaluation.verdict.value}[/] (exit {evaluation.exit_code}); chart: "
                      f"{escape(str(directory / (record.exchange + '_soak_chart.html')))}")
    raise typer.Exit(evaluation.exit_code)


def _weekly(url: str, exchange: str, days: float, output: Path | None, fmt: str) -> None:
    if exchange not in EXCHANGES:
        raise usage_error(f"--exchange must be {registry.names_text()}, got {exchange!r}")
    if not url.startswith(("http://", "https://")):
        raise usage_error(f"--prometheus {url!r} is not an http:// or https:// URL")
    from k2cli.settings import load_settings
    from k2cli.soak.weekly import build_weekly, render_markdown

    weekly = build_weekly(url, exchange, days, load_settings())
    text = render_markdown(weekly)
    if output is not None:
        output.write_text(redact(text))
    if fmt == "json":
        print_json(weekly.to_dict())
    elif fmt == "markdown":
        sys.stdout.write(text)
    else:
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(text))
    raise typer.Exit(weekly.exit_code)

"""`k2 validate`: run the operators' checklists as executable steps and report pass/fail.

Exit codes: 0 all pass, 1 warnings only, 2 any failure, 3 could not run.
"""

from __future__ import annotations

import enum
import sys
import time
from pathlib import Path
from typing import Any

import typer

from k2cli.cli.options import LISTING, REPORT, Format, format_option, usage_error
from k2cli.exchanges import registry

app = typer.Typer(
    help="Run the operators' validation checklists with pass/fail reports.\n\n"
    "Each checklist measures the pipeline through real connections, compares against thresholds "
    "(k2.toml [thresholds], defaulting to the seeds' numbers) and exits 0 all pass, 1 warnings only, "
    "2 any failure, 3 could not run.",
    no_args_is_help=True,
)


# Exchanges k2 streams from: the registered ones
Exchange = enum.StrEnum("Exchange", {name: name for name in registry.names()})  # type: ignore[misc]  # members: the registry


STYLES = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim", "MANUAL": "cyan",
          "ERROR": "bold magenta"}
ICONS = {"PASS": "✔", "WARN": "!", "FAIL": "✘", "SKIP": "-", "MANUAL": "?", "ERROR": "⚠"}

FORMAT = format_option(REPORT, "rich (live progress and a table, default), json, junit or markdown.")
OUTPUT = typer.Option(None, "--output", "-o", metavar="FILE",
                      help="Write the report to FILE (the terminal still shows the rich summary).")
LIST_FORMAT = format_option(LISTING, "rich (default), json or markdown.")
RETRY = typer.Option(0.0, "--retry-timeout", metavar="S", min=0.0,
                     help="Re-run failing steps until they pass or S seconds have gone by.")
RETRY_INTERVAL = typer.Option(2.0, "--retry-interval", metavar="S", min=0.1,
                              help="Seconds between retry rounds (with --retry-timeout).")
EXCHANGE = typer.Option(Exchange(registry.default().name), "--exchange", "-e", case_sensitive=False,
                        help="Exchange to validate.")
STEPS = typer.Option(None, "--step", metavar="ID",
                     help="Run only this step (and the steps it depends on); repeatable or comma-separated.")
URL = typer.Option(None, "--url", metavar="URL",
                   help="WebSocket URL to stream from instead of the exchange's (e.g. a `k2 simulate` server).")


# ---------------------------------------------------------------- running and rendering


def _console(stderr: bool = False, file: Any = None) -> Any:
    from rich.console import Console

    if file is not None:
        return Console(file=file, width=120, no_color=True, highlight=False)
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # logs and CI: wide enough that the table does not wrap every cell
        console = Console(stderr=stderr, highlight=False, width=160)
    return console


class LiveView:
    """Progress while a checklist runs: a live table on a terminal, one line per finished step otherwise."""

    def __init__(self, console: Any, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.rows: dict[str, list[str]] = {}
        self.current: str | None = None
        self.message = ""
        self.started = time.monotonic()
        self.live: Any = None
        self.title = ""

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self.title, title_justify="left", expand=False, show_edge=False)
        for column in ("", "step", "result", "time"):
            table.add_column(column, no_wrap=column != "result")
        for step_id, (status, summary, took) in self.rows.items():
            if step_id == self.current and status == "RUN":
                table.add_row("[bold blue]…[/]", step_id, f"[blue]{self.message or 'running'}[/]",
                              f"{time.monotonic() - self.step_started:.1f}s")
            else:
                style = STYLES.get(status, "")
                table.add_row(f"[{style}]{ICONS.get(status, ' ')} {status}[/]", step_id, summary, took)
        return table

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        if event.kind == "checklist_started":
            self.title = f"k2 validate {event.checklist}"
            if self.console.is_terminal:
                from rich.live import Live

                self.live = Live(self._table(), console=self.console, refresh_per_second=8, transient=True)
                self.live.start()
            else:
                self.console.print(f"k2 validate {event.checklist}: {event.total} steps")
        elif event.kind == "round_started":
            if self.live is None:
                self.console.print(f"retry round {event.round}: {event.message}")
        elif event.kind == "step_started":
            self.current, self.message, self.step_started = event.step_id, "", time.monotonic()
            self.rows[event.step_id] = ["RUN", "", ""]
        elif event.kind == "step_progress":
            self.message = event.message
        elif event.kind == "step_finished":
            r = event.result
            self.rows[event.step_id] = [r.status.value, r.summary, f"{r.duration:.1f}s"]
            if self.live is None:
                style = STYLES.get(r.status.value, "")
                self.console.print(f"[{style}]{r.status.value:<6}[/] [{event.index}/{event.total}] "
                                   f"{event.step_id}: {r.summary}", markup=True, soft_wrap=True)
        elif event.kind == "checklist_finished" and self.live is not None:
            self.live.stop()
            self.live = None
        if self.live is not None:
            self.live.update(self._table())


def render_rich(report: Any, console: Any) -> None:
    """The end-of-run table and a tree of everything that needs attention."""
    from rich.table import Table
    from rich.tree import Tree

    verdict = report.verdict.value
    table = Table(title=f"k2 validate {report.checklist.name} — {report.checklist.title}", title_justify="left")
    for column in ("status", "step", "measured", "threshold", "result", "time"):
        table.add_column(column, overflow="fold")
    for outcome in report.outcomes:
        r = outcome.result
        measured = "" if r.measured is None else f"{r.measured} {r.unit}".rstrip()
        tries = f" ×{r.attempts}" if r.attempts > 1 else ""
        table.add_row(f"[{STYLES[r.status.value]}]{ICONS[r.status.value]} {r.status.value}[/]", outcome.step.id,
                      measured, r.threshold or "", r.summary, f"{r.duration:.1f}s{tries}")
    console.print(table)
    attention = [o for o in report.outcomes if o.result.status.value not in ("PASS", "SKIP")]
    if attention:
        tree = Tree("[bold]needs attention[/]")
        for outcome in attention:
            r = outcome.result
            branch = tree.add(f"[{STYLES[r.status.value]}]{r.status.value}[/] [bold]{outcome.step.id}[/] "
                              f"{outcome.step.title}: {r.summary}")
            manual = r.manual or outcome.step.manual
            if r.status.value == "MANUAL" and manual:
                branch.add(f"why manual: {manual.reason}")
                branch.add(f"a person must check: {manual.check}")
            for line in r.evidence[:12]:
                branch.add(line, style="dim")
            if len(r.evidence) > 12:
                branch.add(f"… {len(r.evidence) - 12} more lines in --format json", style="dim")
        console.print(tree)
    counts = ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
    console.print(f"[{STYLES[verdict]}]{verdict}[/] k2 validate {report.checklist.name}: {counts} "
                  f"in {report.duration:.1f}s" + (f" ({report.rounds} rounds)" if report.rounds > 1 else "")
                  + f"; exit {report.exit_code}")


def _text(report: Any, fmt: Format) -> str:
    if fmt is Format.json:
        from k2cli.checks import report_json

        return report_json.render(report)
    if fmt is Format.junit:
        from k2cli.checks import report_junit

        return report_junit.render(report)
    from k2cli.checks import report_markdown

    return report_markdown.render(report)


def _write(path: str, text: str) -> None:
    from k2cli.errors import ConfigError

    try:
        target = Path(path)
        if target.parent != Path(""):
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--output {path}: cannot write: {exc.strerror}", setting="--output") from None


def run(name: str, fmt: Format, output: str | None, retry_timeout: float, retry_interval: float,
        steps: list[str] | None = None, **option_values: Any) -> None:
    """Build a checklist, run it with a live view, report in the chosen format, exit with its code."""
    from k2cli.checks import checklists, thresholds
    from k2cli.checks.context import Context, Options
    from k2cli.checks.runner import run_checklist
    from k2cli.errors import K2Error
    from k2cli.settings import load_settings

    try:
        settings = load_settings()
        thresholds.check_overrides(settings.thresholds)
        options = Options(**option_values)
        checklist = checklists.build(name, options)
        if steps:
            checklist = checklist.subset([s.strip() for item in steps for s in item.split(",") if s.strip()])
    except K2Error as exc:  # the checklist could not even start
        typer.echo(f"k2: error: {exc}", err=True)
        raise typer.Exit(3) from None
    except KeyError as exc:
        raise usage_error(f"--step: {exc.args[0]} (`k2 validate list` shows the step ids)") from None

    to_stdout = fmt is not Format.rich and output is None
    console = _console(stderr=to_stdout)
    view = LiveView(console, enabled=not to_stdout or console.is_terminal)
    report = run_checklist(checklist, Context(settings, options), retry_timeout=retry_timeout,
                           retry_interval=retry_interval, emit=view)
    if fmt is Format.rich:
        render_rich(report, console)
        if output:
            from k2cli.redaction import redacting

            with open(output, "w", encoding="utf-8") as fh:
                render_rich(report, _console(file=redacting(fh)))
    elif output:
        _write(output, _text(report, fmt))
        render_rich(report, console)
        console.print(f"report written to {output} ({fmt.value})")
    else:
        sys.stdout.write(_text(report, fmt))
        sys.stdout.flush()
    raise typer.Exit(report.exit_code)


# ---------------------------------------------------------------- checklist commands


@app.command("prereqs")
def prereqs(fmt: Format = FORMAT, output: str = OUTPUT, retry_timeout: float = RETRY,
            retry_interval: float = RETRY_INTERVAL, step: list[str] = STEPS) -> None:
    """Every service healthy: broker and topics, registry and subjects, catalog and table, warehouse, Prometheus."""
    run("prereqs", fmt, output, retry_timeout, retry_interval, step)


@app.command("e2e")
def e2e(fmt: Format = FORMAT, output: str = OUTPUT, retry_timeout: float = RETRY,
        retry_interval: float = RETRY_INTERVAL, exchange: Exchange = EXCHANGE, url: str = URL,
        step: list[str] = STEPS) -> None:
    """Consumer E2E steps 1-6: baseline, a consumer run over a known number of messages, snapshot and record
    deltas, the query check, Prometheus performance, and the DLQ check with an injected poison record.

    When the topic has too few pending messages, they are streamed from a local simulator (or --url)."""
    run("e2e", fmt, output, retry_timeout, retry_interval, step, exchange=exchange.value, url=url)


@app.command("streaming")
def streaming(fmt: Format = FORMAT, output: str = OUTPUT, retry_timeout: float = RETRY,
              retry_interval: float = RETRY_INTERVAL, exchange: Exchange = EXCHANGE, url: str = URL,
              step: list[str] = STEPS) -> None:
    """Connection time, time to first trade, 10 valid trades, 100% v2 compliance, message rate and latency,
    against the public exchange or --url (a simulator)."""
    run("streaming", fmt, output, retry_timeout, retry_interval, step, exchange=exchange.value, url=url)


@app.command("resilience")
def resilience(fmt: Format = FORMAT, output: str = OUTPUT, retry_timeout: float = RETRY,
               retry_interval: float = RETRY_INTERVAL, exchange: Exchange = EXCHANGE,
               step: list[str] = STEPS) -> None:
    """Phase 5 P0/P1: TLS, rotation without loss, heartbeat and pong-timeout reconnect, bounded serializer
    cache, memory metrics, alert rules, idle-timeout reconnect (using the simulator's faults)."""
    run("resilience", fmt, output, retry_timeout, retry_interval, step, exchange=exchange.value)


def _rehearse(minutes: float, keep: bool, exchange: str) -> Any:
    """Start the rehearsal pipeline and let it run its window; its K2_* settings go into this process's env."""
    import os
    import tempfile

    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from k2cli.checks.rehearsal import Rehearsal
    from k2cli.errors import K2Error
    from k2cli.settings import load_settings

    console = _console(stderr=True)
    try:
        rehearsal = Rehearsal(load_settings(), minutes, Path(tempfile.mkdtemp(prefix="k2-rehearsal-")), keep=keep,
                              bg_exchange=exchange)
    except K2Error as exc:
        typer.echo(f"k2: error: {exc}", err=True)
        raise typer.Exit(3) from None
    n, t = rehearsal.names, rehearsal.timing
    simulated = " and ".join(registry.names())
    console.print(f"rehearsal: simulated {simulated} over wss:// into {', '.join(n.topics)} -> {n.table} "
                  f"(group {n.group}); {minutes:g} min window, rotations every {t.rotation_interval:g} s, pings "
                  f"every {t.ping_interval:g} s; logs in {rehearsal.workdir}", soft_wrap=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("starting simulators, streams and consumer", total=None)
        rehearsal.progress = lambda message, done, total: bar.update(task, description=message, completed=done,
                                                                     total=total)
        try:
            os.environ.update(rehearsal.start())
            rehearsal.run_window()
        except K2Error as exc:
            _end_rehearsal(rehearsal, console)
            typer.echo(f"k2: error: rehearsal: {exc}", err=True)
            raise typer.Exit(3) from None
        except KeyboardInterrupt:
            _end_rehearsal(rehearsal, console)
            raise typer.Exit(130) from None
    return rehearsal


def _end_rehearsal(rehearsal: Any, console: Any, exit_code: int = 3) -> None:
    import shutil

    codes = rehearsal.stop()
    stopped = ", ".join(f"{name} exit {code}" for name, code in codes.items()) or "nothing had started"
    if rehearsal.keep:
        stopped += f"; kept {', '.join(rehearsal.names.topics)}, {rehearsal.names.table} and {rehearsal.workdir}"
    elif exit_code == 0 and not any(codes.values()):
        shutil.rmtree(rehearsal.workdir, ignore_errors=True)
    else:
        stopped += f"; logs kept in {rehearsal.workdir}"
    console.print(f"rehearsal stopped: {stopped}", soft_wrap=True)


@app.command("deploy")
def deploy(pre: bool = typer.Option(False, "--pre", help="The pre-deployment checklist."),
           post: bool = typer.Option(False, "--post", help="The post-deployment checklist."),
           fmt: Format = FORMAT, output: str = OUTPUT, retry_timeout: float = RETRY,
           retry_interval: float = RETRY_INTERVAL, exchange: Exchange = EXCHANGE,
           step: list[str] = STEPS,
           rehearse: float = typer.Option(
               0.0, "--rehearse", metavar="MINUTES", min=0.0,
               help="With --post: first run a simulator-fed pipeline (every registered exchange over wss://, "
                    "the --exchange collector deployed blue-green, streams and consumer on the scraped ports, into "
                    "topics, a table, a group and a DLQ of its own) for MINUTES, with rotations and pings scaled to "
                    "that window and the 7-day look-back shrunk to it; then check it and stop it. A dress "
                    "rehearsal on the local stack."),
           keep_rehearsal: bool = typer.Option(False, "--keep-rehearsal",
                                               help="Keep the rehearsal's topics and table afterwards.")) -> None:
    """Pre-deployment (--pre) or post-deployment (--post) checklist: automatable items measured, the rest
    MANUAL with the reason and what a person must check."""
    if pre == post:
        raise usage_error("choose exactly one of --pre or --post")
    if rehearse and pre:
        raise usage_error("--rehearse goes with --post (it rehearses a running deployment)")
    if not rehearse:
        run("deploy", fmt, output, retry_timeout, retry_interval, step, phase="pre" if pre else "post",
            exchange=exchange.value)
        return
    rehearsal = _rehearse(rehearse, keep_rehearsal, exchange.value)
    code = 3
    try:
        run("deploy", fmt, output, retry_timeout, retry_interval, step, phase="post", exchange=exchange.value,
            rehearsal_minutes=rehearse)
    except typer.Exit as done:
        code = done.exit_code
        raise
    finally:
        _end_rehearsal(rehearsal, _console(stderr=True), code)


@app.command("tech-debt")
def tech_debt(fmt: Format = FORMAT, output: str = OUTPUT, retry_timeout: float = RETRY,
              retry_interval: float = RETRY_INTERVAL, step: list[str] = STEPS) -> None:
    """Technical debt resolution checklist: automatable items measured, the rest MANUAL."""
    run("tech-debt", fmt, output, retry_timeout, retry_interval, step)


# ---------------------------------------------------------------- list and coverage


def _catalogue() -> dict[str, Any]:
    from k2cli.checks import checklists, thresholds
    from k2cli.checks.context import Context
    from k2cli.settings import load_settings

    settings = load_settings()
    ctx = Context(settings)
    out = []
    for checklist in checklists.every_checklist():
        steps = []
        for step in checklist.steps:
            steps.append({
                "id": step.id, "title": step.title, "objective": step.objective, "kind": step.kind,
                "depends_on": list(step.depends_on),
                "thresholds": {name: ctx.describe(name) if thresholds.get(name).op else ctx.threshold(name)
                               for name in step.thresholds},
                "manual": {"reason": step.manual.reason, "check": step.manual.check} if step.manual else None,
            })
        out.append({"name": checklist.name, "title": checklist.title, "description": checklist.description,
                    "source": checklist.source, "steps": steps})
    limits = [{"name": t.name, "op": t.op, "value": ctx.threshold(t.name), "default": t.default, "unit": t.unit,
               "source": t.source} for t in thresholds.THRESHOLDS.values()]
    return {"checklists": out, "thresholds": limits}


@app.command("list")
def list_checklists(fmt: Format = LIST_FORMAT) -> None:
    """Show every checklist, its steps (automatic or MANUAL) and every threshold with the value in force."""
    data = _catalogue()
    if fmt is Format.json:
        from k2cli.cli._output import print_json

        print_json(data)
        return
    if fmt is Format.markdown:
        lines = []
        for cl in data["checklists"]:
            lines += [f"## {cl['name']}: {cl['title']}", "", cl["description"], "", "| step | kind | title |",
                      "|---|---|---|"]
            lines += [f"| `{s['id']}` | {s['kind']} | {s['title']} |" for s in cl["steps"]]
            lines.append("")
        sys.stdout.write("\n".join(lines))
        return
    from rich.table import Table
    from rich.tree import Tree

    console = _console()
    for cl in data["checklists"]:
        tree = Tree(f"[bold]{cl['name']}[/]: {cl['title']} [dim]({len(cl['steps'])} steps)[/]")
        for s in cl["steps"]:
            kind = "[cyan]MANUAL[/]" if s["kind"] == "manual" else "auto"
            limits = ", ".join(f"{k} {v}" for k, v in s["thresholds"].items())
            tree.add(f"{s['id']} [dim]{kind}[/] {s['title']}" + (f" [dim]({limits})[/]" if limits else ""))
        console.print(tree)
    table = Table(title="thresholds (k2.toml [thresholds] overrides)", title_justify="left")
    for column in ("name", "limit", "default", "source"):
        table.add_column(column, overflow="fold")
    for t in data["thresholds"]:
        limit = f"{t['op']} {t['value']:g} {t['unit']}".strip() if t["op"] else f"{t['value']:g} {t['unit']}"
        table.add_row(t["name"], limit, f"{t['default']:g}", t["source"])
    console.print(table)


@app.command("coverage")
def coverage(fmt: Format = LIST_FORMAT) -> None:
    """Map every checklist item of the operators' seed documents to the step that checks it (or MANUAL)."""
    from k2cli.checks import coverage as cov

    if fmt is Format.markdown:
        sys.stdout.write(cov.markdown())
        return
    rows = cov.rows()
    if fmt is Format.json:
        from k2cli.cli._output import print_json

        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="seed checklist items → k2 validate steps", title_justify="left")
    for column in ("seed", "section", "item", "steps", "kind"):
        table.add_column(column, overflow="fold")
    for row in rows:
        steps = row["steps"]
        assert isinstance(steps, list)
        table.add_row(str(row["seed"]), str(row["section"]), str(row["item"]), "\n".join(steps), str(row["kind"]))
    _console().print(table)

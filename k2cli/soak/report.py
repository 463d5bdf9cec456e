"""The soak's text report and the files rendered from a run (report, chart page, SVG)."""

from __future__ import annotations

import datetime as _dt
import statistics
from pathlib import Path

from k2cli.redaction import redact
from k2cli.soak import chart
from k2cli.soak.criteria import Evaluation, describe_exit, evaluate
from k2cli.soak.profile import (
    CHART_SUFFIX,
    CONSUMER_LOG_SUFFIX,
    MB,
    PROFILE_SUFFIX,
    REPORT_SUFFIX,
    RUN_SUFFIX,
    STREAM_LOG_SUFFIX,
    SVG_SUFFIX,
    RunRecord,
    Sample,
    load,
    path_for,
)


def _utc(ts: float | None) -> str:
    if not ts:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"min {min(values):,.1f}  mean {statistics.fmean(values):,.1f}  max {max(values):,.1f}  "
            f"last {values[-1]:,.1f}")


def render_text(record: RunRecord, samples: list[Sample], ev: Evaluation) -> str:
    """The human-readable report of a run."""
    lines = [*_heading(record, samples, ev), *_criteria(ev), *_stream(record, samples, ev)]
    if record.consumer_command:
        lines += _consumer(samples, ev)
    if record.log_tail:
        lines += ["", "Last log lines of the process that ended the run", "-" * 48]
        lines += [f"  {line}" for line in record.log_tail]
    lines += _files(record)
    lines.append("")
    lines.append("Thresholds: " + ", ".join(f"{k}={v:g}" for k, v in sorted(record.thresholds.items())))
    lines.append(f"Rendered {_utc(_dt.datetime.now(_dt.UTC).timestamp())} by k2 {record.k2_version}")
    return "\n".join(lines) + "\n"


def _heading(record: RunRecord, samples: list[Sample], ev: Evaluation) -> list[str]:
    """Title, verdict and the run's facts: status, times, source, commands, sampling."""
    title = f"K2 SOAK TEST REPORT: {record.exchange}"
    if ev.partial:
        title += f"  [PARTIAL: {record.status.replace('_', ' ')}]"
    lines = [title, "=" * len(title), ""]
    lines.append(f"Verdict:   {ev.verdict.value} (exit {ev.exit_code})")
    ran_s = samples[-1].elapsed_s if samples else 0.0
    lines.append(f"Status:    {record.status.replace('_', ' ')}; ran {ran_s / 3600:.3f} h of "
                 f"{record.planned_duration_s / 3600:.3f} h planned")
    if record.end_reason:
        lines.append(f"Ended:     {record.end_reason}")
    lines.append(f"Started:   {_utc(record.started_at)}")
    lines.append(f"Finished:  {_utc(record.ended_at)}")
    lines.append(f"Source:    {record.url}")
    lines.append(f"Stream:    {' '.join(record.stream_command)}  (pid {record.stream_pid}, "
                 f"{describe_exit(record.stream_exit)})")
    if record.consumer_command:
        lines.append(f"Consumer:  {' '.join(record.consumer_command)}  (pid {record.consumer_pid}, "
                     f"{describe_exit(record.consumer_exit)})")
    lines.append(f"Samples:   {len(samples)} every {record.sample_interval_s:g} s; the first "
                 f"{record.warmup_s:g} s are warm-up, left out of the growth, rate and leak figures")
    lines.append("Units:     1 MB = 2^20 bytes (as psutil and the leak score count them)")
    return lines


def _criteria(ev: Evaluation) -> list[str]:
    """One line per criterion (and its detail under it)."""
    lines = ["", "Criteria", "--------"]
    width = max((len(c.name) for c in ev.criteria), default=10)
    for c in ev.criteria:
        lines.append(f"  {c.status.value:<5}  {c.name:<{width}}  {c.measured}   (limit {c.limit})")
        if c.detail:
            lines.append(f"         {'':<{width}}  {c.detail}")
    return lines


def _stream(record: RunRecord, samples: list[Sample], ev: Evaluation) -> list[str]:
    """The stream process: memory, leak score, messages, reconnects and the counters."""
    lines = ["", "Stream process", "--------------"]
    lines.append(f"  RSS MB:            {_stats([s.rss_bytes / MB for s in samples])}")
    lines.append(f"  VMS MB:            {_stats([s.vms_bytes / MB for s in samples])}")
    f = ev.figures
    lines.append(f"  Growth after warm-up: {_num(f.get('stream_growth_mb'))} MB; leak score "
                 f"{_num(f.get('stream_leak_score'), 2)}")
    last = samples[-1] if samples else None
    reported = next((s.reported_leak_score for s in reversed(samples) if s.reported_leak_score is not None), None)
    if reported is not None:
        lines.append(f"  Leak score the stream reports about itself (its own window): {reported:.2f}")
    if last is not None:
        lines.append(f"  Messages:          {_num(last.messages, 0)} since the start; average "
                     f"{_num(f.get('avg_rate_msg_s'))} msg/s after warm-up; lowest interval "
                     f"{_num(f.get('min_rate_msg_s'))} msg/s")
        reasons = ", ".join(f"{k}={v:g}" for k, v in sorted(last.reconnects.items())) or "none"
        lines.append(f"  Reconnects:        {reasons}")
        lines.append(f"  Drops (not rotations): {_num(last.drops, 0)}; rotations {_num(last.rotations, 0)}; "
                     f"pings {_num(last.pings, 0)}; pong timeouts {_num(last.pong_timeouts, 0)}; integrity errors "
                     f"{_num(last.integrity_errors, 0)}")
    lines.append(f"  Metric scrapes that failed: {record.scrape_failures}")
    return lines


def _consumer(samples: list[Sample], ev: Evaluation) -> list[str]:
    """The consumer process: memory, leak score and its newest counters."""
    f = ev.figures
    cs = [s.consumer for s in samples if s.consumer is not None]
    lines = ["", "Consumer process", "----------------"]
    lines.append(f"  RSS MB:            {_stats([c.rss_bytes / MB for c in cs])}")
    lines.append(f"  Growth after warm-up: {_num(f.get('consumer_growth_mb'))} MB; leak score "
                 f"{_num(f.get('consumer_leak_score'), 2)} (its steady state taken from "
                 f"{_num(f.get('consumer_warmup_s'), 0)} s: 30 s after its first commit, or the warm-up)")
    if cs:
        newest = cs[-1]
        lines.append(f"  Consumed {_num(newest.consumed, 0)}, written {_num(newest.written, 0)}, "
                     f"lag {_num(newest.lag, 0)}, dead-lettered {_num(newest.dlq_entries, 0)}, "
                     f"breaker state {_num(newest.breaker_state, 0)} "
                     "(0 closed, 1 half-open, 2 open)")
    return lines


def _files(record: RunRecord) -> list[str]:
    """The files a run leaves in its directory."""
    lines = ["", "Files", "-----"]
    for suffix, what in ((PROFILE_SUFFIX, "memory profile, one sample per interval (JSON array)"),
                         (RUN_SUFFIX, "run record: commands, thresholds, exit statuses"),
                         (CHART_SUFFIX, "chart of RSS and message rate (open in a browser)"),
                         (SVG_SUFFIX, "the same chart as SVG"),
                         (STREAM_LOG_SUFFIX, "stream output"),
                         (CONSUMER_LOG_SUFFIX, "consumer output")):
        if suffix == CONSUMER_LOG_SUFFIX and not record.consumer_command:
            continue
        lines.append(f"  {record.exchange}{suffix:<32} {what}")
    return lines


def write_outputs(directory: Path, record: RunRecord, samples: list[Sample]) -> tuple[Evaluation, str]:
    """Judge a run and write its report, chart page and SVG (secrets redacted); returns the evaluation and the
    report text."""
    ev = evaluate(record, samples)
    text = redact(render_text(record, samples, ev))
    directory = Path(directory)
    path_for(directory, record.exchange, REPORT_SUFFIX).write_text(text)
    path_for(directory, record.exchange, SVG_SUFFIX).write_text(redact(chart.render_svg(record, samples, ev)))
    path_for(directory, record.exchange, CHART_SUFFIX).write_text(redact(chart.render_html(record, samples, ev, text)))
    return ev, text


def rerender(directory: Path, exchange: str | None = None) -> tuple[RunRecord, Evaluation, str]:
    """`k2 soak report DIR`: read a run's files and write its report and chart again."""
    record, samples = load(directory, exchange)
    ev, text = write_outputs(directory, record, samples)
    return record, ev, text

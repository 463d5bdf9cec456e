"""The seeds' 7-day production validation report (seed 003, Step 09), built from Prometheus queries.

Every figure is one PromQL query over the window ending now; the stream of an exchange is selected by
joining on `instance` with `<exchange>_connection_status`, as the alert rules do. Per-day figures are
divided by the days the data actually covers, and a window the data does not fully cover is a WARN.
"""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from k2cli.soak.profile import MB
from k2cli.verdict import Status, Threshold, exit_code, worst

if TYPE_CHECKING:
    from k2cli.observe.prometheus_api import Prometheus

S003 = "Phase 5 Validation Guide"
# The 7-day report's limits; `k2 validate` lists them with its own and k2.toml [thresholds] overrides them.
THRESHOLDS = (
    Threshold("prod_window_days", 7, "", "days", f"{S003}: Step 09, 7-day production validation (look-back window)"),
    Threshold("prod_memory_max_mb", 250, "<=", "MB", f"{S003}: memory stable at 200-250MB"),
    Threshold("prod_memory_growth_max_mb", 50, "<", "MB", f"{S003}: memory growth <50MB over 24h"),
    Threshold("prod_rotations_per_day", 6, "==", "/day", f"{S003}: connection rotations 6 per day (every 4h)"),
    Threshold("prod_pings_per_day", 480, "==", "/day", f"{S003}: ping-pong heartbeat 480 pings per day"),
    Threshold("prod_rate_tolerance_pct", 20, "", "%", "run parameter: tolerance on per-day counts"),
    Threshold("prod_stream_rate_min_per_s", 10, ">", "msg/s", f"{S003}: message rate >10 msg/sec sustained"),
    Threshold("prod_uptime_min_pct", 99.9, ">=", "%", f"{S003}: uptime >99.9%"),
    Threshold("prod_unscheduled_reconnects_max", 0, "<=", "", f"{S003}: Day 5, zero unscheduled reconnections"),
    Threshold("prod_critical_alerts_max", 0, "<=", "", f"{S003}: zero critical alerts"),
)
_DEFAULTS = {t.name: t.default for t in THRESHOLDS}

ICONS = {Status.PASS: "✅", Status.WARN: "⚠️", Status.FAIL: "❌", Status.ERROR: "❔"}
COVERAGE_MIN = 0.95  # share of the window the data must cover for a full report


@dataclass
class Line:
    """One summary line of the report."""

    key: str
    status: Status
    text: str

    def to_dict(self) -> dict[str, str]:
        """As plain JSON values."""
        return {"key": self.key, "status": self.status.value, "text": self.text}


@dataclass
class Weekly:
    """The 7-day report's content."""

    exchange: str
    prometheus: str
    start: float
    end: float
    days: float
    coverage_days: float
    lines: list[Line] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Status:
        """The most severe line."""
        return worst(line.status for line in self.lines)

    @property
    def exit_code(self) -> int:
        """0 pass, 1 warn, 2 fail, 3 could not run."""
        return exit_code(self.verdict)

    def to_dict(self) -> dict[str, Any]:
        """As plain JSON values."""
        data = asdict(self)
        data["lines"] = [line.to_dict() for line in self.lines]
        data["verdict"] = self.verdict.value
        data["exit_code"] = self.exit_code
        return data


def _threshold(settings: Any, name: str) -> float:
    return settings.threshold(name, _DEFAULTS[name])


def span(seconds: float) -> str:
    """A duration as people say it: 7 days, 4 h, 2 min, 30 s (three significant digits)."""
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value = float(f"{seconds / size:.3g}")
            return f"{value:g} {unit}{'s' if unit == 'day' and value != 1 else ''}"
    return f"{float(f'{seconds:.3g}'):g} s"


def _per_day(total: float, days: float) -> float:
    return total / days if days > 0 else 0.0


def _within(value: float, expected: float, tolerance_pct: float) -> bool:
    return abs(value - expected) <= expected * tolerance_pct / 100


def build_weekly(url: str, exchange: str, days: float, settings: Any, now: float | None = None) -> Weekly:
    """Query Prometheus for the last `days` days of one exchange's stream and judge the seed's checklist."""
    from k2cli.observe.prometheus_api import Prometheus

    prom = Prometheus(url, timeout=30.0, setting="--prometheus")
    try:
        return _judge(prom, url, exchange, days, settings, now)
    finally:
        prom.close()


@dataclass
class _Window:
    """The window being judged and the PromQL pieces every figure's query uses."""

    prom: Prometheus
    exchange: str
    start: float
    end: float
    step: float  # seconds between the points of a range query (about 600 points per window)
    lookback: str  # the window as a PromQL range, e.g. 604800s
    conn: str  # <exchange>_connection_status, the series that marks the exchange's stream
    sel: str  # joins a per-instance expression onto the exchange's stream instances
    coverage_s: float = 0.0  # the part of the window the data covers


def _window(prom: Prometheus, exchange: str, days: float, now: float | None) -> _Window:
    end = time.time() if now is None else now
    window = days * 86400
    w = f"{max(1, int(window))}s"
    conn = f"{exchange}_connection_status"
    return _Window(prom, exchange, start=end - window, end=end, step=max(1.0, window / 600), lookback=w, conn=conn,
                   sel=f"and on (instance) max_over_time({conn}[{w}])")


def _judge(prom: Prometheus, url: str, exchange: str, days: float, settings: Any, now: float | None) -> Weekly:
    q = _window(prom, exchange, days, now)
    report = Weekly(exchange=exchange, prometheus=url, start=q.start, end=q.end, days=days, coverage_days=0.0)
    if not _coverage(q, report, url):
        return report
    for judge in (_memory, _leak, _rotations, _heartbeat, _uptime, _reconnects, _rate, _alerts):
        judge(q, report, settings)
    _collect_issues(report)
    return report


def _coverage(q: _Window, report: Weekly, url: str) -> bool:
    """How much of the window the data covers (a WARN below COVERAGE_MIN); False when there is none at all."""
    status_points = q.prom.series(f"max({q.conn})", q.start, q.end, q.step)
    if not status_points:
        report.lines.append(Line("data", Status.ERROR, f"No data: Prometheus has no `{q.conn}` series in the window "
                                 f"(is the {q.exchange} stream scraped by {url}?)"))
        report.issues.append(f"No {q.exchange} stream data in Prometheus for the window.")
        return False
    window = report.days * 86400
    q.coverage_s = min(window, status_points[-1][0] - status_points[0][0] + q.step)
    report.coverage_days = q.coverage_s / 86400
    cov_days = report.coverage_days
    if cov_days < report.days * COVERAGE_MIN:
        report.lines.append(Line("coverage", Status.WARN, f"Data coverage: {span(cov_days * 86400)} of {span(window)} "
                                 "(per-day figures use the covered time)"))
    return True


def _memory(q: _Window, report: Weekly, settings: Any) -> None:
    rss = q.prom.series(f"max(process_memory_rss_bytes and on (instance) {q.conn})", q.start, q.end, q.step)
    peak = q.prom.value(f"max(max_over_time(process_memory_rss_bytes[{q.lookback}]) {q.sel})", q.end)
    mem_max = _threshold(settings, "prod_memory_max_mb")
    growth_max = _threshold(settings, "prod_memory_growth_max_mb")
    if not rss or peak is None:
        report.lines.append(Line("memory", Status.ERROR, "Memory: no process_memory_rss_bytes from the stream"))
        return
    values = [v / MB for _, v in rss]
    edge = max(1, min(len(values) // 4, int(3600 / q.step)))  # an hour at each end (a quarter of short windows)
    growth = statistics.median(values[-edge:]) - statistics.median(values[:edge])
    report.figures.update(rss_min_mb=min(values), rss_peak_mb=peak / MB, rss_median_mb=statistics.median(values),
                          rss_growth_mb=growth)
    ok = peak / MB <= mem_max and growth < growth_max
    report.lines.append(Line("memory", Status.PASS if ok else Status.FAIL,
                             f"Memory stable: {min(values):.0f}-{peak / MB:.0f}MB (median "
                             f"{statistics.median(values):.0f}MB), {growth:+.1f}MB growth over "
                             f"{span(report.coverage_days * 86400)} "
                             f"(limits: peak <= {mem_max:g}MB, growth < {growth_max:g}MB)"))


def _leak(q: _Window, report: Weekly, settings: Any) -> None:
    leak = q.prom.value(f"max(max_over_time(memory_leak_detection_score[{q.lookback}]) {q.sel})", q.end)
    if leak is None:
        return
    from k2cli.soak.criteria import thresholds_from

    lmax = thresholds_from(settings.thresholds)["soak_leak_score_max"]
    report.figures["leak_score_max"] = leak
    report.lines.append(Line("leak", Status.PASS if leak < lmax else Status.FAIL,
                             f"Memory leak score: highest {leak:.2f} (< {lmax:g})"))


def _schedule(settings: Any, name: str, interval_s: float, what: str) -> str:
    """What the running configuration says beside the seed's per-day figure, when the two differ."""
    configured = 86400 / interval_s
    if _within(configured, _threshold(settings, name), 0.5):
        return ""
    return (f"; the configured {what} (every {span(interval_s)}) gives {configured:g} per day: set [thresholds] "
            f"{name} if that schedule is deliberate")


def _rotations(q: _Window, report: Weekly, settings: Any) -> None:
    """Rotations per day against the seed's figure (prod_rotations_per_day): a deviation FAILs (seed 003, Phase 5
    success criteria: "Connection rotations: 6 per day (every 4h)"; another schedule is declared by overriding it)."""
    tol = _threshold(settings, "prod_rate_tolerance_pct")
    expected = _threshold(settings, "prod_rotations_per_day")
    rotations = q.prom.value(f"sum(increase({q.exchange}_connection_rotations_total[{q.lookback}]))", q.end) or 0.0
    rot_day = _per_day(rotations, report.coverage_days)
    report.figures.update(rotations=rotations, rotations_per_day=rot_day)
    report.lines.append(Line("rotations", Status.PASS if _within(rot_day, expected, tol) else Status.FAIL,
                             f"Connection rotations: {rotations:.0f} total ({rot_day:.1f} per day; expected "
                             f"{expected:g} per day ±{tol:g}%)"
                             + _schedule(settings, "prod_rotations_per_day", settings.rotation_interval, "rotation")))


def _heartbeat(q: _Window, report: Weekly, settings: Any) -> None:
    """Pings per day against the seed's figure (prod_pings_per_day) and no pong timeout: else FAIL (seed 003:
    "Ping-pong heartbeat: 480 pings per day (every 3min)", "pong received")."""
    tol = _threshold(settings, "prod_rate_tolerance_pct")
    expected = _threshold(settings, "prod_pings_per_day")
    pings = q.prom.value(f"sum(increase({q.exchange}_pings_sent_total[{q.lookback}]))", q.end) or 0.0
    timeouts = q.prom.value(f"sum(increase({q.exchange}_pong_timeouts_total[{q.lookback}]))", q.end) or 0.0
    ping_day = _per_day(pings, report.coverage_days)
    report.figures.update(pings=pings, pings_per_day=ping_day, pong_timeouts=timeouts)
    ok = _within(ping_day, expected, tol) and round(timeouts) == 0
    report.lines.append(Line("heartbeat", Status.PASS if ok else Status.FAIL,
                             f"Ping-pong heartbeat: {pings:.0f} pings ({ping_day:.0f} per day; expected "
                             f"{expected:g} ±{tol:g}%), {timeouts:.0f} pong timeouts"
                             + _schedule(settings, "prod_pings_per_day", settings.ping_interval, "ping interval")))


def _uptime(q: _Window, report: Weekly, settings: Any) -> None:
    """Share of scrapes that answered x share of those with a live connection."""
    scraped = q.prom.value(f"min(avg_over_time(up[{q.lookback}]) {q.sel})", q.end)
    connected = q.prom.value(f"min(avg_over_time({q.conn}[{q.lookback}]))", q.end)
    up_min = _threshold(settings, "prod_uptime_min_pct")
    if scraped is None or connected is None:
        return
    uptime = 100 * scraped * connected
    report.figures["uptime_pct"] = uptime
    report.lines.append(Line("uptime", Status.PASS if uptime >= up_min else Status.FAIL,
                             f"Uptime: {uptime:.2f}% (target >= {up_min:g}%; process answered "
                             f"{100 * scraped:.2f}% of scrapes, connected {100 * connected:.2f}% of them)"))


def _reconnects(q: _Window, report: Weekly, settings: Any) -> None:
    rows = q.prom.query(f"sum by (reason) (increase({q.exchange}_reconnects_total[{q.lookback}]))", q.end)
    by_reason = {r.get("reason", "?"): v for r, v in rows if round(v) > 0}
    total = sum(by_reason.values())
    rmax = _threshold(settings, "prod_unscheduled_reconnects_max")
    report.figures["unscheduled_reconnects"] = by_reason
    detail = ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_reason.items())) or "none"
    report.lines.append(Line("reconnects", Status.PASS if round(total) <= rmax else Status.FAIL,
                             f"Unscheduled reconnections: {total:.0f} ({detail}; target <= {rmax:g})"))


def _rate(q: _Window, report: Weekly, settings: Any) -> None:
    received = q.prom.value(f"sum(increase({q.exchange}_messages_received_total[{q.lookback}]))", q.end)
    rate_min = _threshold(settings, "prod_stream_rate_min_per_s")
    if received is None:
        report.lines.append(Line("rate", Status.ERROR, f"Message rate: no {q.exchange}_messages_received_total"))
        return
    avg = received / q.coverage_s
    rate_series = q.prom.series(f"sum(rate({q.exchange}_messages_received_total[5m]))", q.start, q.end, q.step)
    lowest = min((v for _, v in rate_series), default=None)
    report.figures.update(messages=received, avg_rate_msg_s=avg, lowest_5m_rate_msg_s=lowest)
    low = f"; lowest 5-minute rate {lowest:.1f}" if lowest is not None else ""
    report.lines.append(Line("rate", Status.PASS if avg > rate_min else Status.FAIL,
                             f"Message rate: {avg:.1f} msg/sec average (>{rate_min:g} msg/sec target){low}"))


def _alerts(q: _Window, report: Weekly, settings: Any) -> None:
    fired = q.prom.query(f'max by (alertname, severity) (max_over_time(ALERTS{{alertstate="firing"}}[{q.lookback}]))',
                         q.end)
    critical = sorted({r.get("alertname", "?") for r, _ in fired if r.get("severity") == "critical"})
    amax = _threshold(settings, "prod_critical_alerts_max")
    report.figures["alerts_fired"] = sorted(f"{r.get('alertname')} ({r.get('severity', '-')})" for r, _ in fired)
    if critical:
        text = f"Alerts: {len(critical)} critical alert(s) fired: {', '.join(critical)}"
    else:
        text = "Alerts: Zero critical alerts triggered"
    report.lines.append(Line("alerts", Status.PASS if len(critical) <= amax else Status.FAIL, text))


def _collect_issues(report: Weekly) -> None:
    """Every line short of PASS, then the non-critical alerts that fired."""
    for line in report.lines:
        if line.status is not Status.PASS:
            report.issues.append(f"{line.status.value}: {line.text}")
    others = [a for a in report.figures["alerts_fired"] if "(critical)" not in a]
    if others:
        report.issues.append("Other alerts that fired: " + ", ".join(others))


def _day(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_markdown(report: Weekly) -> str:
    """The report in the seed's 7-Day Production Validation Report template."""
    ex = report.exchange.capitalize()
    whole_days = report.days >= 1 and report.days == int(report.days)
    title = f"{report.days:g}-Day" if whole_days else span(report.days * 86400)
    out = [f"# {title} Production Validation Report", "",
           f"**Date Range**: {_day(report.start)} to {_day(report.end)}",
           f"**Phase**: Phase 5 - {ex} Production Resilience",
           f"**Exchange**: {report.exchange} · **Prometheus**: {report.prometheus} · **Data coverage**: "
           f"{span(report.coverage_days * 86400)} of {span(report.days * 86400)}", "", "## Summary"]
    out += [f"- {ICONS[line.status]} {line.text}" for line in report.lines]
    out += ["", "## Metrics",
            "Grafana dashboard **k2 pipeline** (uid `k2-pipeline`, deploy/grafana/dashboards/k2.json) shows each of "
            "these over the same range; attach screenshots (MANUAL: a person takes them):",
            '- Memory usage trend: panel "Stream RSS" and "Memory leak score"',
            '- Connection lifetime: panel "Connection age" (resets at each rotation)',
            '- Message throughput graph: panel "Trades received/s"',
            '- Ping-pong latency distribution: panels "Heartbeat: seconds since last pong" and '
            '"Pings sent and pong timeouts per hour"',
            "", "## Issues"]
    out += [f"- {issue}" for issue in report.issues] or ["- None found in the metrics."]
    out += ["", "## Recommendation"]
    verdict = report.verdict
    if verdict is Status.PASS:
        out.append("✅ **APPROVED for long-term production use**")
    elif verdict is Status.WARN:
        out.append("⚠️ **APPROVAL NEEDS A PERSON**: every measured criterion holds, but see the warnings above")
    elif verdict is Status.ERROR:
        out.append("❔ **NOT JUDGED**: Prometheus lacks the data for some criteria")
    else:
        out.append("❌ **NOT APPROVED**: see the failed criteria above")
    out += ["", f"_Generated by `k2 soak report --prometheus {report.prometheus} --days {report.days:g} --exchange "
            f"{report.exchange}` (exit {report.exit_code})._", ""]
    return "\n".join(out)

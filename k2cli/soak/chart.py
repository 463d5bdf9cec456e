"""The soak chart: RSS and message rate over time as a hand-written SVG, and an HTML page around it."""

from __future__ import annotations

import datetime as _dt
import html
import math
from collections.abc import Callable, Sequence

from k2cli.soak.criteria import Evaluation, growth_limit_mb
from k2cli.soak.profile import MB, RunRecord, Sample
from k2cli.verdict import Status

WIDTH = 1000
LEFT, RIGHT = 78, 150  # plot margins: y-axis labels on the left, legend on the right
PLOT_W = WIDTH - LEFT - RIGHT
COLORS = {
    Status.PASS: "#1a7f37",
    Status.WARN: "#b35900",
    Status.FAIL: "#c62828",
    Status.ERROR: "#6e7781",
}
STREAM, CONSUMER, RATE, CRATE = "#1f6feb", "#8250df", "#1a7f37", "#bf8700"
LIMIT, DROP, ROTATION, GRID = "#c62828", "#c62828", "#8c959f", "#e6e8eb"
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
HALO = ' stroke="#ffffff" stroke-width="3" paint-order="stroke"'  # keeps labels legible over dense lines


def nice_step(span: float, target: int = 5) -> float:
    """A 1/2/5 x 10^n tick step giving about `target` ticks over span."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def _ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    step = nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9) * step
    out, v = [], first
    while v <= hi + step * 1e-6:
        out.append(round(v, 10))
        v += step
    return out


def _time_step(span_s: float) -> float:
    """A tick step in seconds that reads well: 10 s, 30 s, 1 min, 5 min, 15 min, 1 h, 2 h, 6 h, 1 d ..."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                 172800):
        if span_s / step <= 8:
            return float(step)
    return 86400.0 * math.ceil(span_s / 86400 / 8)


def fmt_elapsed(seconds: float) -> str:
    """Elapsed time for an axis label: 45s, 3m, 1h30m, 2d4h."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m}m" if r == 0 else f"{m}m{r}s"
    if s < 86400:
        h, r = divmod(s, 3600)
        return f"{h}h" if r == 0 else f"{h}h{r // 60:02d}m"
    d, r = divmod(s, 86400)
    return f"{d}d" if r == 0 else f"{d}d{r // 3600}h"


def _fmt_value(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10 or float(v).is_integer():
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    return f"{v:.2g}"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


class _Panel:
    """One plot area: maps (seconds, value) to SVG coordinates and draws into a list of elements."""

    def __init__(self, top: float, height: float, t_max: float, y_lo: float, y_hi: float) -> None:
        self.top, self.height = top, height
        self.t_max = t_max if t_max > 0 else 1.0
        self.y_lo, self.y_hi = y_lo, (y_hi if y_hi > y_lo else y_lo + 1.0)
        self.parts: list[str] = []
        self.overlay: list[str] = []  # labels, drawn after the data lines so no line covers them
        self._label_end: dict[str, float] = {}  # per marker colour: right edge of the last marker label

    def x(self, t: float) -> float:
        return LEFT + PLOT_W * (t / self.t_max)

    def y(self, v: float) -> float:
        return self.top + self.height * (1 - (v - self.y_lo) / (self.y_hi - self.y_lo))

    def frame(self, title: str, unit: str) -> None:
        p = self.parts
        for v in _ticks(self.y_lo, self.y_hi):
            yy = self.y(v)
            p.append(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + PLOT_W}" y2="{yy:.1f}" stroke="{GRID}"/>')
            p.append(f'<text x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end" font-size="12" fill="#57606a">'
                     f'{_esc(_fmt_value(v))}</text>')
        step = _time_step(self.t_max)
        v = 0.0
        while v <= self.t_max + 1e-6:
            xx = self.x(v)
            p.append(f'<line x1="{xx:.1f}" y1="{self.top}" x2="{xx:.1f}" y2="{self.top + self.height}" '
                     f'stroke="{GRID}"/>')
            p.append(f'<text x="{xx:.1f}" y="{self.top + self.height + 16}" text-anchor="middle" font-size="12" '
                     f'fill="#57606a">{fmt_elapsed(v)}</text>')
            v += step
        p.append(f'<rect x="{LEFT}" y="{self.top}" width="{PLOT_W}" height="{self.height}" fill="none" '
                 'stroke="#8c959f"/>')
        p.append(f'<text x="{LEFT}" y="{self.top - 10}" font-size="15" font-weight="bold" fill="#24292f">'
                 f'{_esc(title)}</text>')
        mid = self.top + self.height / 2
        p.append(f'<text x="18" y="{mid:.1f}" font-size="12" fill="#57606a" text-anchor="middle" '
                 f'transform="rotate(-90 18 {mid:.1f})">{_esc(unit)}</text>')

    def shade(self, t0: float, t1: float, label: str) -> None:
        if t1 <= t0:
            return
        x0, x1 = self.x(t0), self.x(min(t1, self.t_max))
        self.parts.append(f'<rect x="{x0:.1f}" y="{self.top}" width="{x1 - x0:.1f}" height="{self.height}" '
                          'fill="#f0f2f4"/>')
        if x1 - x0 >= 50:  # too narrow to carry its label without covering the axis
            self.parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{self.top + 14}" text-anchor="middle" '
                              f'font-size="11" fill="#8c959f">{_esc(label)}</text>')

    def hline(self, v: float, color: str, label: str, dash: str = "6 4") -> None:
        if not self.y_lo <= v <= self.y_hi:
            return
        yy = self.y(v)
        self.parts.append(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + PLOT_W}" y2="{yy:.1f}" stroke="{color}" '
                          f'stroke-width="1.5" stroke-dasharray="{dash}"/>')
        self.overlay.append(f'<text x="{LEFT + PLOT_W - 4}" y="{yy - 5:.1f}" text-anchor="end" font-size="12" '
                            f'fill="{color}"{HALO}>{_esc(label)}</text>')

    def line(self, points: Sequence[tuple[float, float | None]], color: str, width: float = 2.0) -> None:
        """A polyline that breaks where a value is missing; single isolated points become dots."""
        segments: list[list[tuple[float, float]]] = [[]]
        for t, v in points:
            if v is None or not math.isfinite(v):
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append((self.x(t), self.y(v)))
        for seg in segments:
            if len(seg) == 1:
                self.parts.append(f'<circle cx="{seg[0][0]:.1f}" cy="{seg[0][1]:.1f}" r="2.5" fill="{color}"/>')
            elif seg:
                if len(seg) > PLOT_W:  # more points than pixels: a thinner line keeps the band readable
                    width = min(width, 1.0)
                d = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
                self.parts.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="{width}" '
                                  'stroke-linejoin="round"/>')

    def marker(self, t: float, color: str, label: str, at_top: bool = False) -> None:
        """A dotted vertical line at an event, labelled at the bottom (or top) of the plot, inside it."""
        xx = self.x(t)
        self.parts.append(f'<line x1="{xx:.1f}" y1="{self.top}" x2="{xx:.1f}" y2="{self.top + self.height}" '
                          f'stroke="{color}" stroke-width="1.2" stroke-dasharray="2 3"/>')
        width = 6.5 * len(label)  # about 11 px sans-serif
        near_right = xx > LEFT + PLOT_W - width - 4
        anchor, tx, left = ("end", xx - 3, xx - 3 - width) if near_right else ("start", xx + 3, xx + 3)
        if left < self._label_end.get(color, -1e9) + 6:  # would touch the previous label: line only
            return
        self._label_end[color] = left + width
        ty = self.top + 26 if at_top else self.top + self.height - 6
        self.overlay.append(f'<text x="{tx:.1f}" y="{ty}" font-size="11" text-anchor="{anchor}" '
                            f'fill="{color}"{HALO}>{_esc(label)}</text>')


def _legend(parts: list[str], top: float, items: list[tuple[str, str, bool]]) -> None:
    x = LEFT + PLOT_W + 16
    for i, (color, label, dashed) in enumerate(items):
        y = top + 8 + i * 20
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{color}" stroke-width="2.5"{dash}/>')
        parts.append(f'<text x="{x + 28}" y="{y + 4}" font-size="12" fill="#24292f">{_esc(label)}</text>')


def _range(values: list[float], extra: Sequence[float] = (), floor_zero: bool = False) -> tuple[float, float]:
    vals = [v for v in list(values) + list(extra) if v is not None and math.isfinite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    pad = max((hi - lo) * 0.12, abs(hi) * 0.02, 1.0)
    lo = 0.0 if floor_zero or lo - pad < 0 else lo - pad
    return lo, hi + pad


def _events(samples: Sequence[Sample], value: Callable[[Sample], float | None]) -> list[tuple[float, float]]:
    """(elapsed, increase) wherever a cumulative counter went up between samples."""
    out, prev = [], None
    for s in samples:
        v = value(s)
        if v is None:
            continue
        if prev is not None and v > prev:
            out.append((s.elapsed_s, v - prev))
        prev = v
    return out


def render_svg(record: RunRecord, samples: Sequence[Sample], evaluation: Evaluation) -> str:
    """The chart as a standalone SVG document."""
    t_max = max([s.elapsed_s for s in samples] + [record.planned_duration_s if not record.partial else 0.0, 1.0])
    has_consumer = any(s.consumer is not None for s in samples)
    parts = _title(record, samples, evaluation)
    mem = _memory_panel(parts, record, samples, evaluation, t_max, has_consumer)
    rate = _rate_panel(parts, record, samples, mem.top + mem.height + 70, t_max, has_consumer)
    height = _footer(parts, record, COLORS[evaluation.verdict], rate.top + rate.height + 40)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" {FONT}>\n'
            f'<rect width="100%" height="100%" fill="#ffffff"/>\n' + "\n".join(parts) + "\n</svg>\n")


def _title(record: RunRecord, samples: Sequence[Sample], evaluation: Evaluation) -> list[str]:
    """The title, the verdict badge and the line saying when, how long and from where."""
    color = COLORS[evaluation.verdict]
    started = _dt.datetime.fromtimestamp(record.started_at or 0, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    state = "PARTIAL - " + record.status.replace("_", " ") if record.partial else "complete"
    sub = (f"{started} · ran {fmt_elapsed(samples[-1].elapsed_s) if samples else '0s'} of "
           f"{fmt_elapsed(record.planned_duration_s)} ({state}) · {len(samples)} samples every "
           f"{record.sample_interval_s:g}s · {record.url}")
    return [
        f'<text x="{LEFT}" y="30" font-size="20" font-weight="bold" fill="#24292f">'
        f'k2 soak: {_esc(record.exchange)}</text>',
        f'<rect x="{WIDTH - RIGHT - 60}" y="10" width="{RIGHT + 40}" height="30" rx="6" fill="{color}"/>',
        f'<text x="{WIDTH - RIGHT - 60 + (RIGHT + 40) / 2}" y="31" text-anchor="middle" font-size="16" '
        f'font-weight="bold" fill="#ffffff">{evaluation.verdict.value} (exit {evaluation.exit_code})</text>',
        f'<text x="{LEFT}" y="52" font-size="12" fill="#57606a">{_esc(sub)}</text>',
    ]


def _memory_panel(parts: list[str], record: RunRecord, samples: Sequence[Sample], evaluation: Evaluation,
                  t_max: float, has_consumer: bool) -> _Panel:
    """Draw the RSS panel (growth and hard limits, figures note, legend) into parts; returns the panel."""
    rss = [s.rss_bytes / MB for s in samples]
    crss = [s.consumer.rss_bytes / MB for s in samples if s.consumer is not None]
    figures = evaluation.figures
    growth_line = None
    start_mb = figures.get("stream_start_rss_mb")
    if start_mb is not None:
        growth_line = start_mb + growth_limit_mb(figures.get("hours") or 0.0, _thresholds(record))
    hard = _thresholds(record)["soak_rss_hard_max_mb"]
    extra = [growth_line] if growth_line is not None else []
    lo, hi = _range(rss + crss, extra)
    show_hard = hard <= hi * 1.25
    if show_hard:
        lo, hi = _range(rss + crss, extra + [hard])
    mem = _Panel(top=90, height=250, t_max=t_max, y_lo=lo, y_hi=hi)
    mem.shade(0, record.warmup_s, "warm-up")
    mem.frame("Memory (RSS)", "MiB")
    if growth_line is not None:
        mem.hline(growth_line, "#b35900", f"growth limit {growth_line:.0f} MiB")
    if show_hard:
        mem.hline(hard, LIMIT, f"hard limit {hard:g} MiB", dash="10 4")
    mem.line([(s.elapsed_s, s.rss_bytes / MB) for s in samples], STREAM)
    if has_consumer:
        mem.line([(s.elapsed_s, s.consumer.rss_bytes / MB if s.consumer else None) for s in samples], CONSUMER)
    note = _memory_note(figures.get("stream_growth_mb"), figures.get("stream_leak_score"))
    if not show_hard:
        note += f" · hard limit {hard:g} MiB off scale"
    parts += mem.parts + mem.overlay
    parts.append(f'<text x="{LEFT + 8}" y="{mem.top + mem.height - 8}" font-size="12" fill="#24292f"{HALO}>'
                 f'{_esc(note)}</text>')
    legend = [(STREAM, "stream RSS", False)] + ([(CONSUMER, "consumer RSS", False)] if has_consumer else [])
    if growth_line is not None:
        legend.append(("#b35900", "growth limit", True))
    if show_hard:
        legend.append((LIMIT, "hard limit", True))
    _legend(parts, mem.top, legend)
    return mem


def _memory_note(growth: float | None, score: float | None) -> str:
    """The memory panel's figures: growth and leak score, as far as they were measured."""
    if growth is None:
        return "too few samples to measure growth"
    return f"growth {growth:+.1f} MiB · leak score {score:.2f}" if score is not None else f"growth {growth:+.1f} MiB"


def _rate_panel(parts: list[str], record: RunRecord, samples: Sequence[Sample], top: float, t_max: float,
                has_consumer: bool) -> _Panel:
    """Draw the message-rate panel (minimum rate, rotation and drop markers, legend) into parts; returns it."""
    rmin = _thresholds(record)["soak_rate_min_msg_per_s"]
    rates = [s.rate_msg_s for s in samples if s.rate_msg_s is not None]
    crates = [s.consumer.rate_msg_s for s in samples if s.consumer is not None and s.consumer.rate_msg_s is not None]
    lo, hi = _range(rates + crates, [rmin], floor_zero=True)
    rate = _Panel(top=top, height=190, t_max=t_max, y_lo=lo, y_hi=hi)
    rate.shade(0, record.warmup_s, "warm-up")
    rate.frame("Message rate", "msg/s")
    rate.hline(rmin, LIMIT, f"minimum {rmin:g} msg/s")
    rate.line([(s.elapsed_s, s.rate_msg_s) for s in samples], RATE)
    if has_consumer:
        rate.line([(s.elapsed_s, s.consumer.rate_msg_s if s.consumer else None) for s in samples], CRATE, 1.5)
    for t, n in _events(samples, lambda s: s.rotations):
        rate.marker(t, ROTATION, "rotation" if n == 1 else f"{n:g} rotations")
    for t, n in _events(samples, lambda s: s.drops):
        rate.marker(t, DROP, "drop" if n == 1 else f"{n:g} drops", at_top=True)
    parts += rate.parts + rate.overlay
    legend = [(RATE, "stream msg/s", False)] + ([(CRATE, "consumed msg/s", False)] if has_consumer else [])
    legend += [(LIMIT, "minimum rate", True), (ROTATION, "rotation", True), (DROP, "drop", True)]
    _legend(parts, rate.top, legend)
    return rate


def _footer(parts: list[str], record: RunRecord, color: str, bottom: float) -> float:
    """The time-axis caption and, for a run that ended early, why; returns the document's height."""
    parts.append(f'<text x="{LEFT + PLOT_W / 2}" y="{bottom - 8}" text-anchor="middle" font-size="12" '
                 'fill="#57606a">time since the soak started</text>')
    if record.partial and record.end_reason:
        parts.append(f'<text x="{LEFT}" y="{bottom + 12}" font-size="13" fill="{color}">'
                     f'{_esc("Ended early: " + record.end_reason)}</text>')
        bottom += 20
    return bottom + 10


def _thresholds(record: RunRecord) -> dict[str, float]:
    from k2cli.soak.criteria import thresholds_from

    return thresholds_from(record.thresholds)


def render_html(record: RunRecord, samples: Sequence[Sample], evaluation: Evaluation, report_text: str) -> str:
    """A self-contained HTML page: verdict, criteria table, the inline SVG chart and the text report."""
    rows = []
    for c in evaluation.criteria:
        col = COLORS[c.status]
        rows.append(f"<tr><td>{_esc(c.name)}</td><td style=\"color:#fff;background:{col};text-align:center;"
                    f"font-weight:bold\">{c.status.value}</td><td>{_esc(c.measured)}</td><td>{_esc(c.limit)}</td>"
                    f"<td>{_esc(c.detail)}</td></tr>")
    title = f"k2 soak {record.exchange}: {evaluation.verdict.value}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #24292f; background: #fff; }}
table {{ border-collapse: collapse; margin: 12px 0 20px; font-size: 14px; }}
td, th {{ border: 1px solid #d0d7de; padding: 5px 9px; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }}
pre {{ background: #f6f8fa; padding: 12px; font-size: 12px; overflow-x: auto; }}
</style></head>
<body>
{render_svg(record, samples, evaluation)}
<table><tr><th>criterion</th><th>result</th><th>measured</th><th>limit</th><th>note</th></tr>
{chr(10).join(rows)}
</table>
<details><summary>Text report</summary><pre>{_esc(report_text)}</pre></details>
</body></html>
"""

"""The soak's success criteria (seed 003, Level 3) as pure functions of the run record and its samples.

Every limit is a threshold that k2.toml's [thresholds] table can override (names below).

Scaling to durations other than 24 h (the seeds give limits for 1 h and 24 h only):

- memory growth: the 1-hour limit (10 MB) applies to runs of up to 1 hour; between 1 and 24 hours
  the limit rises linearly to the 24-hour limit (50 MB); beyond 24 hours it stays there (the
  seeds' 7-day report asks for "<50MB growth over 7 days"). Short runs get no smaller limit
  because their growth is noise around warm-up; the leak score judges their trend. Growth is
  measured from the end of the warm-up: the median RSS of the last 3 samples minus the median of
  the first 3 samples after the warm-up.
- connection drops (reconnects other than scheduled rotations): fewer than 10 per 24 hours,
  scaled to the run's length but never below 1 (so a short run passes only with zero drops);
  a short run with more than its share of drops, but fewer than a whole day's allowance, is a WARN.
- message rate: the average after the warm-up must exceed 10 msg/s; more than 5% of intervals
  below that rate is a WARN.
- leak score: the shared score of `k2cli.observe.memory` (10 MB/h of steady growth scores 0.5)
  over the samples after the warm-up; fewer than 10 such samples cannot show a trend (WARN). A score
  at or above the limit fails unless the fitted line grows less than 2 MB over the whole run: in a
  run of a few minutes, allocator steps of a few hundred KB already look like MB/h. This floor
  matters only for runs shorter than 12 minutes (a 0.5 score means >= 10 MB/h, so >= 2 MB in 12 min).
- the hard RSS limit (450 MB) applies to every sample, warm-up included, and ends the run at once.

The warm-up is 10% of the planned duration, at least 30 s (but at most half the run) and at most 300 s.
The consumer's own warm-up lasts at least until 30 s after its first commit to Iceberg: its first
batches load pyiceberg and Arrow, a step of tens of MB that is not growth.
"""

from __future__ import annotations

import signal
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from k2cli.exchanges import registry
from k2cli.soak.profile import ABORTED, COMPLETED, CRASHED, INTERRUPTED, MB, NOT_RUN, RunRecord, Sample
from k2cli.verdict import Status, exit_code, worst

S003 = "seed 003 Phase 5, Level 3 soak"
S000 = "seed 000, Step 5"

# name -> (default, meaning); every one can be overridden in k2.toml [thresholds]
THRESHOLDS: dict[str, tuple[float, str]] = {
    "soak_memory_growth_1h_max_mb": (10, f"memory growth < 10 MB over 1 h ({S003} scaled; issue 7)"),
    "soak_memory_growth_24h_max_mb": (50, f"memory growth < 50 MB over 24 h ({S003})"),
    "soak_rate_min_msg_per_s": (10, f"message rate > 10 msg/s sustained ({S003})"),
    "soak_rate_dip_max_pct": (5, "WARN when more than this % of intervals fall below the minimum rate"),
    "soak_drops_24h_max": (10, f"connection drops < 10 over 24 h excluding rotations ({S003})"),
    "soak_leak_score_max": (0.5, f"memory leak detection score < 0.5 ({S003})"),
    "soak_integrity_errors_max": (0, f"zero data integrity errors ({S003})"),
    "soak_rss_hard_max_mb": (450, "hard failure above 450 MB RSS "
                                  f"(issue 7; {registry.default().alert('MemoryHigh')} alerts at 400 MB)"),
    "soak_consumer_rss_hard_max_mb": (500, f"memory usage < 500 MB for a single consumer ({S000})"),
    "soak_leak_min_growth_mb": (2, "a leak score counts only when the fitted RSS line grows at least this much"),
    "soak_warmup_fraction": (0.1, "run parameter: share of the planned duration treated as warm-up"),
    "soak_warmup_min_s": (30, "run parameter: shortest warm-up (at most half the run)"),
    "soak_warmup_max_s": (300, "run parameter: longest warm-up"),
}

MIN_TREND_SAMPLES = 10
EDGE_SAMPLES = 3  # samples whose median makes the start and end RSS of the growth measurement


@dataclass(frozen=True)
class Criterion:
    """One judged criterion: what was measured, against which limit, and the outcome."""

    name: str
    status: Status
    measured: str
    limit: str
    detail: str = ""


@dataclass(frozen=True)
class Evaluation:
    """All criteria of a run and the verdict they fold into."""

    criteria: tuple[Criterion, ...]
    verdict: Status
    partial: bool
    figures: dict[str, float | None] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 pass, 1 warn, 2 fail, 3 could not run."""
        return exit_code(self.verdict)


def thresholds_from(settings_thresholds: Mapping[str, float] | None = None) -> dict[str, float]:
    """The soak thresholds in force: defaults overridden by k2.toml's [thresholds] soak_* entries."""
    values = {name: float(default) for name, (default, _) in THRESHOLDS.items()}
    for name, value in (settings_thresholds or {}).items():
        if name in values:
            values[name] = float(value)
    return values


def warmup_seconds(planned_s: float, t: Mapping[str, float]) -> float:
    """The warm-up excluded from growth, rate and leak figures."""
    share = max(planned_s * t["soak_warmup_fraction"], min(t["soak_warmup_min_s"], planned_s / 2))
    return min(t["soak_warmup_max_s"], share)


def default_sample_interval(planned_s: float, t: Mapping[str, float], longest_s: float = 60.0) -> float:
    """Seconds between samples when none is given: 60, or less for a short run, so that the time after the
    warm-up holds twice the samples a leak score needs (a 2-minute run samples every 4.5 s)."""
    steady = max(planned_s - warmup_seconds(planned_s, t), 0.0)
    return round(max(0.5, min(longest_s, steady / (2 * MIN_TREND_SAMPLES))), 1)


CONSUMER_SETTLE_S = 30.0  # after the consumer's first commit


def consumer_warmup(samples: list[Sample], warmup_s: float) -> float:
    """When the consumer's steady state starts: the run's warm-up, or 30 s after its first commit if later."""
    first = next((s.elapsed_s for s in samples if s.consumer is not None and (s.consumer.written or 0) > 0), None)
    return warmup_s if first is None else max(warmup_s, first + CONSUMER_SETTLE_S)


def growth_limit_mb(hours: float, t: Mapping[str, float]) -> float:
    """The memory-growth limit for a run of this many hours (see the module docstring)."""
    one, day = t["soak_memory_growth_1h_max_mb"], t["soak_memory_growth_24h_max_mb"]
    if hours <= 1:
        return one
    if hours >= 24:
        return day
    return one + (day - one) * (hours - 1) / 23


def drops_limit(hours: float, t: Mapping[str, float]) -> float:
    """Drops fewer than this pass: the 24-hour allowance scaled to the run, at least 1."""
    return max(1.0, t["soak_drops_24h_max"] * hours / 24)


def describe_exit(code: int | None) -> str:
    """A process exit status in words, e.g. 'killed by signal 9 (SIGKILL)'."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exit status {code}"


def _points(samples: list[Sample], attr: str) -> list[tuple[float, float]]:
    points = []
    for s in samples:
        value = getattr(s, attr) if attr != "consumer" else (s.consumer.rss_bytes if s.consumer else None)
        if value is not None:
            points.append((float(s.elapsed_s), float(value)))
    return points


def leak_score_of(samples: list[Sample], attr: str = "rss_bytes") -> float:
    """The shared leak score (k2cli.observe.memory) over samples' RSS."""
    from k2cli.observe.memory import leak_score

    return float(leak_score(_points(samples, attr)))


def rss_trend_of(samples: list[Sample], attr: str = "rss_bytes") -> tuple[float, float]:
    """(slope in MB/h, R²) of samples' RSS, as the leak score sees it."""
    from k2cli.observe.memory import rss_trend

    return rss_trend(_points(samples, attr))


def _median_mb(values: list[float]) -> float:
    return statistics.median(values) / MB


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _after_warmup(samples: list[Sample], warmup_s: float) -> list[Sample]:
    return [s for s in samples if s.elapsed_s >= warmup_s]


def _memory_criteria(label: str, samples: list[Sample], rss_of: Callable[[Sample], float | None], hard_mb: float,
                     hours: float, warmup_s: float, t: Mapping[str, float], figures: dict, key: str) -> list[Criterion]:
    """Hard limit, growth and leak-score criteria of one process."""
    out: list[Criterion] = []
    rss_all = [v for s in samples if (v := rss_of(s)) is not None]
    peak = max(rss_all) / MB if rss_all else None
    figures[f"{key}_peak_rss_mb"] = peak
    if peak is None:
        out.append(Criterion(f"{label} RSS below hard limit", Status.ERROR, "no samples", f"< {hard_mb:g} MB"))
        return out
    out.append(Criterion(f"{label} RSS below hard limit", Status.PASS if peak < hard_mb else Status.FAIL,
                         f"peak {_fmt(peak)} MB", f"< {hard_mb:g} MB"))
    steady = [s for s in _after_warmup(samples, warmup_s) if rss_of(s) is not None]
    limit = growth_limit_mb(hours, t)
    if len(steady) < 2:
        out.append(Criterion(f"{label} memory growth", Status.WARN, f"{len(steady)} sample(s) after warm-up",
                             f"< {limit:.1f} MB", "too few samples after the warm-up to measure growth"))
        figures[f"{key}_growth_mb"] = None
    else:
        edge = min(EDGE_SAMPLES, len(steady) // 2)
        start = _median_mb([v for s in steady[:edge] if (v := rss_of(s)) is not None])
        end = _median_mb([v for s in steady[-edge:] if (v := rss_of(s)) is not None])
        growth = end - start
        figures[f"{key}_growth_mb"] = growth
        figures[f"{key}_start_rss_mb"] = start
        figures[f"{key}_end_rss_mb"] = end
        out.append(Criterion(f"{label} memory growth", Status.PASS if growth < limit else Status.FAIL,
                             f"{growth:+.1f} MB ({start:.1f} -> {end:.1f} MB)", f"< {limit:.1f} MB",
                             f"limit for {hours:.2f} h; measured after a {warmup_s:.0f} s warm-up"))
    lmax = t["soak_leak_score_max"]
    if len(steady) < MIN_TREND_SAMPLES:
        figures[f"{key}_leak_score"] = None
        out.append(Criterion(f"{label} leak score", Status.WARN, f"{len(steady)} samples after warm-up",
                             f"< {lmax:g}", f"at least {MIN_TREND_SAMPLES} samples are needed to score a trend; "
                             "use a shorter --sample-interval"))
    else:
        attr = "consumer" if key == "consumer" else "rss_bytes"
        score = leak_score_of(steady, attr)
        slope, r2 = rss_trend_of(steady, attr)
        fitted = slope * (steady[-1].elapsed_s - steady[0].elapsed_s) / 3600
        figures[f"{key}_leak_score"] = score
        figures[f"{key}_slope_mb_per_h"] = slope
        figures[f"{key}_fitted_growth_mb"] = fitted
        measured = f"{score:.2f} (slope {slope:+.1f} MB/h, R² {r2:.2f})"
        floor = t["soak_leak_min_growth_mb"]
        if score < lmax:
            status, note = Status.PASS, "trend of RSS after warm-up (10 MB/h steady = 0.5)"
        elif fitted < floor:
            status, note = Status.PASS, (f"the fitted line grows only {fitted:.2f} MB over the run (< {floor:g} MB): "
                                         "allocator steps, too small to call a leak in a run this short")
        else:
            status, note = Status.FAIL, f"steady growth: the fitted line adds {fitted:.1f} MB over the run"
        out.append(Criterion(f"{label} leak score", status, measured, f"< {lmax:g}", note))
    return out


def _lifecycle(record: RunRecord, hours: float) -> Criterion:
    planned_h = record.planned_duration_s / 3600
    ran = f"{hours:.2f} of {planned_h:.2f} h"
    if record.status == COMPLETED:
        return Criterion("ran the planned duration", Status.PASS, ran, f"{planned_h:.2f} h")
    if record.status == CRASHED:
        return Criterion("ran the planned duration", Status.FAIL, ran, f"{planned_h:.2f} h",
                         record.end_reason or "a child process exited")
    if record.status == NOT_RUN:
        return Criterion("ran the planned duration", Status.ERROR, "did not start", f"{planned_h:.2f} h",
                         record.end_reason)
    if record.status == ABORTED:
        return Criterion("ran the planned duration", Status.FAIL, ran, f"{planned_h:.2f} h", record.end_reason)
    if record.status == INTERRUPTED:
        return Criterion("ran the planned duration", Status.WARN, ran, f"{planned_h:.2f} h",
                         f"PARTIAL: {record.end_reason or 'interrupted'}")
    return Criterion("ran the planned duration", Status.WARN, ran, f"{planned_h:.2f} h",
                     "PARTIAL: the run record says the soak is still running (or its runner died)")


def _rate(samples: list[Sample], warmup_s: float, t: Mapping[str, float], figures: dict) -> Criterion:
    rmin = t["soak_rate_min_msg_per_s"]
    steady = [s for s in _after_warmup(samples, warmup_s) if s.messages is not None]
    if len(steady) < 2:
        figures["avg_rate_msg_s"] = None
        if not samples or all(s.messages is None for s in samples):
            return Criterion("message rate", Status.ERROR, "no message counts", f"> {rmin:g} msg/s",
                             "the stream's metrics endpoint gave no message counter")
        return Criterion("message rate", Status.WARN, f"{len(steady)} sample(s) after warm-up", f"> {rmin:g} msg/s",
                         "too few samples after the warm-up")
    span = steady[-1].elapsed_s - steady[0].elapsed_s
    counts = [s.messages for s in steady if s.messages is not None]  # all of them: steady has counts only
    avg = (counts[-1] - counts[0]) / span if span > 0 else 0.0
    figures["avg_rate_msg_s"] = avg
    rates = [s.rate_msg_s for s in steady[1:] if s.rate_msg_s is not None]
    figures["min_rate_msg_s"] = min(rates) if rates else None
    dips = sum(1 for r in rates if r <= rmin)
    measured = f"{avg:,.1f} msg/s average (lowest interval {_fmt(figures['min_rate_msg_s'])})"
    if avg <= rmin:
        return Criterion("message rate", Status.FAIL, measured, f"> {rmin:g} msg/s")
    if rates and 100 * dips / len(rates) > t["soak_rate_dip_max_pct"]:
        return Criterion("message rate", Status.WARN, measured, f"> {rmin:g} msg/s",
                         f"{dips} of {len(rates)} intervals below the minimum")
    return Criterion("message rate", Status.PASS, measured, f"> {rmin:g} msg/s")


def _drops(samples: list[Sample], hours: float, t: Mapping[str, float], figures: dict) -> Criterion:
    last = next((s for s in reversed(samples) if s.drops is not None), None)
    limit = drops_limit(hours, t)
    day = t["soak_drops_24h_max"]
    if last is None:
        figures["drops"] = None
        return Criterion("connection drops", Status.ERROR, "no reconnect counts", f"< {limit:g}",
                         "the stream's metrics endpoint gave no reconnect counter")
    drops = last.drops or 0.0  # never None: `last` is the newest sample with a count
    figures["drops"] = drops
    figures["rotations"] = last.rotations
    reasons = ", ".join(f"{k} {v:g}" for k, v in sorted(last.reconnects.items()) if v) or "none"
    measured = f"{drops:g} (reconnects by reason: {reasons}; rotations {_fmt(last.rotations, 0)})"
    if drops < limit:
        return Criterion("connection drops", Status.PASS, measured, f"< {limit:.2g}")
    if drops < day:
        return Criterion("connection drops", Status.WARN, measured, f"< {limit:.2g}",
                         f"more than this run's share of the {day:g}-per-24 h allowance")
    return Criterion("connection drops", Status.FAIL, measured, f"< {limit:.2g}")


def _integrity(samples: list[Sample], t: Mapping[str, float], figures: dict) -> Criterion:
    imax = t["soak_integrity_errors_max"]
    last = next((s for s in reversed(samples) if s.integrity_errors is not None), None)
    dlq = next((s.consumer.dlq_entries for s in reversed(samples)
                if s.consumer is not None and s.consumer.dlq_entries is not None), None)
    if last is None and dlq is None:
        figures["integrity_errors"] = None
        return Criterion("data integrity errors", Status.ERROR, "no error counts", f"<= {imax:g}",
                         "the metrics endpoints gave no message-error counters")
    total = ((last.integrity_errors or 0) if last else 0) + (dlq or 0)
    figures["integrity_errors"] = total
    parts = [f"stream {_fmt(last.integrity_errors if last else None, 0)}"]
    if dlq is not None:
        parts.append(f"consumer dead-lettered {dlq:g}")
    return Criterion("data integrity errors", Status.PASS if total <= imax else Status.FAIL,
                     f"{total:g} ({', '.join(parts)})", f"<= {imax:g}")


def evaluate(record: RunRecord, samples: list[Sample], t: Mapping[str, float] | None = None) -> Evaluation:
    """Judge a run: every criterion, and the verdict (the most severe outcome)."""
    t = dict(t) if t is not None else thresholds_from(record.thresholds)
    figures: dict[str, float | None] = {}
    hours = (samples[-1].elapsed_s if samples else 0.0) / 3600
    figures["hours"] = hours
    criteria: list[Criterion] = [_lifecycle(record, hours)]
    if record.status != NOT_RUN:
        criteria += _memory_criteria("stream", samples, lambda s: s.rss_bytes, t["soak_rss_hard_max_mb"], hours,
                                     record.warmup_s, t, figures, "stream")
        criteria.append(_rate(samples, record.warmup_s, t, figures))
        criteria.append(_drops(samples, hours, t, figures))
        criteria.append(_integrity(samples, t, figures))
        if record.consumer_command:
            settle = consumer_warmup(samples, record.warmup_s)
            figures["consumer_warmup_s"] = settle
            criteria += _memory_criteria("consumer", samples, lambda s: s.consumer.rss_bytes if s.consumer else None,
                                         t["soak_consumer_rss_hard_max_mb"], hours, settle, t, figures,
                                         "consumer")
    verdict = worst(c.status for c in criteria)
    return Evaluation(tuple(criteria), verdict, record.partial, figures)

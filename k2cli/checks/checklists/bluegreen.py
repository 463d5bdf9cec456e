"""The blue-green steps of `k2 validate deploy --post` (seed 003, Step 08), measured from Prometheus and the table.

A blue-green deploy of an exchange's collector is two instances of its stream job up at once in Prometheus (blue on
the metrics port, green on the green port, port + 100). The latest such overlap in the look-back is the dual
span; its end is the cut-over. Prometheus gives who was up and who received trades when; the table, read through
the engine of `k2 query gaps`, gives duplicated and missing trade ids of the span.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from k2cli.checks.checklists import common
from k2cli.checks.context import Context
from k2cli.checks.model import Manual, Result

Points = list[tuple[float, float]]
RUN_GAP_S = 30.0  # samples further apart than this (Prometheus down, target not configured) end a run
DUPLICATES = "k2_consumer_duplicates_total"
PRODUCED = "k2_stream_messages_produced_total"  # trades Kafka acknowledged, per stream process


@dataclass(frozen=True)
class Span:
    """A time span in epoch seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Its length."""
        return self.end - self.start


def up_runs(points: Points, gap: float = RUN_GAP_S) -> list[Span]:
    """The runs of consecutive `up == 1` samples of one target, oldest first."""
    runs: list[Span] = []
    start = last = None
    for t, v in sorted(points):
        if v == 1 and start is not None and last is not None and t - last <= gap:
            last = t
            continue
        if start is not None and last is not None:
            runs.append(Span(start, last))
        start, last = (t, t) if v == 1 else (None, None)
    if start is not None and last is not None:
        runs.append(Span(start, last))
    return runs


@dataclass(frozen=True)
class Overlap:
    """Two instances up at once: blue was up first, green joined it."""

    span: Span
    blue: str
    green: str
    green_run: Span  # green's whole run that holds the overlap


def latest_overlap(up: dict[str, Points], gap: float = RUN_GAP_S) -> Overlap | None:
    """The latest span in which two instances were up at once (None: never two at once)."""
    runs = {inst: up_runs(points, gap) for inst, points in up.items()}
    best: Overlap | None = None
    names = sorted(runs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for ra in runs[a]:
                for rb in runs[b]:
                    span = Span(max(ra.start, rb.start), min(ra.end, rb.end))
                    if span.seconds < 0 or (best is not None and span.end <= best.span.end):
                        continue
                    (blue, green, run) = (a, b, rb) if (ra.start, a) <= (rb.start, b) else (b, a, ra)
                    best = Overlap(span, blue, green, run)
    return best


def increase(points: Points, start: float, end: float) -> float:
    """How much a counter rose from its samples within [start, end] (after a reset it counts from zero)."""
    inside = [v for t, v in sorted(points) if start <= t <= end]
    return sum(b - a if b >= a else b for a, b in zip(inside, inside[1:], strict=False))


def per_instance(series: list[tuple[dict[str, str], Points]], start: float, end: float) -> dict[str, float]:
    """A counter's rise within [start, end] summed per instance (over its label sets)."""
    out: dict[str, float] = {}
    for labels, points in series:
        inst = labels.get("instance", "?")
        out[inst] = out.get(inst, 0.0) + increase(points, start, end)
    return out


@dataclass
class Timeline:
    """What Prometheus shows of an exchange's collectors over the look-back, as plain values."""

    exchange: str
    job: str
    lookback_s: float
    end: float  # when it was read
    instances: list[str]  # instances of the job up at some point of the look-back
    overlap: Overlap | None
    runs: dict[str, list[Span]] = field(default_factory=dict)  # instance -> its runs of up == 1
    received_during: dict[str, float] = field(default_factory=dict)  # instance -> trades received in the overlap
    received_after: dict[str, float] = field(default_factory=dict)  # instance -> trades received after cut-over
    produced_during: dict[str, float] = field(default_factory=dict)  # instance -> trades Kafka acknowledged
    produced_after: dict[str, float] = field(default_factory=dict)
    duplicates_removed: float | None = None  # the consumer's duplicates counter since the overlap began

    @property
    def green_only(self) -> Span | None:
        """From the cut-over to green's last sample up."""
        o = self.overlap
        return Span(o.span.end, o.green_run.end) if o is not None else None


def read_timeline(prom: Any, exchange: str, job: str, lookback_s: float, now: float) -> Timeline:
    """Query Prometheus for the exchange's stream instances, their received counters and the duplicates counter."""
    window = max(1, int(lookback_s))
    up: dict[str, Points] = {}
    for labels, points in prom.samples(f'up{{job="{job}"}}', window, now):
        up.setdefault(labels.get("instance", "?"), []).extend(points)
    overlap = latest_overlap(up)
    t = Timeline(exchange, job, lookback_s, now, sorted(i for i, p in up.items() if any(v == 1 for _, v in p)),
                 overlap, {inst: up_runs(points) for inst, points in up.items()})
    if overlap is None:
        return t
    received = prom.samples(f'{exchange}_messages_received_total{{job="{job}"}}', window, now)
    t.received_during = per_instance(received, overlap.span.start, overlap.span.end)
    t.received_after = per_instance(received, overlap.span.end, now)
    produced = prom.samples(f'{PRODUCED}{{job="{job}"}}', window, now)
    t.produced_during = per_instance(produced, overlap.span.start, overlap.span.end)
    t.produced_after = per_instance(produced, overlap.span.end, now)
    dups = prom.samples(DUPLICATES, window, now)
    t.duplicates_removed = sum(per_instance(dups, overlap.span.start, now).values()) if dups else None
    return t


def timeline(ctx: Context) -> Timeline:
    """The run's timeline of the checked exchange (read once, shared by the blue-green steps)."""
    if "bluegreen" not in ctx.state:
        from k2cli.exchanges import registry

        desc = registry.get(ctx.options.exchange)
        ctx.state["bluegreen"] = read_timeline(common.prometheus(ctx), desc.name, desc.scrape_job,
                                               ctx.threshold("bg_lookback_s"), time.time())
    tl: Timeline = ctx.state["bluegreen"]
    return tl


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def overlap_line(t: Timeline) -> str:
    """The overlap in words."""
    o = t.overlap
    if o is None:
        return "no overlap"
    return (f"green {o.green} up beside blue {o.blue} for {o.span.seconds:.0f} s "
            f"({_clock(o.span.start)}-{_clock(o.span.end)} UTC)")


def measure_bg_green_deployed(ctx: Context) -> Result:
    """Two instances of the exchange's stream job were up at once in the look-back."""
    t = timeline(ctx)
    evidence = [f"look-back {t.lookback_s:g} s of up{{job=\"{t.job}\"}}", f"instances up: {', '.join(t.instances)}"]
    if t.overlap is None:
        seen = ", ".join(t.instances) or "none"
        return Result.failed(f"{t.job} never had two instances up at once in the last {t.lookback_s:g} s "
                             f"(instances up: {seen}): no green beside blue", measured=len(t.instances),
                             unit="instances", evidence=evidence)
    return Result.passed(overlap_line(t), measured=2, unit="instances", evidence=evidence)


# ---------------------------------------------------------------- dual operation


@dataclass(frozen=True)
class TableSpan:
    """What the table holds of an exchange in a span (from `k2 query gaps`'s engine)."""

    rows: int
    duplicates: list[str]  # "SYMBOL trade_id (n rows)"
    missing: list[str]  # "SYMBOL a..b"
    missing_ids: int


def dual_problems(t: Timeline, table: TableSpan) -> list[str]:
    """Why the overlap was no clean dual operation: a collector idle, no duplicates removed, an id twice."""
    o = t.overlap
    if o is None:
        return ["no overlap of two collectors"]
    problems = [f"{role} {inst} {what} during the overlap"
                for role, inst in (("blue", o.blue), ("green", o.green))
                for what, counts in (("received no trades", t.received_during),
                                     ("produced no trades to Kafka", t.produced_during)) if not counts.get(inst)]
    if t.duplicates_removed is None:
        problems.append(f"Prometheus has no {DUPLICATES} (is the consumer scraped?)")
    elif t.duplicates_removed <= 0:
        problems.append("the consumer removed no duplicates since the overlap began (two collectors on one market "
                        "deliver every trade twice)")
    if table.rows == 0:
        problems.append("the table holds no trades of the overlap")
    problems += [f"trade id twice in the table: {d}" for d in table.duplicates]
    return problems


def read_table(ctx: Context, exchange: str, span: Span) -> TableSpan:
    """Duplicated and missing trade ids of one exchange in a span, by `k2 query gaps`'s engine."""
    from k2cli.lake.plan import TradeFilter
    from k2cli.lake.query import TradesLake

    flt = TradeFilter(exchange=exchange.upper(), since_us=int(span.start * 1e6), until_us=int(span.end * 1e6) + 1)
    report = TradesLake.open(ctx.settings).gaps(flt)
    return TableSpan(sum(s.rows for s in report.symbols),
                     [f"{s.symbol} {tid} ({n} rows)" for s in report.symbols for tid, n in s.duplicates],
                     [f"{s.symbol} {a}..{b}" for s in report.symbols for a, b in s.missing],
                     sum(s.missing_ids for s in report.symbols))


def measure_bg_dual(ctx: Context) -> Result:
    """Both collectors received and produced in the overlap, the consumer removed duplicates, no trade id is twice."""
    t = timeline(ctx)
    if t.overlap is None:
        return Result.failed(f"{t.job} never had two instances up at once in the last {t.lookback_s:g} s")
    table = read_table(ctx, t.exchange, t.overlap.span)
    evidence = [overlap_line(t), *(f"{inst}: {n:.0f} trades received, {t.produced_during.get(inst, 0):.0f} "
                                   "produced in the overlap" for inst, n in sorted(t.received_during.items())),
                f"{DUPLICATES} rose by {t.duplicates_removed} since the overlap began",
                f"table: {table.rows} rows of {t.exchange} in the overlap, {len(table.duplicates)} trade ids twice"]
    problems = dual_problems(t, table)
    if problems:
        return Result.counted(problems, "", unit="problems", evidence=evidence)
    return ctx.check("bg_dual_min_s", round(t.overlap.span.seconds, 1),
                     f"both collectors received trades for {t.overlap.span.seconds:.0f} s; "
                     f"{t.duplicates_removed:.0f} duplicates removed, no trade id twice", evidence=evidence)


# ---------------------------------------------------------------- the cut-over

CUTOVER = Manual("Prometheus sees blue's target go down, not how its process ended (its exit status and summary line "
                 "are in its own log)",
                 "blue was stopped with SIGTERM and exited 0 after flushing: its last log line is the run summary "
                 "with nothing undelivered (deploy-pre.stream-sigterm proves the mechanism)")


def cutover_problems(t: Timeline) -> list[str]:
    """Why the overlap did not end in a cut-over to green: green went down first, or blue came back."""
    o = t.overlap
    if o is None:
        return ["no overlap of two collectors"]
    problems = []
    if o.green_run.end <= o.span.end:
        problems.append(f"green {o.green} went down at {_clock(o.green_run.end)} UTC and blue {o.blue} stayed up: "
                        "no cut-over to green")
    back = [r for r in t.runs.get(o.blue, []) if r.start > o.span.end]
    if back:
        problems.append(f"blue {o.blue} was up again from {_clock(back[0].start)} UTC after the cut-over")
    return problems


def measure_bg_cutover(ctx: Context) -> Result:
    """Blue's target went down while green stayed up (FAIL if not); a person confirms blue exited 0 on SIGTERM."""
    t = timeline(ctx)
    problems = cutover_problems(t)
    evidence = [overlap_line(t), *(f"{inst} up: " + ", ".join(f"{_clock(r.start)}-{_clock(r.end)}" for r in runs)
                                   for inst, runs in sorted(t.runs.items()) if runs)]
    if problems or t.overlap is None:
        return Result.counted(problems, "", unit="problems", evidence=evidence)
    o = t.overlap
    return Result.needs_person(CUTOVER, f"blue {o.blue} went down at {_clock(o.span.end)} UTC while green {o.green} "
                               "stayed up; a person confirms blue exited 0 on SIGTERM", evidence=evidence)


# ---------------------------------------------------------------- after the cut-over


def validated_problems(t: Timeline, table: TableSpan) -> list[str]:
    """Why green does not hold the market alone: another collector still going, green idle, ids missing."""
    o = t.overlap
    if o is None:
        return ["no overlap of two collectors"]
    producing = sorted({i for counts in (t.received_after, t.produced_after) for i, n in counts.items() if n > 0})
    problems = [f"{inst} still received or produced trades after the cut-over" for inst in producing
                if inst != o.green]
    problems += [f"green {o.green} {what} after the cut-over"
                 for what, counts in (("received no trades", t.received_after),
                                      ("produced no trades to Kafka", t.produced_after)) if not counts.get(o.green)]
    problems += [f"trade ids missing from the table: {m}" for m in table.missing]
    return problems


def measure_bg_green_validated(ctx: Context) -> Result:
    """After the cut-over only green receives trades, and the table misses no id from the overlap's start on."""
    t = timeline(ctx)
    only = t.green_only
    if t.overlap is None or only is None:
        return Result.failed(f"{t.job} never had two instances up at once in the last {t.lookback_s:g} s")
    table = read_table(ctx, t.exchange, Span(t.overlap.span.start, t.end))
    evidence = [overlap_line(t), *(f"{inst}: {n:.0f} trades received, {t.produced_after.get(inst, 0):.0f} "
                                   "produced after the cut-over" for inst, n in sorted(t.received_after.items())),
                f"table: {table.rows} rows of {t.exchange} since the overlap began, {table.missing_ids} ids missing"]
    problems = validated_problems(t, table)
    if problems:
        return Result.counted(problems, "", unit="problems", evidence=evidence)
    return ctx.check("bg_green_only_min_s", round(only.seconds, 1),
                     f"green {t.overlap.green} alone for {only.seconds:.0f} s after the cut-over; no trade id missing",
                     evidence=evidence)

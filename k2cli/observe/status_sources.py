"""The readings behind `k2 status`: streams and the consumer process from Prometheus, consumer groups from Kafka,
the trades table's snapshots and freshness, the dead-letter queue and the local stack's services."""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from typing import Any

from k2cli.checks import metricnames as names
from k2cli.observe.prometheus_api import Prometheus
from k2cli.settings import Settings

BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


@dataclass
class TargetReading:
    """One scrape job as Prometheus sees it: up now, up at any time in the window, and its figures."""

    job: str
    up: bool
    seen_up: bool
    figures: dict[str, Any] = field(default_factory=dict)


def _up(prom: Prometheus, job: str, window_s: int) -> tuple[bool, bool]:
    """(up now, up at some time in the last window_s seconds) of a scrape job."""
    now = prom.value(f'max(up{{job="{job}"}})')
    seen = prom.value(f'max(max_over_time(up{{job="{job}"}}[{window_s}s]))') if window_s > 0 else None
    return now == 1, seen == 1 or now == 1


def _rounded(value: float | None, places: int = 3) -> float | None:
    return None if value is None else round(value, places)


def read_stream(prom: Prometheus, exchange: str, job: str, window_s: int) -> TargetReading:
    """A stream's target and figures: trades/s (1m), last message age, reconnects, gaps filled and unfilled."""
    up, seen = _up(prom, job, window_s)
    sel = f'{{job="{job}"}}'
    figures: dict[str, Any] = {
        "trades_per_s": _rounded(prom.value(
            f"sum(rate({names.stream(exchange, 'messages_received_total')}{sel}[1m]))")),
        "last_message_age_s": _rounded(prom.value(
            f"time() - max({names.stream(exchange, 'last_message_timestamp_seconds')}{sel})"), 1),
        "reconnects": _int(prom.value(f"sum({names.stream(exchange, 'reconnects_total')}{sel})")),
    }
    gaps = {labels.get("result", ""): value for labels, value in
            prom.query(f"sum by (result) ({names.BACKFILL_GAPS}{sel})")}
    figures["gaps_filled"] = _int(gaps.get("filled"))
    figures["gaps_unfilled"] = _int(gaps.get("unfilled"))
    return TargetReading(job, up, seen, figures)


def read_consumer_process(prom: Prometheus, window_s: int) -> TargetReading:
    """The scraped consumer: mean commit (Iceberg write) latency over 5m, breaker state, its own lag gauge."""
    job = names.CONSUMER_JOB
    up, seen = _up(prom, job, window_s)
    sel = f'{{job="{job}"}}'
    latency = prom.value(f"sum(rate({names.WRITE_DURATION}_sum{sel}[5m])) / "
                         f"sum(rate({names.WRITE_DURATION}_count{sel}[5m]))")
    breaker = prom.value(f"max({names.BREAKER_STATE}{sel})")
    return TargetReading(job, up, seen, {
        "commit_latency_s": _rounded(latency),
        "breaker": BREAKER_STATES.get(int(breaker), str(breaker)) if breaker is not None else None,
        "lag": _int(prom.value(f"sum({names.CONSUMER_LAG}{sel})")),
    })


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


@dataclass
class GroupReading:
    """A consumer group as the broker sees it."""

    state: str
    members: int
    partitions: list[dict[str, Any]]


def read_group(settings: Settings, group: str) -> GroupReading:
    """Members and, per partition of every topic the group has committed to: committed offset, end offset, lag.

    A partition without a commit counts everything retained in it (end minus low watermark) as lag."""
    from k2cli.kafka import admin
    from k2cli.kafka.client_config import client_config

    conf = client_config(settings, {"socket.timeout.ms": 5000, "log_level": 0})
    state, members = admin.group_state(conf, group)
    committed = admin.group_offsets(conf, group)
    wanted = sorted({(topic, p) for topic in {t for t, _ in committed}
                     for p in admin.partitions(conf, topic)} | set(committed))
    marks = admin.watermark_offsets(conf, wanted)
    return GroupReading(state, members, [partition_lag(tp, committed.get(tp), marks.get(tp)) for tp in wanted])


def partition_lag(tp: tuple[str, int], committed: int | None, marks: tuple[int, int] | None) -> dict[str, Any]:
    """One partition's row: committed offset, end offset and lag (None where the broker gave no offsets)."""
    low, high = marks if marks is not None and marks[1] >= 0 else (None, None)
    lag = None
    if high is not None:
        lag = max(0, high - (committed if committed is not None else (low or 0)))
    return {"topic": tp[0], "partition": tp[1], "committed": committed, "end": high, "lag": lag}


@dataclass
class TableReading:
    """The trades table: snapshot and file counts, last commit per consumer group, newest trade per exchange."""

    name: str
    snapshots: int
    files: int | None
    records: int | None
    last_commit: dict[str, _dt.datetime]  # group -> time of its newest snapshot
    newest_trade: dict[str, _dt.datetime]  # exchange -> newest trade time


def read_table(settings: Settings) -> TableReading:
    """Read the table's snapshots and the newest trade per exchange (TableNotFound when it does not exist)."""
    from k2cli.lake.query import TradesLake

    lake = TradesLake.open(settings)
    try:
        snaps = lake.snapshots()
        last_commit: dict[str, _dt.datetime] = {}
        for snap in snaps:  # newest first
            group = str(snap.get("consumer") or "").split("/", 1)[0]
            if group and group not in last_commit:
                last_commit[group] = snap["time"]
        newest: dict[str, _dt.datetime] = {}
        for row in lake.freshness().rows():
            exchange, moment = row["exchange"], row["newest_trade"]
            if exchange not in newest or moment > newest[exchange]:
                newest[exchange] = moment
    finally:
        lake.close()
    current = snaps[0] if snaps else {}
    return TableReading(settings.table, len(snaps), current.get("total_files"), current.get("total_records"),
                        last_commit, newest)


def read_dlq(settings: Settings) -> dict[str, Any]:
    """Dead-letter entries by origin and by error type (the `k2 dlq stats` engine)."""
    from k2cli.reliability.dlq_ops import stats

    found = stats(settings.dlq_path)
    return {"directory": found["directory"], "entries": found["entries"], "by_origin": found["by_origin"],
            "by_error_type": found["by_error_type"], "newest": found["newest"]}


def read_services() -> list[dict[str, Any]]:
    """Each local stack service's health (the `k2 stack status` engine)."""
    from k2cli.stack.manager import Stack

    return [{"name": s.name, "healthy": s.healthy, "detail": s.detail} for s in Stack.from_settings().status()]


def age_s(moment: _dt.datetime | None, now: float | None = None) -> float | None:
    """Seconds from a moment to now (None for None)."""
    if moment is None:
        return None
    # a commit can land between taking `now` and reading the snapshot: never a negative age
    return max(0.0, round((now if now is not None else time.time()) - moment.timestamp(), 1))

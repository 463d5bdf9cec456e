"""`k2 status`'s engine: read every part of the pipeline once and judge each with the checklists' statuses.

A stream or consumer named by the operator must be running; one not named fails only when it ran within the
window and is down now (so a probe catches a stopped process, while an exchange never streamed is not an error).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from k2cli.errors import described
from k2cli.observe import status_sources as src
from k2cli.settings import Settings
from k2cli.timespec import iso
from k2cli.verdict import Status, exit_code, worst


@dataclass
class Part:
    """One judged line of the screen: what it is, its status, why, and its figures."""

    kind: str  # service, stream, consumer, group, table, dlq
    name: str
    status: Status
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "status": self.status.value, "detail": self.detail,
                **self.figures}


@dataclass
class Options:
    """What to look at and the limits to judge against."""

    streams: tuple[str, ...] = ()  # named: only these, and each must be up
    groups: tuple[str, ...] = ()  # named: only these, and each must have members
    window_s: int = 600
    stale_after_s: float = 60.0
    max_lag: int | None = None
    services: bool = True


@dataclass
class PipelineStatus:
    """Every part's reading and the verdict."""

    time: float
    parts: list[Part]

    @property
    def overall(self) -> Status:
        return worst(p.status for p in self.parts)

    @property
    def exit_code(self) -> int:
        return exit_code(self.overall)

    def of(self, kind: str) -> list[Part]:
        return [p for p in self.parts if p.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        from datetime import UTC, datetime

        def one(kind: str) -> dict[str, Any] | None:
            found = self.of(kind)
            return found[0].to_dict() if found else None

        return {
            "time": iso(datetime.fromtimestamp(self.time, UTC)), "status": self.overall.value,
            "exit_code": self.exit_code, "services": [p.to_dict() for p in self.of("service")],
            "streams": [p.to_dict() for p in self.of("stream")], "consumer": one("consumer"),
            "groups": [p.to_dict() for p in self.of("group")], "table": one("table"), "dlq": one("dlq"),
            "problems": [f"{p.kind} {p.name}: {p.detail}" for p in self.parts
                         if p.status in (Status.WARN, Status.FAIL, Status.ERROR)],
        }


def judge_target(reading: src.TargetReading, named: bool, window_s: int) -> tuple[Status, str]:
    """Up: PASS. Down: FAIL when named or seen up within the window, else SKIP (not running)."""
    if reading.up:
        return Status.PASS, "up"
    if named:
        return Status.FAIL, "down (named with --stream)" if reading.job != "k2-consumer" else "down"
    if reading.seen_up:
        return Status.FAIL, f"down (was up within the last {window_s}s)"
    return Status.SKIP, "not running"


def judge_stream(reading: src.TargetReading, named: bool, opts: Options) -> tuple[Status, str]:
    """A running stream whose last message is older than stale_after_s is a warning."""
    status, detail = judge_target(reading, named, opts.window_s)
    age = reading.figures.get("last_message_age_s")
    if status == Status.PASS and age is not None and age > opts.stale_after_s:
        return Status.WARN, f"up, but no message for {age:.0f}s"
    return status, detail


def judge_group(reading: src.GroupReading, named: bool, opts: Options) -> tuple[Status, str]:
    """Members and lag: a named group without members fails; lag above max_lag warns."""
    lag = sum(p["lag"] or 0 for p in reading.partitions)
    if reading.members == 0:
        if named:
            return Status.FAIL, f"no members (state {reading.state})"
        return Status.SKIP, f"no members (state {reading.state})"
    if opts.max_lag is not None and lag > opts.max_lag:
        return Status.WARN, f"{reading.members} members, lag {lag} > {opts.max_lag}"
    return Status.PASS, f"{reading.members} members, lag {lag}"


def judge_breaker(reading: src.TargetReading, status: Status, detail: str) -> tuple[Status, str]:
    """An open Iceberg breaker fails, a half-open one warns."""
    breaker = reading.figures.get("breaker")
    if reading.up and breaker == "open":
        return Status.FAIL, "up, Iceberg write breaker open"
    if reading.up and breaker == "half-open":
        return Status.WARN, "up, Iceberg write breaker half-open"
    return status, detail


def collect(settings: Settings, opts: Options) -> PipelineStatus:
    """Read and judge every part; a part that cannot be read is ERROR, and the others are still read."""
    now = time.time()
    parts = _services() if opts.services else []
    parts += _streams(settings, opts)
    table, table_part = _table(settings, now)
    parts += _groups(settings, opts, table, now)
    parts += [table_part, _dlq(settings)]
    return PipelineStatus(now, parts)


def _services() -> list[Part]:
    try:
        found = src.read_services()
    except Exception as exc:  # the stack's own probes: whatever breaks, the rest of the screen still shows
        return [Part("service", "stack", Status.ERROR, described(exc))]
    return [Part("service", s["name"], Status.PASS if s["healthy"] else Status.FAIL, s["detail"]) for s in found]


def _streams(settings: Settings, opts: Options) -> list[Part]:
    """One part per stream (the named ones, else every registered exchange) and one for the consumer process."""
    from k2cli.errors import K2Error
    from k2cli.exchanges import registry
    from k2cli.observe.prometheus_api import Prometheus

    prom = Prometheus(settings.prometheus_url)
    parts = []
    try:
        for d in registry.all():
            if opts.streams and d.name not in opts.streams:
                continue
            try:
                reading = src.read_stream(prom, d.name, d.scrape_job, opts.window_s)
            except K2Error as exc:
                parts.append(Part("stream", d.name, Status.ERROR, str(exc)))
                continue
            status, detail = judge_stream(reading, bool(opts.streams), opts)
            parts.append(Part("stream", d.name, status, detail, {"up": reading.up, **reading.figures}))
        try:
            proc = src.read_consumer_process(prom, opts.window_s)
        except K2Error as exc:
            return [*parts, Part("consumer", "k2-consumer", Status.ERROR, str(exc))]
    finally:
        prom.close()
    status, detail = judge_target(proc, False, opts.window_s)
    if opts.groups and status == Status.FAIL:  # named groups: their members are the judge, not one scrape target
        status = Status.SKIP
    status, detail = judge_breaker(proc, status, detail)
    return [*parts, Part("consumer", proc.job, status, detail, {"up": proc.up, **proc.figures})]


def _groups(settings: Settings, opts: Options, table: src.TableReading | None, now: float) -> list[Part]:
    from k2cli.errors import K2Error

    parts = []
    for group in opts.groups or (settings.consumer_group,):
        try:
            reading = src.read_group(settings, group)
        except K2Error as exc:
            parts.append(Part("group", group, Status.ERROR, str(exc)))
            continue
        status, detail = judge_group(reading, bool(opts.groups), opts)
        last = table.last_commit.get(group) if table is not None else None
        parts.append(Part("group", group, status, detail, {
            "state": reading.state, "members": reading.members,
            "lag": sum(p["lag"] or 0 for p in reading.partitions), "partitions": reading.partitions,
            "last_commit": last, "last_commit_age_s": src.age_s(last, now)}))
    return parts


def _table(settings: Settings, now: float) -> tuple[src.TableReading | None, Part]:
    from k2cli.errors import K2Error
    from k2cli.lake.query import TableNotFound

    try:
        found = src.read_table(settings)
    except TableNotFound as exc:
        return None, Part("table", settings.table, Status.WARN, str(exc))
    except K2Error as exc:
        return None, Part("table", settings.table, Status.ERROR, str(exc))
    return found, Part("table", found.name, Status.PASS, f"{found.snapshots} snapshots", {
        "snapshots": found.snapshots, "files": found.files, "records": found.records,
        "newest_trade": found.newest_trade,
        "newest_trade_age_s": {ex: src.age_s(t, now) for ex, t in found.newest_trade.items()}})


def _dlq(settings: Settings) -> Part:
    try:
        found = src.read_dlq(settings)
    except OSError as exc:
        return Part("dlq", str(settings.dlq_path), Status.ERROR, described(exc))
    return Part("dlq", found.pop("directory"), Status.PASS, f"{found['entries']} entries", found)

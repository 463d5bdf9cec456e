"""The soak's files: the memory profile (a JSON array, one sample per interval) and the run record.

The profile is a top-level array so the seeds' own commands work on it unchanged, e.g.
`jq '[.[] | .rss_mb] | add / length' <exchange>_soak_memory_profile.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from k2cli.errors import K2Error

PROFILE_SUFFIX = "_soak_memory_profile.json"
RUN_SUFFIX = "_soak_run.json"
REPORT_SUFFIX = "_soak_test_report.txt"
CHART_SUFFIX = "_soak_chart.html"
SVG_SUFFIX = "_soak_chart.svg"
PNG_SUFFIX = "_soak_chart.png"
STREAM_LOG_SUFFIX = "_soak_stream.log"
CONSUMER_LOG_SUFFIX = "_soak_consumer.log"

MB = 1024 * 1024

# run statuses
RUNNING = "running"
COMPLETED = "completed"  # ran for the whole planned duration
INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: partial
CRASHED = "crashed"  # a child exited on its own
ABORTED = "aborted"  # stopped early by the hard RSS limit
NOT_RUN = "could_not_run"  # a child never became ready


class SoakFilesError(K2Error):
    """A soak directory lacks its files or they cannot be read."""

    exit_code = 3


@dataclass
class ConsumerSample:
    """What the consumer child looked like at one sampling instant."""

    rss_bytes: int
    vms_bytes: int
    rss_mb: float
    consumed: float | None = None
    written: float | None = None
    rate_msg_s: float | None = None
    lag: float | None = None
    dlq_entries: float | None = None
    breaker_state: float | None = None
    scrape_error: str | None = None


@dataclass
class Sample:
    """One sampling instant of the stream child (and the consumer child, if soaked)."""

    timestamp: float  # epoch seconds
    elapsed_s: float  # since the soak clock started (the child was ready)
    rss_bytes: int
    vms_bytes: int
    rss_mb: float
    vms_mb: float
    messages: float | None = None  # messages received since the soak clock started
    rate_msg_s: float | None = None  # over the interval that ends here
    reconnects: dict[str, float] = field(default_factory=dict)  # by reason, since the start
    drops: float | None = None  # reconnects that were not scheduled rotations
    rotations: float | None = None
    pings: float | None = None
    pong_timeouts: float | None = None
    integrity_errors: float | None = None
    leak_score: float | None = None  # computed by the soak over the post-warm-up samples so far
    reported_leak_score: float | None = None  # the child's own gauge, when it exports one
    scrape_error: str | None = None
    consumer: ConsumerSample | None = None

    def to_dict(self) -> dict[str, Any]:
        """The sample as plain JSON values."""
        data = asdict(self)
        if self.consumer is None:
            data.pop("consumer")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """A sample read back from the profile (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        consumer = values.get("consumer")
        if isinstance(consumer, dict):
            ck = {f.name for f in fields(ConsumerSample)}
            values["consumer"] = ConsumerSample(**{k: v for k, v in consumer.items() if k in ck})
        return cls(**values)


@dataclass
class RunRecord:
    """Everything about a soak run except its samples."""

    exchange: str
    url: str
    planned_duration_s: float
    sample_interval_s: float
    warmup_s: float
    thresholds: dict[str, float]
    started_at: float = 0.0  # epoch seconds when the soak clock started
    ended_at: float | None = None
    status: str = RUNNING
    end_reason: str = ""
    stream_command: list[str] = field(default_factory=list)
    consumer_command: list[str] = field(default_factory=list)
    stream_pid: int | None = None
    consumer_pid: int | None = None
    stream_exit: int | None = None
    consumer_exit: int | None = None
    log_tail: list[str] = field(default_factory=list)  # last lines of the child that crashed or never started
    baseline: dict[str, Any] = field(default_factory=dict)  # the child's counters when the clock started
    scrape_failures: int = 0
    host: str = ""
    k2_version: str = ""

    @property
    def partial(self) -> bool:
        """True when the run did not last its planned duration."""
        return self.status != COMPLETED

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """A record read back from its file (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def path_for(directory: Path, exchange: str, suffix: str) -> Path:
    """The path of one of a soak's files."""
    return Path(directory) / f"{exchange}{suffix}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _profile_text(lines: list[str]) -> str:
    """A JSON array with one sample per line: compact, yet `grep`/`tail` friendly."""
    return "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"


def write_profile(directory: Path, exchange: str, samples: list[Sample]) -> Path:
    """Write the profile (atomically, so a reader never sees half a file)."""
    path = path_for(directory, exchange, PROFILE_SUFFIX)
    _write_atomic(path, _profile_text([json.dumps(s.to_dict()) for s in samples]))
    return path


class ProfileWriter:
    """Appends samples to the profile, serialising each one once (the file is rewritten whole, atomically)."""

    def __init__(self, directory: Path, exchange: str) -> None:
        self.path = path_for(directory, exchange, PROFILE_SUFFIX)
        self._lines: list[str] = []

    def append(self, sample: Sample) -> None:
        """Add one sample and rewrite the file."""
        self._lines.append(json.dumps(sample.to_dict()))
        self.flush()

    def flush(self) -> None:
        """Write the file as it stands."""
        _write_atomic(self.path, _profile_text(self._lines))


def write_run(directory: Path, record: RunRecord) -> Path:
    """Write the run record atomically."""
    path = path_for(directory, record.exchange, RUN_SUFFIX)
    _write_atomic(path, json.dumps(record.to_dict(), indent=2) + "\n")
    return path


def find_exchange(directory: Path) -> str:
    """The exchange whose run record is in a directory (exactly one must be)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SoakFilesError(f"{directory} is not a directory")
    found = sorted(p.name[: -len(RUN_SUFFIX)] for p in directory.glob(f"*{RUN_SUFFIX}"))
    if not found:
        raise SoakFilesError(f"no *{RUN_SUFFIX} in {directory}: not a soak output directory")
    if len(found) > 1:
        raise SoakFilesError(f"{directory} holds soak runs of several exchanges ({', '.join(found)}); "
                             "pass --exchange")
    return found[0]


def load(directory: Path, exchange: str | None = None) -> tuple[RunRecord, list[Sample]]:
    """Read a soak's run record and profile back from its directory."""
    directory = Path(directory)
    exchange = exchange or find_exchange(directory)
    run_path = path_for(directory, exchange, RUN_SUFFIX)
    profile_path = path_for(directory, exchange, PROFILE_SUFFIX)
    try:
        record = RunRecord.from_dict(json.loads(run_path.read_text()))
    except FileNotFoundError:
        raise SoakFilesError(f"{run_path} not found: not a soak output directory") from None
    except (OSError, ValueError, TypeError) as exc:
        raise SoakFilesError(f"cannot read {run_path}: {exc}") from None
    try:
        raw = json.loads(profile_path.read_text()) if profile_path.exists() else []
        if not isinstance(raw, list):
            raise ValueError("expected a JSON array of samples")
        samples = [Sample.from_dict(item) for item in raw]
    except (OSError, ValueError, TypeError) as exc:
        raise SoakFilesError(f"cannot read {profile_path}: {exc}") from None
    return record, samples

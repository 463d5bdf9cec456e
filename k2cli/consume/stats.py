"""What a `k2 consume` run did: the statistics block."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConsumeStats:
    """What a run did; the statistics block."""

    consumed: int = 0
    written: int = 0
    dlq_entries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    sequence_gaps: int = 0
    sequence_events: dict[str, int] = field(default_factory=dict)
    snapshots: int = 0
    conflicts: int = 0
    snapshots_expired: int = 0
    breaker_opened: int = 0
    started: float = 0.0
    ended: float = 0.0
    startup_seconds: float = 0.0
    stopped_by: str = ""
    instance_id: str = ""
    commit_seconds: list[float] = field(default_factory=list)
    commit_retries: int = 0
    first_record: float = 0.0
    unwritten: int = 0
    duplicates: int = 0
    rejoins: int = 0

    @property
    def error_count(self) -> int:
        """All errors: records dead-lettered plus failed operations (retried writes, Kafka errors)."""
        return sum(self.errors.values())

    @property
    def duration(self) -> float:
        """Seconds from subscribing to the end of the run (or now)."""
        end = self.ended or time.monotonic()
        return max(0.0, end - self.started) if self.started else 0.0

    @property
    def throughput(self) -> float:
        """Records consumed per second."""
        return self.consumed / self.duration if self.duration > 0 else 0.0

    def add_error(self, error_type: str, n: int = 1) -> None:
        """Count n errors of a type."""
        self.errors[error_type] = self.errors.get(error_type, 0) + n

    def to_dict(self) -> dict[str, Any]:
        """The statistics as plain JSON values."""
        lat = self.commit_seconds
        return {
            "messages_consumed": self.consumed,
            "messages_written": self.written,
            "errors": self.error_count,
            "errors_by_type": dict(sorted(self.errors.items())),
            "sequence_gaps": self.sequence_gaps,
            "sequence_events": dict(sorted(self.sequence_events.items())),
            "duration_seconds": round(self.duration, 3),
            "throughput_msg_per_sec": round(self.throughput, 2),
            "dlq_entries": self.dlq_entries,
            "duplicates_skipped": self.duplicates,
            "snapshots_committed": self.snapshots,
            "snapshots_expired": self.snapshots_expired,
            "commit_conflicts": self.conflicts,
            "commit_retries": self.commit_retries,
            "breaker_opened": self.breaker_opened,
            "kafka_rejoins": self.rejoins,
            "commit_latency_ms": {
                "median": round(statistics.median(lat) * 1000, 1) if lat else None,
                "max": round(max(lat) * 1000, 1) if lat else None,
            },
            "startup_seconds": round(self.startup_seconds, 3),
            "first_record_seconds": round(self.first_record - self.started, 3) if self.first_record else None,
            "stopped_by": self.stopped_by,
            "instance_id": self.instance_id,
            "unwritten_records": self.unwritten,
        }

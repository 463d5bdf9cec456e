"""The statistics of one `k2 stream` run: the live panel's figures and the final report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["running", "completed", "interrupted", "failed"]
StoppedBy = Literal["", "max_messages", "duration", "signal", "error"]


@dataclass
class StreamSummary:
    """The final (or current) statistics of a run."""

    exchange: str
    topic: str
    url: str
    symbols: list[str]
    status: Status = "running"
    stopped_by: StoppedBy = ""
    signal: str = ""  # SIGINT or SIGTERM when a signal stopped the run
    duration_seconds: float = 0.0
    frames: int = 0
    trades_received: int = 0
    trades_accepted: int = 0
    produced: int = 0
    duplicates_dropped: int = 0
    frame_errors: dict[str, int] = field(default_factory=dict)
    produce_errors: dict[str, int] = field(default_factory=dict)
    undelivered: int = 0
    buffered: int = 0
    reconnects: dict[str, int] = field(default_factory=dict)
    rotations: dict[str, int] = field(default_factory=dict)
    connection_failures: int = 0
    pings_sent: int = 0
    pong_timeouts: int = 0
    backpressure_seconds: float = 0.0
    kafka_down: bool = False
    connected: bool = False
    dlq_entries: int = 0
    dlq_trades: int = 0  # of dlq_entries, those keeping a trade's record (refused, or unacknowledged at the stop)
    dlq_dir: str = ""
    rss_bytes: int = 0
    leak_score: float = 0.0
    trades_per_second: float = 0.0
    backfill: bool = False  # gaps are filled from the exchange's REST API (else only counted)
    resumed_from: dict[str, int] = field(default_factory=dict)  # symbol -> last trade id found in the topic
    resumed_at: dict[str, int] = field(default_factory=dict)  # feeds without ids: symbol -> newest trade time µs
    gaps_seen: int = 0
    gaps_filled: int = 0
    gaps_unfilled: int = 0
    gap_ids_absent: int = 0  # ids inside filled gaps the exchange has no trade for (ids it skipped)
    trades_backfilled: int = 0
    backfill_requests: dict[str, int] = field(default_factory=dict)  # REST calls by outcome (200, 429, 5xx, ...)
    unfilled_gaps: list[dict[str, Any]] = field(default_factory=list)  # the first 100, with their numbers
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @property
    def not_delivered(self) -> int:
        """Trades Kafka refused during the run or had not acknowledged when it stopped."""
        return self.undelivered + sum(self.produce_errors.values())

    def not_delivered_line(self) -> str:
        """The run's last line when trades were not delivered: how many, and how many the DLQ keeps ("" if none)."""
        lost = self.not_delivered
        if not lost:
            return ""
        where = f"the dead-letter directory {self.dlq_dir}"
        many = lost > 1
        if self.dlq_trades >= lost:
            kept = f"all {lost} are kept in {where}" if many else f"it is kept in {where}"
        else:
            kept = f"{self.dlq_trades} are kept in {where}, {lost - self.dlq_trades} could not be kept"
        them = "them" if many else "it"
        return (f"{lost} trade{'s were' if many else ' was'} not delivered to Kafka; {kept}: "
                f"`k2 dlq replay` produces {them} once Kafka can take {them}")

    def note_stop(self, why: StoppedBy) -> None:
        """Record what stopped the run; the first reason wins."""
        if not self.stopped_by:
            self.stopped_by = why

    def finish(self, error: BaseException | None) -> None:
        """Set the final status: failed (with the error), interrupted by a signal, or completed."""
        if error is not None:
            self.status = "failed"
            self.stopped_by = "error"
            self.error = str(error)
        elif self.stopped_by == "signal":
            self.status = "interrupted"
        else:
            self.status = "completed"

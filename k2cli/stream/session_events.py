"""What the stream does with the session's events: count and log them, and let the dedup judge rotations."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from k2cli.exchanges.session import Connection, SessionHandler
from k2cli.observe.metrics import StreamMetrics
from k2cli.stream.dedup import Deduplicator
from k2cli.stream.summary import StreamSummary

log = logging.getLogger("k2.stream")


class SessionEvents(SessionHandler):
    """The session's event callbacks for a stream: metrics, summary counts, and rotation handover."""

    def __init__(self, metrics: StreamMetrics, summary: StreamSummary, dedup: Deduplicator) -> None:
        self.metrics = metrics
        self.summary = summary
        self.dedup = dedup
        self.closing: Callable[[int, bool], None] | None = None  # (conn id, stream stopping) before dedup forgets it

    def connected(self, conn: Connection) -> None:
        self.metrics.connection_status.set(1)

    def reconnecting(self, reason: str) -> None:
        self.metrics.reconnects.labels(reason).inc()
        self.summary.reconnects[reason] = self.summary.reconnects.get(reason, 0) + 1
        log.warning("reconnecting (%s)", reason)

    def attempt_failed(self, url: str, error_type: str, detail: str, delay: float) -> None:
        self.metrics.connection_errors.labels(error_type).inc()
        self.summary.connection_failures += 1

    def rotated(self, reason: str, overlap: float, waited: list[str]) -> None:
        self.metrics.rotations.labels(reason).inc()
        self.summary.rotations[reason] = self.summary.rotations.get(reason, 0) + 1

    def ping_sent(self, conn: Connection) -> None:
        self.metrics.pings_sent.inc()
        self.summary.pings_sent += 1

    def pong(self, conn: Connection, latency: float) -> None:
        self.metrics.last_pong.set(time.time())

    def pong_timeout(self, conn: Connection) -> None:
        self.metrics.pong_timeouts.inc()
        self.summary.pong_timeouts += 1

    def handover_begin(self, old: Connection, new: Connection) -> None:
        self.dedup.begin_handover(old.id, new.id)

    def handover_ready(self, old: Connection, new: Connection, quiet_ok: bool) -> tuple[bool, list[str]]:
        return self.dedup.handover_ready(old.id, new.id, quiet_ok)

    def handover_end(self, old: Connection, new: Connection) -> None:
        self.dedup.end_handover(old.id, new.id)

    def connection_closed(self, conn: Connection) -> None:
        if self.closing is not None:
            self.closing(conn.id, conn.close_reason == "shutdown")
        self.dedup.forget(conn.id)

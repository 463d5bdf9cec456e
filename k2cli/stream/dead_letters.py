"""The stream's dead-letter sink: bad frames, records Kafka refused and records Kafka had not acknowledged
when the stream stopped, kept for inspection and (the records) for `k2 dlq replay`.

Entries are buffered on the event loop (the hot path only appends) and written durably by a flusher
every half second, in a thread; a flood of bad frames is written at once instead of held in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from k2cli.exchanges.session import Connection
from k2cli.reliability.dlq import DeadLetterQueue, DLQEntry
from k2cli.stream.kafka_sink import Stage

log = logging.getLogger("k2.stream")

FLUSH_INTERVAL = 0.5  # seconds between background writes
MAX_BUFFERED = 10_000  # entries held before a synchronous write
UNACKNOWLEDGED = "unacknowledged_at_shutdown"  # error_type of the records Kafka had not acknowledged at the stop
_STAGE_REASONS: dict[Stage, str] = {
    "buffer": "never handed to the Kafka client (held in the stream's buffer while Kafka was slow or down)",
    "queue": "queued in the Kafka client, never sent",
    "in_flight": ("sent, but no acknowledgement came: Kafka may have stored it, so a replay can put it in the "
                  "topic twice (k2 consume writes each trade id once)"),
}


def unacknowledged_entry(exchange: str, topic: str, key: bytes | None, value: bytes | None,
                         stage: Stage) -> DLQEntry:
    """The replayable entry of a record Kafka had not acknowledged when the stream stopped."""
    return DLQEntry(error=f"Kafka had not acknowledged the record when the stream stopped: {_STAGE_REASONS[stage]}",
                    error_type=UNACKNOWLEDGED, origin="stream", transient=True, value=value,
                    source={"exchange": exchange, "topic": topic, "stage": stage,
                            "key": key.decode("utf-8", "replace") if key else None})


class EntryWriter(Protocol):
    """Where entries go: DeadLetterQueue, or a stand-in in tests."""

    def write(self, entries: Iterable[DLQEntry]) -> Any: ...


class DeadLetterSink:
    """Buffers dead-letter entries and writes them off the event loop.

    `written(entries, trades)` counts what is on disk: all entries, and those that keep a trade's record."""

    def __init__(self, exchange: str, topic: str, written: Callable[[int, int], None]) -> None:
        self.exchange = exchange
        self.topic = topic
        self.writer: EntryWriter | None = None  # set by open()
        self.buffer: list[DLQEntry] = []
        self._written = written
        self._writing: asyncio.Future[None] | None = None

    def open(self, directory: Path) -> None:
        """Start writing to dead-letter files in `directory` (checked writable by the caller)."""
        self.writer = DeadLetterQueue(directory, origin="stream")

    def bad_frame(self, conn: Connection, raw: str | bytes, error_type: str, reason: str) -> None:
        """Keep a frame that could not be parsed, exactly as received."""
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")
        self.buffer.append(DLQEntry(error=reason, error_type=error_type, origin="stream", raw_frame=text,
                                    source={"exchange": self.exchange, "url": conn.url, "connection": conn.id,
                                            "topic": self.topic}))
        if len(self.buffer) >= MAX_BUFFERED:  # a flood of bad frames: write now rather than hold them in memory
            batch, self.buffer = self.buffer, []
            self._write(batch)

    def delivery_failed(self, key: bytes | None, value: bytes | None, message: str) -> None:
        """Keep a record Kafka refused (its Avro value, replayable)."""
        self.buffer.append(DLQEntry(error=f"Kafka delivery failed: {message}", error_type="delivery_failed",
                                    origin="stream", transient=True, value=value,
                                    source={"exchange": self.exchange, "topic": self.topic,
                                            "key": key.decode("utf-8", "replace") if key else None}))

    def unacknowledged(self, key: bytes | None, value: bytes | None, stage: Stage) -> None:
        """Keep a record Kafka had not acknowledged when the stream stopped (its Avro value, replayable)."""
        self.buffer.append(unacknowledged_entry(self.exchange, self.topic, key, value, stage))
        if len(self.buffer) >= MAX_BUFFERED:  # a full producer buffer taken back: write as we go, bounded memory
            batch, self.buffer = self.buffer, []
            self._write(batch)

    def _write(self, batch: list[DLQEntry]) -> None:
        assert self.writer is not None, "open() first"
        self.writer.write(batch)
        self._written(len(batch), _trades(batch))

    async def _write_in_thread(self, batch: list[DLQEntry]) -> None:
        assert self.writer is not None, "open() first"
        await asyncio.to_thread(self.writer.write, batch)
        self._written(len(batch), _trades(batch))  # on the event loop, like every other count

    def write_now(self) -> None:
        """Write everything buffered, on this thread (for callers without an event loop running)."""
        if self.buffer:
            batch, self.buffer = self.buffer, []
            self._write(batch)

    async def flush(self) -> None:
        """Write everything buffered; also awaits a write the flusher began before it was cancelled."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            try:
                await writing
            except Exception as exc:
                log.error("writing dead-letter entries failed: %s", exc)
        if self.buffer:
            batch, self.buffer = self.buffer, []
            # shielded, and counted by the same task: cancelling the flusher at the stop cannot leave entries
            # written but not counted (the shutdown's flush awaits the write through _writing)
            self._writing = writing = asyncio.ensure_future(self._write_in_thread(batch))
            await asyncio.shield(writing)
            self._writing = None

    async def run(self) -> None:
        """The flusher: write the buffer every FLUSH_INTERVAL seconds until cancelled."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()


def _trades(batch: list[DLQEntry]) -> int:
    """The entries that keep a trade's Kafka record (a bad frame keeps only the frame)."""
    return sum(1 for entry in batch if isinstance(entry, DLQEntry) and entry.value is not None)

"""The stream's dead-letter sink: bad frames and records Kafka refused, kept for inspection and replay.

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

log = logging.getLogger("k2.stream")

FLUSH_INTERVAL = 0.5  # seconds between background writes
MAX_BUFFERED = 10_000  # entries held before a synchronous write


class EntryWriter(Protocol):
    """Where entries go: DeadLetterQueue, or a stand-in in tests."""

    def write(self, entries: Iterable[DLQEntry]) -> Any: ...


class DeadLetterSink:
    """Buffers dead-letter entries and writes them off the event loop; `written(n)` counts what is on disk."""

    def __init__(self, exchange: str, topic: str, written: Callable[[int], None]) -> None:
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

    def _write(self, batch: list[DLQEntry]) -> None:
        assert self.writer is not None, "open() first"
        self.writer.write(batch)
        self._written(len(batch))

    async def _write_in_thread(self, batch: list[DLQEntry]) -> None:
        assert self.writer is not None, "open() first"
        await asyncio.to_thread(self.writer.write, batch)
        self._written(len(batch))  # on the event loop, like every other count

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

"""The dead-letter queue: JSONL files of failed records, written durably before offsets move on."""

from __future__ import annotations

import base64
import datetime as _dt
import fcntl
import json
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2cli.errors import K2Error
from k2cli.jsonutil import dumps

ROTATE_BYTES = 100 * 1024 * 1024
ORIGINS = ("consume", "stream")


class DLQWriteError(K2Error):
    """A dead-letter entry could not be made durable (disk full, read-only directory)."""

    exit_code = 3


@dataclass
class DLQEntry:
    """One failed record with everything needed to understand and replay it."""

    error: str
    error_type: str
    origin: str  # "consume" | "stream"
    transient: bool = False
    source: dict[str, Any] = field(default_factory=dict)  # topic/partition/offset/key/timestamp_ms or exchange/url
    value: bytes | None = None  # original Kafka value bytes, exactly
    raw_frame: str | None = None  # original exchange frame (stream side)
    record: dict[str, Any] | None = None  # decoded record where there is one
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat())
    file: str | None = None  # where it was read from (not written)

    def to_json(self) -> str:
        """The JSONL line of this entry."""
        return dumps({
            "id": self.id,
            "timestamp": self.timestamp,
            "origin": self.origin,
            "error": self.error,
            "error_type": self.error_type,
            "transient": self.transient,
            "source": self.source,
            "value_b64": base64.b64encode(self.value).decode("ascii") if self.value is not None else None,
            "raw_frame": self.raw_frame,
            "record": self.record,
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str, file: str | None = None) -> DLQEntry:
        """Parse one JSONL line."""
        data = json.loads(line)
        value = data.get("value_b64")
        return cls(
            id=data["id"], timestamp=data["timestamp"], origin=data.get("origin", "consume"),
            error=data.get("error", ""), error_type=data.get("error_type", "unknown"),
            transient=bool(data.get("transient", False)), source=data.get("source") or {},
            value=base64.b64decode(value) if value is not None else None,
            raw_frame=data.get("raw_frame"), record=data.get("record"), file=file,
        )

    @property
    def time(self) -> _dt.datetime:
        """The entry's UTC time."""
        return _dt.datetime.fromisoformat(self.timestamp)


class DeadLetterQueue:
    """Appends entries to rotating JSONL files; `write` returns only once they are on disk (fsync)."""

    def __init__(self, directory: Path, origin: str, rotate_bytes: int = ROTATE_BYTES) -> None:
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}")
        self.directory = Path(directory)
        self.origin = origin
        self.rotate_bytes = rotate_bytes
        self.written = 0
        self._lock = threading.Lock()
        self._path: Path | None = None

    def _target(self) -> Path:
        if self._path is None or not self._path.exists() or self._path.stat().st_size >= self.rotate_bytes:
            stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%f")
            self._path = self.directory / f"dlq-{self.origin}-{stamp}-{os.getpid()}.jsonl"
        return self._path

    def write(self, entries: Iterable[DLQEntry]) -> int:
        """Append entries durably (flush + fsync) and return how many were written."""
        lines = [e.to_json() + "\n" for e in entries]
        if not lines:
            return 0
        with self._lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                path = self._target()
                fd = _open_locked(path)
                try:
                    write_durably(fd, "".join(lines).encode("utf-8"))
                finally:
                    os.close(fd)
            except OSError as exc:
                raise DLQWriteError(f"dead-letter queue {self.directory} is not writable: {exc.strerror}",
                                    setting="K2_DLQ_DIR") from None
            self.written += len(lines)
        return len(lines)


def write_durably(fd: int, data: bytes) -> None:
    """Write all of `data` to an open descriptor (os.write may write less) and fsync it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def _open_locked(path: Path) -> int:
    """Open a DLQ file for appending under an exclusive flock, on the inode the path names now.

    `k2 dlq purge` rewrites files under the same lock (new file renamed over the old); a writer that waited
    for the lock would otherwise append to the replaced, unlinked inode and lose its lines.
    """
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass  # removed while we waited: open again (creates it)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def dlq_files(directory: Path) -> list[Path]:
    """The DLQ files in a directory, oldest first."""
    if not Path(directory).is_dir():
        return []
    return sorted(Path(directory).glob("dlq-*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))


def iter_entries(directory: Path) -> Iterator[DLQEntry]:
    """Every entry in the DLQ directory, oldest file first; unreadable lines are skipped."""
    for path in dlq_files(directory):
        with path.open("r", encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield DLQEntry.from_json(line, file=path.name)
                except (ValueError, KeyError):
                    continue

"""Dead-lettering a batch's poison records, each at most once (a re-read after a crash writes no second entry)."""

from __future__ import annotations

import logging
from pathlib import Path

from k2cli.consume.batch import Poison
from k2cli.reliability.dlq import DeadLetterQueue, DLQEntry, iter_entries

log = logging.getLogger("k2.consume")


class DlqIndex:
    """(topic, partition, offset) of records already dead-lettered, so a re-read never writes a second entry."""

    def __init__(self, dlq: DeadLetterQueue) -> None:
        self._dlq = dlq
        self._seen: set[tuple[str, int, int]] | None = None

    def _load(self) -> set[tuple[str, int, int]]:
        if self._seen is None:
            seen: set[tuple[str, int, int]] = set()
            for entry in iter_entries(self._dlq.directory):
                src = entry.source or {}
                if entry.origin == "consume" and "topic" in src and "offset" in src:
                    try:
                        seen.add((str(src["topic"]), int(src["partition"]), int(src["offset"])))
                    except (TypeError, ValueError, KeyError):
                        continue
            self._seen = seen
        return self._seen

    def fresh(self, poison: list[Poison]) -> list[Poison]:
        """The poison records not dead-lettered before."""
        seen = self._load()
        return [p for p in poison if (p.topic, p.partition, p.offset) not in seen]

    def add(self, poison: list[Poison]) -> None:
        """Remember records just dead-lettered."""
        self._load().update((p.topic, p.partition, p.offset) for p in poison)


class DeadLetters:
    """Writes poison records to the consumer's dead-letter queue (fsynced; DLQWriteError stops the consumer)."""

    def __init__(self, directory: Path, group: str, table: str) -> None:
        self._dlq = DeadLetterQueue(directory, origin="consume")
        self._index = DlqIndex(self._dlq)
        self._context = {"group": group, "table": table}

    def write(self, poison: list[Poison]) -> None:
        """Dead-letter the records not dead-lettered before, and log each."""
        fresh = self._index.fresh(poison)
        if fresh:
            entries = [DLQEntry(error=p.error, error_type=p.error_type, origin="consume", transient=False,
                                source={**p.source(), **self._context}, value=p.value, record=p.record)
                       for p in fresh]
            self._dlq.write(entries)
            self._index.add(fresh)
        for p in fresh:
            log.warning("dead-lettered %s[%d]@%d: %s: %s", p.topic, p.partition, p.offset, p.error_type, p.error)

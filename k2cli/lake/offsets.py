"""Kafka offsets kept in Iceberg snapshot summaries: the consumer's only source of truth for where to resume.

Summary keys written by `k2 consume` on every snapshot it commits (all values are strings):

- ``k2.offsets``: JSON ``{topic: {partition: next_offset}}`` for EVERY partition the table has ever seen,
  carried forward from the previous snapshot and updated with this commit's partitions. ``next_offset`` is the
  offset of the first record NOT yet in the table (Kafka's "committed offset" convention).
- ``k2.batch``: JSON ``{topic: {partition: [first_offset, next_offset]}}``: the offsets this commit covers.
- ``k2.commit-id``: a unique id (hex) of the commit, so a retry can tell whether its own commit landed.
- ``k2.records``: records consumed in this batch (written + dead-lettered); ``k2.dlq-records``: how many of
  them went to the dead-letter queue.
- ``k2.consumer``: ``group/instance`` of the consumer that committed.

Readers should take, per partition, the maximum ``next_offset`` over the current snapshot and its ancestors
(`offsets_from_summaries`); because every commit carries all partitions forward, the current snapshot alone
normally holds them all, so expiring older snapshots can never lose offsets. Snapshots committed by `k2 lake`
(compaction) copy ``k2.offsets`` and ``k2.dedup`` from the snapshot they replace and add ``k2.maintenance``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from k2cli.jsonutil import dumps

OFFSETS_KEY = "k2.offsets"
BATCH_KEY = "k2.batch"
COMMIT_ID_KEY = "k2.commit-id"
RECORDS_KEY = "k2.records"
DLQ_RECORDS_KEY = "k2.dlq-records"
CONSUMER_KEY = "k2.consumer"

TopicPartition = tuple[str, int]
Offsets = dict[TopicPartition, int]


def encode_offsets(offsets: Mapping[TopicPartition, int]) -> str:
    """Offsets as compact JSON {topic: {partition: next_offset}} with sorted keys (stable text)."""
    nested: dict[str, dict[str, int]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        nested.setdefault(topic, {})[str(partition)] = int(offset)
    return dumps(nested, separators=(",", ":"), sort_keys=True)


def decode_offsets(text: str | None) -> Offsets:
    """Parse `encode_offsets` output; malformed text gives {} (a summary k2 did not write)."""
    if not text:
        return {}
    try:
        nested = json.loads(text)
    except ValueError:
        return {}
    out: Offsets = {}
    if not isinstance(nested, dict):
        return out
    for topic, partitions in nested.items():
        if not isinstance(partitions, dict):
            continue
        for partition, offset in partitions.items():
            try:
                out[(str(topic), int(partition))] = int(offset)
            except (TypeError, ValueError):
                continue
    return out


def encode_ranges(ranges: Mapping[TopicPartition, tuple[int, int]]) -> str:
    """Batch ranges as JSON {topic: {partition: [first, next]}}."""
    nested: dict[str, dict[str, list[int]]] = {}
    for (topic, partition), (first, nxt) in sorted(ranges.items()):
        nested.setdefault(topic, {})[str(partition)] = [int(first), int(nxt)]
    return dumps(nested, separators=(",", ":"), sort_keys=True)


def decode_ranges(text: str | None) -> dict[TopicPartition, tuple[int, int]]:
    """Parse `encode_ranges` output ({} when absent or malformed)."""
    try:
        nested = json.loads(text) if text else {}
        return {(str(t), int(p)): (int(r[0]), int(r[1])) for t, parts in nested.items() for p, r in parts.items()}
    except (ValueError, TypeError, AttributeError, IndexError, KeyError):
        return {}


def merge_max(*maps: Mapping[TopicPartition, int]) -> Offsets:
    """Per partition, the largest offset found in any of the maps."""
    out: Offsets = {}
    for m in maps:
        for tp, offset in m.items():
            if offset > out.get(tp, -1):
                out[tp] = offset
    return out


def offsets_from_summaries(summaries: Iterable[Mapping[str, str] | None]) -> Offsets:
    """The resume offsets recorded in a chain of snapshot summaries (max per partition)."""
    return merge_max(*(decode_offsets(s.get(OFFSETS_KEY)) for s in summaries if s))


def advance(carried: Mapping[TopicPartition, int], batch_next: Mapping[TopicPartition, int]) -> Offsets:
    """The offsets a new snapshot records: everything carried forward, moved on by this batch (never back)."""
    return merge_max(carried, batch_next)

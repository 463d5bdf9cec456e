"""One consumer batch: Kafka messages decoded column-wise into an Arrow table, poison records set aside.

`Batch.add` takes messages in Kafka order, skips records it already has (a re-delivery after a seek) or of
partitions the consumer does not own, decodes the rest and tracks, per partition, the offsets the batch covers
(poison records included: their offsets are committed with the batch once their DLQ entries are durable).
`Batch.build` turns the decoded records into a pyarrow Table (v2 Arrow schema, decimals straight from the
unscaled integers, timestamps as µs), checks values column-wise and moves every invalid record, alone, to the
poison list. Nothing here talks to Iceberg or the DLQ.
"""

from __future__ import annotations

import io
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import Any

import fastavro

from k2cli import trade
from k2cli.consume.decode import InvalidValue, ValueDecoder
from k2cli.errors import ServiceUnavailable
from k2cli.kafka.serde import DecodeError
from k2cli.lake.offsets import TopicPartition

DECIMAL_LIMIT = 10 ** trade.PRECISION  # unscaled decimal(18,8) values must be below 10^18
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_from_be = partial(int.from_bytes, byteorder="big", signed=True)
_read = fastavro.schemaless_reader
_STRING_FIELDS = ("trade_id", "symbol", "exchange", "currency")


@dataclass
class Poison:
    """A record that can never be written: the original message and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int | None
    value: bytes | None
    error_type: str
    error: str
    record: dict[str, Any] | None = None

    def source(self) -> dict[str, Any]:
        """Where the record came from, for the DLQ entry."""
        key = self.key
        try:
            key_text = key.decode("utf-8") if key is not None else None
        except UnicodeDecodeError:
            key_text = None
        src: dict[str, Any] = {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                               "key": key_text, "timestamp_ms": self.timestamp_ms}
        if key is not None and key_text is None:
            src["key_b64"] = key
        return src


def _poison_of(msg: Any, error_type: str, error: str, record: dict[str, Any] | None = None) -> Poison:
    ts_type, ts = msg.timestamp()
    return Poison(msg.topic(), msg.partition(), msg.offset(), msg.key(), ts if ts_type else None, msg.value(),
                  error_type, error, record)


def readable_record(record: dict[str, Any]) -> dict[str, Any]:
    """A raw decoded record (unscaled decimal bytes) with exact Decimals, for DLQ entries."""
    out = dict(record)
    for name in trade.DECIMAL_FIELDS:
        value = out.get(name)
        if isinstance(value, bytes | bytearray):
            out[name] = Decimal(_from_be(value)).scaleb(-trade.SCALE)
    return out


@dataclass
class Built:
    """The result of `Batch.build`."""

    table: Any  # pyarrow.Table of the valid records
    poison: list[Poison]
    ranges: dict[TopicPartition, tuple[int, int]]
    records: int  # valid + poison
    exchanges: list[str] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    sequences: list[int | None] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    topics_written: dict[str, int] = field(default_factory=dict)


class Batch:
    """Accumulates one batch of decoded records."""

    def __init__(self, decoder: ValueDecoder, positions: dict[TopicPartition, int | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._decoder = decoder
        self._positions = positions  # owned partitions -> next offset expected (None: any); shared with the engine
        self._clock = clock
        self.started: float | None = None
        self._recs: list[dict[str, Any]] = []
        self._msgs: list[Any] = []
        self._tps: list[TopicPartition] = []
        self.poison: list[Poison] = []
        self.ranges: dict[TopicPartition, list[int]] = {}
        self.skipped = 0
        self._built: Built | None = None

    def __len__(self) -> int:
        return len(self._recs) + len(self.poison)

    def age(self) -> float:
        """Seconds since the first record of the batch arrived (0 when empty)."""
        return self._clock() - self.started if self.started is not None else 0.0

    def add(self, messages: list[Any]) -> int:
        """Decode messages into the batch; returns how many were taken (fewer only if the registry is unreachable)."""
        if self.started is None and messages:
            self.started = self._clock()
        self._built = None
        positions, ranges, by_header = self._positions, self.ranges, self._decoder.by_header
        recs_append, msgs_append, tps_append = self._recs.append, self._msgs.append, self._tps.append
        last_topic, last_part, tp, rng = None, None, None, None
        for i, msg in enumerate(messages):
            topic, part, offset = msg.topic(), msg.partition(), msg.offset()
            if part != last_part or topic != last_topic:
                last_topic, last_part = topic, part
                tp = (topic, part)
                rng = ranges.get(tp)
            if tp not in positions:
                self.skipped += 1  # not (or no longer) ours
                continue
            expected = positions[tp]
            if expected is not None and offset < expected:
                self.skipped += 1  # re-delivered after a seek: already in this batch or in the table
                continue
            positions[tp] = offset + 1
            if rng is None:
                rng = ranges[tp] = [offset, offset + 1]
            else:
                rng[1] = offset + 1
            value = msg.value()
            info = by_header.get(value[:5]) if value is not None else None
            if info is None:
                try:
                    info = self._decoder.writer_for(value)
                except DecodeError as exc:
                    self.poison.append(_poison_of(msg, exc.error_type, str(exc)))
                    continue
                except ServiceUnavailable:
                    positions[tp] = offset  # not taken: the caller retries from this message
                    rng[1] = offset
                    if rng[0] == rng[1]:
                        del ranges[tp]
                    return i
            buf = io.BytesIO(value)
            buf.seek(5)
            try:
                rec = _read(buf, info.writer, info.reader)
            except (EOFError, StopIteration):
                self.poison.append(_poison_of(msg, "truncated", f"Avro body ended early (schema id {info.schema_id})"))
                continue
            except Exception as exc:  # fastavro raises many types for corrupt input
                reason = f"Avro body does not match schema id {info.schema_id}: {exc.__class__.__name__}: {exc}"
                self.poison.append(_poison_of(msg, "invalid_record", reason))
                continue
            if buf.tell() != len(value):
                self.poison.append(_poison_of(msg, "invalid_record", f"{len(value) - buf.tell()} trailing bytes "
                                                                     f"after the record (schema id {info.schema_id})"))
                continue
            if info.scales is not None:
                try:
                    info.rescale(rec)
                except InvalidValue as exc:
                    self.poison.append(_poison_of(msg, "invalid_value", str(exc), readable_record(rec)))
                    continue
            recs_append(rec)
            msgs_append(msg)
            tps_append(tp)
        return len(messages)

    def drop(self, partitions: Iterable[TopicPartition]) -> int:
        """Remove every record of these partitions (revoked, or committed by someone else); returns how many."""
        gone = set(partitions) & set(self.ranges)
        if not gone:
            return 0
        before = len(self)
        keep = [i for i, tp in enumerate(self._tps) if tp not in gone]
        self._recs = [self._recs[i] for i in keep]
        self._msgs = [self._msgs[i] for i in keep]
        self._tps = [self._tps[i] for i in keep]
        self.poison = [p for p in self.poison if (p.topic, p.partition) not in gone]
        for tp in gone:
            del self.ranges[tp]
        self._built = None
        if not len(self):
            self.started = None
        return before - len(self)

    def build(self) -> Built:
        """The Arrow table of valid records (invalid values moved to poison), ranges and sequence inputs."""
        if self._built is not None:
            return self._built
        import pyarrow as pa
        import pyarrow.compute as pc

        recs = self._recs
        n = len(recs)
        cols = {name: list(map(itemgetter(name), recs)) for name in trade.FIELD_NAMES}
        bad: dict[int, str] = {}

        def flag(indices: Iterable[int], message: str) -> None:
            for i in indices:
                bad.setdefault(i, message)

        arrays: dict[str, Any] = {}
        for name in trade.DECIMAL_FIELDS:
            unscaled = list(map(_from_be, cols[name]))
            if n and (min(unscaled) <= 0 or max(unscaled) >= DECIMAL_LIMIT):
                flag((i for i, u in enumerate(unscaled) if u <= 0),
                     f"{name}: not positive")
                flag((i for i, u in enumerate(unscaled) if u >= DECIMAL_LIMIT),
                     f"{name}: does not fit decimal({trade.PRECISION},{trade.SCALE}) (must be < 10^10)")
                unscaled = [u if 0 < u < DECIMAL_LIMIT else 0 for u in unscaled]
            words = array("q", bytes(16 * n))
            words[0::2] = array("q", unscaled)  # positive values below 10^18: the high word stays 0
            arrays[name] = pa.Array.from_buffers(pa.decimal128(trade.PRECISION, trade.SCALE), n,
                                                 [None, pa.py_buffer(words)])
        for name in trade.TIMESTAMP_FIELDS:
            values = cols[name]
            if n and min(values) <= 0:
                flag((i for i, v in enumerate(values) if v <= 0), f"{name}: must be a positive µs timestamp")
            arrays[name] = pa.array(values, pa.int64()).view(pa.timestamp("us", tz="UTC"))
        for name in _STRING_FIELDS:
            values = cols[name]
            if not all(values):
                flag((i for i, v in enumerate(values) if not v), f"{name}: must be a non-empty string")
        schema = trade.arrow_schema()
        for spec in trade.FIELDS:
            if spec.name not in arrays:
                arrays[spec.name] = pa.array(cols[spec.name], schema.field(spec.name).type)
        ids_ok = pc.match_substring_regex(arrays["message_id"], UUID_PATTERN)
        if n and not pc.all(ids_ok).as_py():
            flag((i for i, ok in enumerate(ids_ok.to_pylist()) if not ok), "message_id: not a UUID")
        table = pa.Table.from_arrays([arrays[name] for name in trade.FIELD_NAMES], schema=schema)

        poison = list(self.poison)
        exchanges, symbols = cols["exchange"], cols["symbol"]
        sequences, timestamps = cols["source_sequence"], cols["timestamp"]
        tps = self._tps
        if bad:
            for i in sorted(bad):
                poison.append(_poison_of(self._msgs[i], "invalid_value", bad[i], readable_record(recs[i])))
            keep = [i not in bad for i in range(n)]
            table = table.filter(pa.array(keep, pa.bool_()))
            exchanges, symbols, sequences, timestamps, tps = (
                [v for v, k in zip(col, keep, strict=True) if k]
                for col in (exchanges, symbols, sequences, timestamps, tps))
        topics_written = dict(Counter(map(itemgetter(0), tps)))
        poison.sort(key=lambda p: (p.topic, p.partition, p.offset))
        self._built = Built(table, poison, {tp: (r[0], r[1]) for tp, r in self.ranges.items()}, len(self),
                            exchanges, symbols, sequences, timestamps, topics_written)
        return self._built

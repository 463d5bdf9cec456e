"""Operating the dead-letter queue: select, inspect, count, replay (at most once per entry) and purge.

Replay means, per entry:

- entries that hold Kafka value bytes (every ``consume`` entry; ``stream`` entries whose Kafka delivery
  failed, or that Kafka had not acknowledged when the stream stopped): the ORIGINAL value bytes are produced
  again, unchanged, with the original key, to the source topic (or ``to_topic``), with a ``k2-dlq-entry``
  header naming the entry. A stream record that was in flight at the stop may have been stored too: its
  replay can duplicate it in the topic, and the consumer writes each trade id once.
- ``stream`` entries that carry a parsed v2 ``record`` but no bytes: the record is validated, Avro-encoded
  through the Schema Registry and produced to the exchange's topic (or ``to_topic``), keeping its message_id.
- ``stream`` entries with only a raw exchange frame are NOT replayable: the frame never became a record, and
  re-parsing it could duplicate trades the stream already produced from the same frame. They stay listed
  (and purgeable); the way to recover them is to fix the parser and re-stream.

The ledger (`replay-ledger.jsonl` in the DLQ directory, fsynced) makes replay at-most-once per entry: an
entry's `pending` line is durable BEFORE its message is handed to Kafka, and any entry with a ledger line is
never produced again, whatever happened afterwards (`done` with the offset, or `failed`). A crash between the
two leaves `pending`: possibly produced, never repeated. Failed entries are retried only on request
(`retry_failed`), because a delivery timeout does not prove the broker did not store the message.
A lock file keeps two replays from running at once.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import fcntl
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2cli.errors import K2Error
from k2cli.jsonutil import dumps
from k2cli.reliability.dlq import DLQEntry, dlq_files, write_durably

LEDGER_NAME = "replay-ledger.jsonl"
LOCK_NAME = ".replay.lock"
REPLAY_HEADER = "k2-dlq-entry"


class DLQOpError(K2Error):
    """A DLQ operation cannot be done as asked."""

    exit_code = 2


# ---------------------------------------------------------------- reading and selecting


@dataclass
class Scan:
    """Every entry of the DLQ directory plus the lines that could not be read."""

    entries: list[DLQEntry]
    bad_lines: dict[str, int] = field(default_factory=dict)  # file -> unreadable lines


def scan(directory: Path) -> Scan:
    """Read every entry, oldest file first, counting (not hiding) unreadable lines."""
    result = Scan([])
    for path in dlq_files(directory):
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    result.entries.append(DLQEntry.from_json(line, file=path.name))
                except (ValueError, KeyError, TypeError):
                    result.bad_lines[path.name] = result.bad_lines.get(path.name, 0) + 1
    return result


@dataclass(frozen=True)
class EntryFilter:
    """Which entries: any of `ids` (full or unique prefix), any of `error_types`, time window, origin."""

    ids: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    origin: str | None = None

    def matches(self, entry: DLQEntry) -> bool:
        """Whether an entry passes every given condition."""
        if self.ids and not any(entry.id.startswith(i) for i in self.ids):
            return False
        if self.error_types and entry.error_type not in self.error_types:
            return False
        if self.origin and entry.origin != self.origin:
            return False
        if self.since is not None or self.until is not None:
            moment = entry_time(entry)
            if moment is None:
                return False
            if self.since is not None and moment < self.since:
                return False
            if self.until is not None and moment >= self.until:
                return False
        return True


def entry_time(entry: DLQEntry) -> _dt.datetime | None:
    """The entry's time as an aware UTC datetime (None when unreadable)."""
    try:
        moment = entry.time
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=_dt.UTC) if moment.tzinfo is None else moment.astimezone(_dt.UTC)


def select(entries: list[DLQEntry], flt: EntryFilter) -> list[DLQEntry]:
    """The entries that match, checking that every requested id exists and is unambiguous."""
    for wanted in flt.ids:
        hits = {e.id for e in entries if e.id.startswith(wanted)}
        if not hits:
            raise DLQOpError(f"no DLQ entry has id {wanted!r}")
        if len(hits) > 1:
            raise DLQOpError(f"id prefix {wanted!r} matches {len(hits)} entries; give more characters")
    return [e for e in entries if flt.matches(e)]


def find(entries: list[DLQEntry], wanted: str) -> DLQEntry:
    """The one entry whose id is `wanted` or starts with it."""
    return select(entries, EntryFilter(ids=(wanted,)))[0]


# ---------------------------------------------------------------- presenting


def summary(entry: DLQEntry, ledger: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One row for `dlq list`."""
    src = entry.source or {}
    replay = (ledger or {}).get(entry.id)
    return {
        "id": entry.id, "time": entry_time(entry), "origin": entry.origin, "error_type": entry.error_type,
        "transient": entry.transient, "topic": src.get("topic"), "partition": src.get("partition"),
        "offset": src.get("offset"), "exchange": src.get("exchange"), "error": entry.error, "file": entry.file,
        "replay": replay.get("state") if replay else None, "replayable": replayable(entry)[0],
    }


def detail(entry: DLQEntry, ledger: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything about one entry for `dlq show` (value as base64 and, where printable, as text)."""
    value_text = None
    if entry.value is not None:
        try:
            text = entry.value.decode("utf-8")
            value_text = text if text.isprintable() else None
        except UnicodeDecodeError:
            value_text = None
    can, why = replayable(entry)
    return {
        "id": entry.id, "time": entry_time(entry), "origin": entry.origin, "error_type": entry.error_type,
        "error": entry.error, "transient": entry.transient, "source": entry.source, "file": entry.file,
        "value_b64": base64.b64encode(entry.value).decode("ascii") if entry.value is not None else None,
        "value_bytes": len(entry.value) if entry.value is not None else None, "value_text": value_text,
        "raw_frame": entry.raw_frame, "record": entry.record, "replayable": can, "replay_note": why,
        "replay": (ledger or {}).get(entry.id),
    }


def stats(directory: Path) -> dict[str, Any]:
    """Counts by origin, error type and file; oldest and newest entry; replay states."""
    data = scan(directory)
    ledger = ReplayLedger(directory).load()
    by_file: dict[str, dict[str, Any]] = {}
    for path in dlq_files(directory):
        by_file[path.name] = {"entries": 0, "bytes": path.stat().st_size, "oldest": None, "newest": None,
                              "unreadable_lines": data.bad_lines.get(path.name, 0)}
    times = []
    for entry in data.entries:
        moment = entry_time(entry)
        info = by_file[entry.file] if entry.file in by_file else by_file.setdefault(
            entry.file or "?", {"entries": 0, "bytes": 0, "oldest": None, "newest": None, "unreadable_lines": 0})
        info["entries"] += 1
        if moment is not None:
            times.append(moment)
            info["oldest"] = moment if info["oldest"] is None else min(info["oldest"], moment)
            info["newest"] = moment if info["newest"] is None else max(info["newest"], moment)
    ids = {e.id for e in data.entries}
    replay_states = Counter(rec.get("state") for entry_id, rec in ledger.items() if entry_id in ids)
    return {
        "directory": str(directory), "entries": len(data.entries),
        "unreadable_lines": sum(data.bad_lines.values()),
        "by_origin": dict(sorted(Counter(e.origin for e in data.entries).items())),
        "by_error_type": dict(Counter(e.error_type for e in data.entries).most_common()),
        "by_file": by_file, "oldest": min(times) if times else None, "newest": max(times) if times else None,
        "replay": dict(sorted(replay_states.items())),
        "not_replayable": sum(1 for e in data.entries if not replayable(e)[0]),
    }


# ---------------------------------------------------------------- replay


def replayable(entry: DLQEntry) -> tuple[bool, str]:
    """Whether replay can re-produce an entry, and what it would produce (or why not)."""
    if entry.value is not None:
        if not (entry.source or {}).get("topic"):
            return True, "original value bytes (needs --to-topic: the entry names no source topic)"
        return True, "original value bytes to the source topic"
    if entry.origin == "consume":
        return False, "the record had no value (tombstone): nothing to re-produce"
    if entry.record is not None:
        return True, "the parsed v2 record, Avro-encoded, to the exchange topic"
    return False, "raw exchange frame only: it never became a record; fix the parser and re-stream"


class ReplayLedger:
    """The append-only, fsynced record of what replay produced."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LEDGER_NAME

    def load(self) -> dict[str, dict[str, Any]]:
        """The latest ledger line per entry id."""
        out: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return out
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
                if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                    out[rec["id"]] = rec
        return out

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append lines and fsync before returning."""
        if not records:
            return
        data = "".join(dumps(r, separators=(",", ":")) + "\n" for r in records).encode("utf-8")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                write_durably(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise K2Error(f"cannot write the replay ledger {self.path}: {exc.strerror}",
                          setting="K2_DLQ_DIR") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the replay lock of this DLQ directory (fails at once if another replay holds it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DLQOpError(f"another `k2 dlq replay` is running on {self.directory}") from None
            yield
        finally:
            os.close(fd)


@dataclass
class Outcome:
    """What replay did (or would do) with one entry."""

    id: str
    origin: str
    error_type: str
    status: str  # would_replay | replayed | failed | skipped
    reason: str = ""
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass
class Message:
    """One message to produce."""

    entry: DLQEntry
    topic: str
    key: bytes | None
    value: bytes


Producer = Callable[[list[Message]], list[tuple[int | None, int | None, str | None]]]


def _key_bytes(source: dict[str, Any]) -> bytes | None:
    if source.get("key_b64"):
        return base64.b64decode(source["key_b64"])
    key = source.get("key")
    if key is None:
        return None
    return key.encode("utf-8") if isinstance(key, str) else str(key).encode("utf-8")


def target_topic(entry: DLQEntry, to_topic: str | None, settings: Any) -> str:
    """Where replay sends an entry: --to-topic, else the source topic (consume) or exchange topic (stream)."""
    if to_topic:
        return to_topic
    source = entry.source or {}
    if entry.value is not None:
        if not source.get("topic"):
            raise DLQOpError("the entry names no source topic; pass --to-topic")
        return str(source["topic"])
    from k2cli.exchanges import registry

    exchange = str(source.get("exchange") or (entry.record or {}).get("exchange") or "").lower()
    if exchange not in registry.names():
        raise DLQOpError(f"unknown exchange {exchange!r}; pass --to-topic")
    return settings.exchange_topic(exchange)


def build_message(entry: DLQEntry, topic: str, encode: Callable[[str, dict], bytes]) -> Message:
    """The message replay produces for an entry (raises DLQOpError or InvalidTrade when it cannot)."""
    can, why = replayable(entry)
    if not can:
        raise DLQOpError(why)
    if entry.value is not None:
        return Message(entry, topic, _key_bytes(entry.source or {}), bytes(entry.value))
    from k2cli.trade import validate_trade

    record = validate_trade(dict(entry.record or {}))
    return Message(entry, topic, record["symbol"].encode("utf-8"), encode(topic, record))


def replay(directory: Path, flt: EntryFilter, settings: Any, *, to_topic: str | None = None, dry_run: bool = False,
           retry_failed: bool = False, producer: Producer | None = None,
           encode: Callable[[str, dict], bytes] | None = None) -> list[Outcome]:
    """Re-produce the selected entries that were never replayed; record each in the ledger first."""
    if not Path(directory).is_dir():
        select([], flt)  # an --id names an entry that cannot exist: say so
        return []
    ledger = ReplayLedger(directory)
    with ledger.locked():
        chosen = select(scan(directory).entries, flt)
        history = ledger.load()
        outcomes: list[Outcome] = []
        messages: list[tuple[Message, Outcome]] = []
        encode = encode or _registry_encoder(settings)
        for entry in chosen:
            out = Outcome(entry.id, entry.origin, entry.error_type, "skipped")
            outcomes.append(out)
            previous = history.get(entry.id)
            if previous and (previous.get("state") != "failed" or not retry_failed):
                out.reason = f"already replayed: {previous.get('state')} at {previous.get('at')}"
                out.topic, out.partition, out.offset = (previous.get("topic"), previous.get("partition"),
                                                        previous.get("offset"))
                continue
            can, why = replayable(entry)
            try:
                if not can:
                    raise DLQOpError(why)
                out.topic = target_topic(entry, to_topic, settings)
                if dry_run:
                    out.status, out.reason = "would_replay", why
                    continue
                messages.append((build_message(entry, out.topic, encode), out))
            except (K2Error, ValueError) as exc:
                out.reason = str(exc)
        if dry_run or not messages:
            return outcomes
        now = _dt.datetime.now(_dt.UTC).isoformat()
        ledger.append([{"id": m.entry.id, "state": "pending", "at": now, "topic": m.topic} for m, _ in messages])
        results = (producer or _kafka_producer(settings))([m for m, _ in messages])
        finished = _dt.datetime.now(_dt.UTC).isoformat()
        lines = []
        for (msg, out), (partition, offset, error) in zip(messages, results, strict=True):
            base = {"id": msg.entry.id, "at": finished, "topic": msg.topic, "origin": msg.entry.origin}
            if error is None:
                out.status, out.reason, out.partition, out.offset = "replayed", "", partition, offset
                lines.append({**base, "state": "done", "partition": partition, "offset": offset})
            else:
                out.status, out.reason = "failed", error
                lines.append({**base, "state": "failed", "error": error})
        ledger.append(lines)
        return outcomes


def _registry_encoder(settings: Any) -> Callable[[str, dict], bytes]:
    """Avro-encode v2 records for `<topic>-value` through the Schema Registry (connected on first use)."""
    serializers: dict[str, Any] = {}

    def encode(topic: str, record: dict[str, Any]) -> bytes:
        from k2cli.kafka.registry import RegistryClient
        from k2cli.kafka.serde import AvroSerializer
        from k2cli.trade import avro_schema

        if topic not in serializers:
            serializers[topic] = AvroSerializer(RegistryClient.from_settings(settings), f"{topic}-value",
                                                avro_schema())
        return serializers[topic].serialize(record)

    return encode


def _kafka_producer(settings: Any, timeout: float = 30.0) -> Producer:
    """Produce with an idempotent confluent-kafka producer and wait for every delivery report."""

    def produce(messages: list[Message]) -> list[tuple[int | None, int | None, str | None]]:
        from confluent_kafka import KafkaException, Producer

        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "enable.idempotence": True,
                             "acks": "all", "message.timeout.ms": int(timeout * 1000), "linger.ms": 5})
        results: list[tuple[int | None, int | None, str | None]] = [
            (None, None, f"no delivery report within {timeout:.0f} s (Kafka at {settings.kafka_bootstrap_servers})")
        ] * len(messages)

        def report(index: int) -> Callable[[Any, Any], None]:
            def callback(err: Any, msg: Any) -> None:
                results[index] = ((msg.partition(), msg.offset(), None) if err is None
                                  else (None, None, f"delivery failed: {err.str()}"))
            return callback

        for index, m in enumerate(messages):
            try:
                producer.produce(m.topic, value=m.value, key=m.key, headers=[(REPLAY_HEADER, m.entry.id)],
                                 on_delivery=report(index))
            except (KafkaException, BufferError) as exc:
                results[index] = (None, None, f"produce refused: {exc}")
            producer.poll(0)
        producer.flush(timeout + 5)
        return results

    return produce


# ---------------------------------------------------------------- purge


@dataclass
class PurgePlan:
    """The entries a purge removes, file by file: whole files and files rewritten without some lines."""

    cutoff: _dt.datetime
    entries: list[DLQEntry]
    whole_files: list[str]
    partial_files: dict[str, int]  # file -> entries removed from it


def plan_purge(directory: Path, older_than: _dt.timedelta, now: _dt.datetime | None = None) -> PurgePlan:
    """The entries older than the cutoff (an entry with an unreadable time is kept)."""
    now = now or _dt.datetime.now(_dt.UTC)
    cutoff = now - older_than
    data = scan(directory)
    doomed = [e for e in data.entries if (t := entry_time(e)) is not None and t < cutoff]
    per_file = Counter(e.file or "" for e in doomed)  # scanned entries always carry their file
    total = Counter(e.file or "" for e in data.entries)
    whole = sorted(f for f, n in per_file.items() if n == total[f] and not data.bad_lines.get(f))
    partial = {f: n for f, n in sorted(per_file.items()) if f not in whole}
    return PurgePlan(cutoff, doomed, whole, partial)


def purge(directory: Path, plan: PurgePlan) -> int:
    """Remove exactly the planned entries (by id) and return how many were removed.

    Each file is handled under the DLQ writers' flock: a file left with no lines is deleted, any other is
    rewritten (temp file, fsync, rename) keeping every line that is not a planned entry, including lines
    appended after the plan was made and unreadable lines.
    """
    directory = Path(directory)
    doomed_ids = {e.id for e in plan.entries}
    removed = 0
    for name in sorted(set(plan.whole_files) | set(plan.partial_files)):
        path = directory / name
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise DLQOpError(f"{path} was replaced while purging; run the purge again")
            with os.fdopen(os.dup(fd), "r", encoding="utf-8", errors="surrogateescape") as fh:
                lines = fh.readlines()
            kept = [line for line in lines if _line_id(line) not in doomed_ids]
            removed += len(lines) - len(kept)
            if not any(line.strip() for line in kept):
                path.unlink()
                continue
            tmp = path.with_name(f".{path.name}.purge-tmp")
            with tmp.open("w", encoding="utf-8", errors="surrogateescape") as out:
                out.writelines(kept)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            os.close(fd)
    _fsync_dir(directory)
    return removed


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _line_id(line: str) -> str | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    entry_id = data.get("id") if isinstance(data, dict) else None
    return entry_id if isinstance(entry_id, str) else None

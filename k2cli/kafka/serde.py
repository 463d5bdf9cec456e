"""Confluent wire format (0x00, 4-byte schema id, Avro binary) and Avro serde for the v2 trade."""

from __future__ import annotations

import io
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import fastavro

from k2cli import trade
from k2cli.errors import K2Error
from k2cli.kafka.registry import RegistryClient, UnknownSchemaId

MAGIC = 0
_HEADER = struct.Struct(">bI")

K = TypeVar("K")
V = TypeVar("V")


class DecodeError(K2Error):
    """A Kafka value that can never be decoded; `error_type` is a short stable label for metrics and the DLQ."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def frame(schema_id: int, payload: bytes) -> bytes:
    """Prefix an Avro payload with the Confluent header."""
    return _HEADER.pack(MAGIC, schema_id) + payload


def check_header(value: bytes | None) -> bytes:
    """The 5-byte Confluent header of a framed value, or DecodeError naming what is wrong with it."""
    if value is None:
        raise DecodeError("null_value", "record has no value (tombstone)")
    if len(value) < 5:
        raise DecodeError("truncated", f"value of {len(value)} bytes is shorter than the 5-byte header")
    if value[0] != MAGIC:
        raise DecodeError("bad_magic_byte", f"magic byte is {value[0]:#04x}, expected 0x00")
    return bytes(value[:5])


def unframe(value: bytes | None) -> tuple[int, memoryview]:
    """Split a Confluent-framed value into (schema id, payload), or raise DecodeError."""
    header = check_header(value)  # refuses None and short values
    return _HEADER.unpack(header)[1], memoryview(value)[5:]  # type: ignore[arg-type]


class BoundedLRU(Generic[K, V]):
    """A least-recently-used map with a hard size bound that counts its evictions."""

    def __init__(self, max_size: int, on_evict: Callable[[K, V], None] | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.evictions = 0
        self._on_evict = on_evict
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value for key, marking it most recently used."""
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store a value, evicting the least recently used entry beyond the bound."""
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_size:
            old_key, old_value = self._data.popitem(last=False)
            self.evictions += 1
            if self._on_evict is not None:
                self._on_evict(old_key, old_value)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


def strip_logical_types(schema: Any) -> Any:
    """The same Avro schema without logical types: decimals read as bytes, timestamps as longs."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items()
                if k not in ("logicalType", "precision", "scale")}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


class AvroSerializer:
    """Encodes records for one subject, registering its schema on first use."""

    def __init__(self, registry: RegistryClient, subject: str, schema: dict[str, Any]) -> None:
        self.subject = subject
        self._registry = registry
        self._schema = schema
        self._parsed = fastavro.parse_schema(schema)
        self._schema_id: int | None = None

    @property
    def schema_id(self) -> int:
        """The registry id of the schema (registers it if needed)."""
        if self._schema_id is None:
            self._schema_id = self._registry.register(self.subject, self._schema)
        return self._schema_id

    def serialize(self, record: dict[str, Any]) -> bytes:
        """Encode one record in the Confluent wire format."""
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, self.schema_id))
        fastavro.schemaless_writer(buf, self._parsed, record)
        return buf.getvalue()


class SerializerCache:
    """Serializers by subject in a bounded LRU (the unbounded cache was a memory leak in the first k2)."""

    def __init__(self, registry: RegistryClient, max_size: int = 10,
                 on_change: Callable[[int, int], None] | None = None) -> None:
        self._registry = registry
        self._lru: BoundedLRU[str, AvroSerializer] = BoundedLRU(max_size)
        self._on_change = on_change  # (size, evictions) for metrics

    def get(self, subject: str, schema: dict[str, Any] | None = None) -> AvroSerializer:
        """The serializer of a subject, created (and registered) on first use."""
        serializer = self._lru.get(subject)
        if serializer is None:
            serializer = AvroSerializer(self._registry, subject, schema or trade.avro_schema())
            self._lru.put(subject, serializer)
            if self._on_change is not None:
                self._on_change(len(self._lru), self._lru.evictions)
        return serializer

    @property
    def size(self) -> int:
        """How many serializers are cached."""
        return len(self._lru)

    @property
    def evictions(self) -> int:
        """How many serializers have been evicted."""
        return self._lru.evictions


class AvroDeserializer:
    """Decodes Confluent-framed values by schema id, for any registered writer version."""

    def __init__(self, registry: RegistryClient, raw: bool = False) -> None:
        """raw=True skips logical types: decimals come back as unscaled big-endian bytes, timestamps as ints."""
        self._registry = registry
        self._raw = raw
        self._reader = fastavro.parse_schema(
            strip_logical_types(trade.avro_schema()) if raw else trade.avro_schema())
        self._writers: dict[int, Any] = {}

    def _writer(self, schema_id: int) -> Any:
        parsed = self._writers.get(schema_id)
        if parsed is None:
            try:
                schema = self._registry.schema_by_id(schema_id)
            except UnknownSchemaId as exc:
                raise DecodeError("unknown_schema_id", str(exc)) from None
            if self._raw:
                schema = strip_logical_types(schema)
            try:
                parsed = fastavro.parse_schema(schema)
            except Exception as exc:  # a registered schema fastavro cannot use is permanent for its records
                raise DecodeError("invalid_writer_schema", f"schema id {schema_id}: {exc}") from None
            self._writers[schema_id] = parsed
        return parsed

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """Decode one value into a v2 record, or raise DecodeError (permanent) / ServiceUnavailable."""
        schema_id, payload = unframe(value)
        writer = self._writer(schema_id)
        buf = io.BytesIO(payload)
        try:
            record: Any = fastavro.schemaless_reader(buf, writer, self._reader)
        except (EOFError, StopIteration):
            raise DecodeError("truncated", f"Avro body ended early (schema id {schema_id})") from None
        except Exception as exc:  # fastavro raises many types for corrupt input
            raise DecodeError("invalid_record", f"Avro body does not match schema id {schema_id}: "
                                                f"{exc.__class__.__name__}: {exc}") from None
        if buf.tell() != len(payload):
            raise DecodeError("invalid_record",
                              f"{len(payload) - buf.tell()} trailing bytes after the record (schema id {schema_id})")
        return record

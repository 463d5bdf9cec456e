"""Fast decoding of Confluent-framed v2 trades: writer schema by id, decimals kept as unscaled bytes.

The hot path reads each value with fastavro's schemaless reader against the writer schema alone when it is
the v2 schema (no per-record schema resolution), with logical types stripped: decimals come back as the
unscaled big-endian two's-complement bytes and timestamps as ints, which `k2cli.consume.batch` turns into
Arrow columns without creating Decimal objects. Writer versions that differ from v2 are read through schema
resolution; a writer whose decimals have another scale is rescaled exactly here (or the record is rejected if
it has more than 8 decimal places).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from k2cli import trade
from k2cli.errors import ServiceUnavailable
from k2cli.kafka.registry import RegistryClient, RegistryError, UnknownSchemaId
from k2cli.kafka.serde import DecodeError, check_header, strip_logical_types

_HEADER = struct.Struct(">bI")
SCALE = trade.SCALE


class InvalidValue(Exception):
    """A decoded record whose values k2 cannot store (error_type invalid_value); carries the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class WriterInfo:
    """How to read values written with one schema id."""

    schema_id: int
    writer: Any  # parsed writer schema, logical types stripped
    reader: Any  # parsed v2 reader schema, or None when the writer is the v2 schema itself
    scales: dict[str, int] | None  # decimal fields whose writer scale is not 8

    def rescale(self, record: dict[str, Any]) -> None:
        """Bring decimals written at another scale to scale 8 (as unscaled bytes), exactly, or raise InvalidValue."""
        for name, scale in (self.scales or {}).items():
            unscaled = int.from_bytes(record[name], "big", signed=True)
            if scale < SCALE:
                unscaled *= 10 ** (SCALE - scale)
            else:
                unscaled, rest = divmod(unscaled, 10 ** (scale - SCALE))
                if rest:
                    value = Decimal(int.from_bytes(record[name], "big", signed=True)).scaleb(-scale)
                    raise InvalidValue(name, f"{value} has more than {SCALE} decimal places; k2 never rounds")
            record[name] = unscaled.to_bytes(max(1, (unscaled.bit_length() + 8) // 8), "big", signed=True)


def _decimal_scales(schema: Any) -> dict[str, int]:
    """The scale of each decimal field of a writer record schema (plain bytes count as scale 8)."""
    scales: dict[str, int] = {}
    if not isinstance(schema, dict):
        return scales
    for field in schema.get("fields", []):
        ftype = field.get("type")
        branches = ftype if isinstance(ftype, list) else [ftype]
        for branch in branches:
            if isinstance(branch, dict) and branch.get("logicalType") == "decimal":
                scales[field["name"]] = int(branch.get("scale", 0))
    return scales


class ValueDecoder:
    """Resolves schema ids through the registry (cached by the 5-byte header) for the batch decoder."""

    def __init__(self, registry: RegistryClient, mode: str | None = None) -> None:
        from k2cli.consume.native import load

        self._registry = registry
        self.native = load(mode)  # the compiled decoder, or None for the pure-Python path
        self._native_headers: tuple[bytes, ...] = ()
        reader_schema = strip_logical_types(trade.avro_schema())
        self.reader = fastavro.parse_schema(reader_schema)
        self._reader_form = to_parsing_canonical_form(reader_schema)
        self.by_header: dict[bytes, WriterInfo] = {}

    def writer_for(self, value: bytes | None) -> WriterInfo:
        """The WriterInfo for a framed value; DecodeError (permanent) or ServiceUnavailable (transient)."""
        header = check_header(value)
        info = self.by_header.get(header)
        if info is not None:
            return info
        schema_id = _HEADER.unpack(header)[1]
        try:
            schema = self._registry.schema_by_id(schema_id)
        except UnknownSchemaId as exc:
            raise DecodeError("unknown_schema_id", str(exc)) from None
        except RegistryError as exc:
            raise ServiceUnavailable(str(exc), setting="K2_SCHEMA_REGISTRY_URL") from None
        stripped = strip_logical_types(schema)
        try:
            writer = fastavro.parse_schema(stripped)
            same = to_parsing_canonical_form(stripped) == self._reader_form
        except Exception as exc:
            raise DecodeError("invalid_writer_schema", f"schema id {schema_id}: {exc}") from None
        scales = {name: s for name, s in _decimal_scales(schema).items()
                  if name in trade.DECIMAL_FIELDS and s != SCALE}
        info = WriterInfo(schema_id, writer, None if same else self.reader, scales or None)
        self.by_header[header] = info
        return info

    def native_headers(self) -> tuple[bytes, ...]:
        """The headers whose writer is exactly the v2 schema (the ones the compiled decoder reads)."""
        if len(self._native_headers) != sum(1 for i in self.by_header.values() if i.reader is None and not i.scales):
            self._native_headers = tuple(h for h, i in self.by_header.items() if i.reader is None and not i.scales)
        return self._native_headers

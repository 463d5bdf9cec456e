"""The compiled decoder (k2cli._avro_arrow): Confluent-framed v2 trades straight into Arrow columns.

Used only for values whose writer schema is exactly the v2 schema (the headers `ValueDecoder` resolved to a
writer without schema resolution or rescaling). Values the compiled decoder flags (another writer, malformed,
or refused by v2) are decoded again by the pure-Python path, which reports them exactly as it always has; if
the pure path finds a valid row among them (a writer the compiled decoder does not take) or the registry
stalls, the whole chunk is decoded by the pure path. K2_CONSUMER_DECODER=python|native|auto picks the path.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from k2cli import trade

DECODERS = ("auto", "native", "python")


def load(mode: str | None = None) -> ModuleType | None:
    """The compiled module for this mode (env K2_CONSUMER_DECODER by default); None for the pure path."""
    mode = (mode or os.environ.get("K2_CONSUMER_DECODER") or "auto").strip().lower()
    if mode == "python":
        return None
    try:
        from k2cli import _avro_arrow  # type: ignore[attr-defined]
    except ImportError as exc:
        if mode == "native":
            from k2cli.errors import ConfigError

            raise ConfigError(f"K2_CONSUMER_DECODER=native but the compiled decoder is not built ({exc}); "
                              "reinstall k2 where a C compiler is, or use auto",
                              setting="K2_CONSUMER_DECODER") from None
        return None
    module: ModuleType = _avro_arrow
    return module


def _strings(pa: Any, n: int, offsets: bytes, data: bytes) -> Any:
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _nullable(pa: Any, typ: Any, n: int, nulls: int, validity: bytes, data: bytes) -> Any:
    mask = pa.py_buffer(validity) if nulls else None
    return pa.Array.from_buffers(typ, n, [mask, pa.py_buffer(data)], null_count=nulls)


def assemble(rows: int, buffers: tuple[bytes, ...], nulls: tuple[int, int, int]) -> Any:
    """The v2 RecordBatch from the compiled decoder's buffers (order as in _avro_arrow.c)."""
    import pyarrow as pa

    (mid_o, mid_d, tid_o, tid_d, sym_o, sym_d, exc_o, exc_d, cur_o, cur_d, asset, side, ts, price, qty,
     cond_o, cond_io, cond_d, sseq_v, sseq, its, pseq_v, pseq, vd_v, vd_o, vdk_o, vdk_d, vdv_o, vdv_d) = buffers
    schema = trade.arrow_schema()
    n = rows
    ts_type, dec_type = schema.field("timestamp").type, schema.field("price").type
    cond_type, vd_type = schema.field("trade_conditions").type, schema.field("vendor_data").type
    items = _strings(pa, len(cond_io) // 4 - 1, cond_io, cond_d)
    conditions = pa.Array.from_buffers(cond_type, n, [None, pa.py_buffer(cond_o)], children=[items])
    entries = len(vdk_o) // 4 - 1
    struct = pa.StructArray.from_arrays([_strings(pa, entries, vdk_o, vdk_d), _strings(pa, entries, vdv_o, vdv_d)],
                                        fields=[vd_type.key_field, vd_type.item_field])
    vd_mask = pa.py_buffer(vd_v) if nulls[2] else None
    vendor = pa.Array.from_buffers(vd_type, n, [vd_mask, pa.py_buffer(vd_o)], null_count=nulls[2], children=[struct])
    columns = {
        "message_id": _strings(pa, n, mid_o, mid_d), "trade_id": _strings(pa, n, tid_o, tid_d),
        "symbol": _strings(pa, n, sym_o, sym_d), "exchange": _strings(pa, n, exc_o, exc_d),
        "asset_class": _enum(pa, trade.ASSET_CLASSES, asset), "side": _enum(pa, trade.SIDES, side),
        "timestamp": pa.Array.from_buffers(ts_type, n, [None, pa.py_buffer(ts)]),
        "price": pa.Array.from_buffers(dec_type, n, [None, pa.py_buffer(price)]),
        "quantity": pa.Array.from_buffers(dec_type, n, [None, pa.py_buffer(qty)]),
        "currency": _strings(pa, n, cur_o, cur_d), "trade_conditions": conditions,
        "source_sequence": _nullable(pa, pa.int64(), n, nulls[0], sseq_v, sseq),
        "ingestion_timestamp": pa.Array.from_buffers(ts_type, n, [None, pa.py_buffer(its)]),
        "platform_sequence": _nullable(pa, pa.int64(), n, nulls[1], pseq_v, pseq),
        "vendor_data": vendor,
    }
    return pa.RecordBatch.from_arrays([columns[name] for name in trade.FIELD_NAMES], schema=schema)


def _enum(pa: Any, symbols: tuple[str, ...], codes: bytes) -> Any:
    """Enum indexes (one byte each) as the symbol strings."""
    return pa.array(symbols, pa.string()).take(pa.Array.from_buffers(pa.uint8(), len(codes),
                                                                      [None, pa.py_buffer(codes)]))

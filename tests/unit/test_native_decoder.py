"""The compiled v2 decoder against the pure-Python path (the oracle): same Arrow rows, same poison, same order."""

from __future__ import annotations

import io
import random

import fastavro
import pytest

from k2cli import trade
from k2cli.consume.batch import decode_chunk
from k2cli.consume.decode import ValueDecoder
from k2cli.consume.native import load
from k2cli.kafka.serde import frame, strip_logical_types


@pytest.fixture(autouse=True)
def _compiled_decoder_is_built() -> None:
    """The install builds the extension; a missing one is a failure here, never a skip."""
    if load("auto") is None:
        pytest.fail("the compiled decoder k2cli._avro_arrow is not built: run scripts/install.sh "
                    "(it needs gcc and the Python headers)")


T0 = 1_767_225_600_000_000
WIRE = fastavro.parse_schema(strip_logical_types(trade.avro_schema()))
TEXTS = ["", "a", "BTCUSDT", "ÉTH€", "日本語", "🚀" * 3, "x" * 300, "\x00nul", "tab\there"]


class Schemas:
    """The registry stand-in: schema id 1 is v2, id 2 a v2 with scale-10 decimals (another writer)."""

    def __init__(self) -> None:
        other = trade.avro_schema()
        for f in other["fields"]:
            if f["name"] in trade.DECIMAL_FIELDS:
                f["type"] = {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 10}
        self.by_id = {1: trade.avro_schema(), 2: other}

    def schema_by_id(self, schema_id: int) -> dict:
        return self.by_id[schema_id]


def _decimal(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.05:
        u = rng.choice([0, -1, -(10 ** 12), 10 ** 18, 10 ** 18 - 1, 2 ** 63, 2 ** 100, -(2 ** 120), 1])
    elif kind < 0.3:
        u = rng.randrange(1, 10 ** 18)
    else:
        u = rng.randrange(1, 10 ** 14)
    width = max(1, (u.bit_length() + 8) // 8) + rng.choice([0, 0, 0, 1, 5])
    return u.to_bytes(width, "big", signed=True)


def _text(rng: random.Random, blank: float = 0.03) -> str:
    return "" if rng.random() < blank else rng.choice(TEXTS[1:]) + str(rng.randrange(10 ** 6))


def random_trade(rng: random.Random) -> dict:
    """A wire-level v2 record (decimals as unscaled bytes), now and then with a value v2 refuses."""
    return {
        "message_id": rng.choice([f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(128):032X}"])
        if rng.random() < 0.97 else rng.choice(["", "not-a-uuid", "0" * 36]),
        "trade_id": _text(rng), "symbol": _text(rng), "exchange": rng.choice(["BINANCE", "KRAKEN", "", "ÖX"]),
        "asset_class": rng.choice(trade.ASSET_CLASSES),
        "timestamp": rng.choice([T0 + rng.randrange(10 ** 9), 0, -5, 2 ** 62]) if rng.random() < 0.1
        else T0 + rng.randrange(10 ** 9),
        "price": _decimal(rng), "quantity": _decimal(rng), "currency": _text(rng),
        "side": rng.choice(trade.SIDES),
        "trade_conditions": [_text(rng, 0.2) for _ in range(rng.choice([0, 0, 1, 3, 40]))],
        "source_sequence": rng.choice([None, rng.randrange(-(2 ** 63), 2 ** 63), rng.randrange(10 ** 6)]),
        "ingestion_timestamp": T0 + rng.randrange(10 ** 9),
        "platform_sequence": rng.choice([None, 2 ** 63 - 1, -(2 ** 63), rng.randrange(10 ** 9)]),
        "vendor_data": rng.choice([None, {}, {"k": "v"}, {f"κ{i}": _text(rng, 0.3) for i in range(60)}]),
    }


def _uuid(record: dict) -> dict:
    mid = record["message_id"]
    if len(mid) == 32:
        record["message_id"] = f"{mid[:8]}-{mid[8:12]}-{mid[12:16]}-{mid[16:20]}-{mid[20:]}"
    return record


def wire(record: dict, schema_id: int = 1) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, WIRE, _uuid(record))
    return frame(schema_id, buf.getvalue())


def both(values: list) -> tuple:
    """(native result, pure result) of one chunk."""
    native, pure = ValueDecoder(Schemas(), "native"), ValueDecoder(Schemas(), "python")
    assert native.native is not None and pure.native is None
    return decode_chunk(native, values), decode_chunk(pure, values)


def _rows(table) -> dict:
    """Column values as Python objects (timestamps as µs integers: some are past datetime's range)."""
    return {name: (col.view("int64") if name in trade.TIMESTAMP_FIELDS else col).to_pylist()
            for name, col in zip(table.schema.names, table.columns, strict=True)}


def assert_same(values: list) -> None:
    got, want = both(values)
    assert got.table.schema == want.table.schema
    assert got.table.equals(want.table)
    assert _rows(got.table) == _rows(want.table)
    assert got.poison == want.poison and got.stalled_at == want.stalled_at


def test_random_trades_decode_as_the_pure_path_does():
    rng = random.Random(16)
    values = [wire(random_trade(rng)) for _ in range(3000)]
    got, want = both(values)
    assert want.table.num_rows > 1500 and len(want.poison) > 100  # both valid rows and refused values ran
    decoder = ValueDecoder(Schemas(), "native")
    decoder.writer_for(values[0])
    rows, flagged, _, _ = decoder.native.decode(values, decoder.native_headers())
    assert rows == want.table.num_rows and flagged == [p[0] for p in want.poison]  # no fallback to the pure path
    assert_same(values)


def test_malformed_values_get_the_pure_paths_poison_classification():
    rng = random.Random(3)
    good = [wire(random_trade(random.Random(i))) for i in range(400)]
    values: list = []
    for v in good:
        cut = rng.randrange(5, len(v))
        values += [v, v[:cut], v + b"\x00", None, b"\x01" + v[1:], v[:4]]
        flipped = bytearray(v)
        for _ in range(3):
            flipped[rng.randrange(5, len(v))] = rng.randrange(256)
        values.append(bytes(flipped))
    values += [frame(1, b"\xff" * 11 + b"\x01"), frame(1, b"\x80" * 20), frame(1, b"")]
    assert_same(values)


def test_bad_utf8_enum_and_union_indexes_are_poison_like_the_pure_path():
    base = wire({**random_trade(random.Random(1)), "symbol": "SYMBOLXYZ", "vendor_data": None})
    bad_utf8 = base.replace(b"SYMBOLXYZ", b"SYMBOL\xed\xa0\x80")  # a UTF-16 surrogate: Python refuses it
    overlong = base.replace(b"SYMBOLXYZ", b"SYMBOLX\xc0\xaf")
    at = base.index(b"SYMBOLXYZ") + 9 + 1 + len(random_trade(random.Random(1))["exchange"].encode())
    bad_enum = base[:at] + b"\x08" + base[at + 1:]  # asset_class index 4 of 4 symbols
    bad_union = base[:-1] + b"\x04"  # vendor_data branch 2 of a two-branch union
    assert_same([base, bad_utf8, overlong, bad_enum, bad_union, base])


def test_another_writer_and_repeated_map_keys_fall_back_to_the_pure_path():
    rng = random.Random(5)
    v2 = [wire(random_trade(rng)) for _ in range(50)]
    scale10 = dict(random_trade(rng), price=(12345 * 100).to_bytes(8, "big"))
    other = wire(scale10, schema_id=2)
    no_map = wire(dict(random_trade(rng), vendor_data=None))
    repeated = no_map[:-1] + b"\x02\x04\x02k\x02a\x02k\x02b\x00"  # vendor_data {"k": "a", "k": "b"}
    assert_same(v2 + [other] + v2)
    assert_same([*v2, repeated, *v2])
    huge_map = wire(dict(random_trade(rng), vendor_data={f"k{i}": "v" for i in range(1500)}))  # past the C cap
    assert_same([*v2, huge_map])


def test_python_mode_is_the_pure_path():
    assert load("python") is None and ValueDecoder(Schemas(), "python").native is None

"""Confluent framing and the bounded LRU: pure logic, no registry needed."""

import pytest

from k2cli.kafka.serde import BoundedLRU, DecodeError, frame, strip_logical_types, unframe


def test_frame_round_trip():
    value = frame(42, b"payload")
    assert value[:5] == b"\x00\x00\x00\x00\x2a"
    schema_id, payload = unframe(value)
    assert schema_id == 42 and bytes(payload) == b"payload"


@pytest.mark.parametrize("value,error_type", [(b"\x01\x00\x00\x00\x01x", "bad_magic_byte"),
                                              (b"\x00\x00", "truncated"), (None, "null_value")])
def test_unframe_rejects_bad_values(value, error_type):
    with pytest.raises(DecodeError) as err:
        unframe(value)
    assert err.value.error_type == error_type


def test_lru_evicts_least_recently_used_and_counts():
    evicted = []
    lru = BoundedLRU(10, on_evict=lambda k, v: evicted.append(k))
    for i in range(15):
        lru.put(f"subject-{i}", i)
    assert len(lru) == 10 and lru.evictions == 5
    assert evicted == [f"subject-{i}" for i in range(5)]
    lru.get("subject-5")
    lru.put("subject-15", 15)
    assert "subject-5" in lru and "subject-6" not in lru


def test_strip_logical_types_keeps_wire_format():
    schema = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 8}
    assert strip_logical_types(schema) == {"type": "bytes"}

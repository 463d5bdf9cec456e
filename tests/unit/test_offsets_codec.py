"""The snapshot-summary offsets codec: stable text, tolerant parsing, max merge, carry-forward."""

from k2cli.lake import offsets as off


def test_encode_is_stable_nested_json():
    text = off.encode_offsets({("b", 1): 5, ("a", 10): 7, ("a", 2): 3})
    assert text == '{"a":{"10":7,"2":3},"b":{"1":5}}'
    assert off.decode_offsets(text) == {("a", 10): 7, ("a", 2): 3, ("b", 1): 5}


def test_decode_tolerates_missing_or_foreign_values():
    assert off.decode_offsets(None) == {}
    assert off.decode_offsets("not json") == {}
    assert off.decode_offsets('["x"]') == {}
    assert off.decode_offsets('{"t":{"0":"x","1":4},"u":3}') == {("t", 1): 4}


def test_offsets_from_summaries_takes_the_max_per_partition():
    summaries = [
        {off.OFFSETS_KEY: off.encode_offsets({("t", 0): 100, ("t", 1): 50})},
        {"operation": "append"},  # a snapshot written by someone else
        None,
        {off.OFFSETS_KEY: off.encode_offsets({("t", 0): 80, ("t", 1): 60, ("t", 2): 9})},
    ]
    assert off.offsets_from_summaries(summaries) == {("t", 0): 100, ("t", 1): 60, ("t", 2): 9}


def test_advance_carries_every_partition_forward_and_never_back():
    carried = {("t", 0): 100, ("t", 1): 50}
    assert off.advance(carried, {("t", 1): 75, ("u", 0): 3}) == {("t", 0): 100, ("t", 1): 75, ("u", 0): 3}
    assert off.advance(carried, {("t", 0): 90}) == carried


def test_ranges_round_trip():
    ranges = {("t", 0): (0, 500), ("t", 3): (17, 20)}
    assert off.decode_ranges(off.encode_ranges(ranges)) == ranges
    assert off.decode_ranges("{bad") == {}

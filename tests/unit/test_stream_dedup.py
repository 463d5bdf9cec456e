"""Deduplication across overlapping connections and the make-before-break handover rule."""

import random

import pytest

from k2cli.stream import dedup
from k2cli.stream.dedup import Deduplicator


@pytest.mark.parametrize("sequential", [True, False])
def test_same_key_twice_is_a_duplicate_per_symbol(sequential):
    d = Deduplicator(sequential)
    k = 5 if sequential else "KRAKEN-1-abc"
    assert d.accept(1, "BTCUSDT", k)
    assert not d.accept(2, "BTCUSDT", k)
    assert d.accept(2, "ETHUSDT", k)
    assert d.duplicates == 1


def test_bitmap_matches_a_plain_set_over_random_overlapping_streams():
    rng = random.Random(5)
    d = Deduplicator(True)
    seen = set()
    head = 10**9
    for _ in range(20000):
        if rng.random() < 0.02:
            head += rng.randint(2, 3000)  # exchange gap
        else:
            head += 1
        for k in {head, head - rng.randint(0, 50), head - rng.randint(0, 5000)}:
            expected = k not in seen
            seen.add(k)
            assert d.accept(rng.randint(1, 2), "S", k) == expected, k


def test_big_jumps_keep_recent_ids_and_wrap_the_ring():
    d = Deduplicator(True)
    for k in range(100, 200):
        assert d.accept(1, "S", k)
    assert d.accept(1, "S", 100 + dedup.WINDOW - 50)  # jump within the window, crossing the ring end
    assert not d.accept(2, "S", 150)  # still remembered
    assert d.accept(2, "S", 100 + dedup.WINDOW - 51)  # a skipped id is not a duplicate
    assert d.accept(1, "S", 10 * dedup.WINDOW)  # jump beyond the window: fresh ring
    assert d.accept(1, "S", 5)  # far below: a sequence reset, accepted
    assert not d.accept(2, "S", 5)


def test_opaque_window_forgets_oldest(monkeypatch):
    monkeypatch.setattr(dedup, "SET_WINDOW", 3)
    d = Deduplicator(False)
    for k in "abcd":
        assert d.accept(1, "S", k)
    assert d.accept(1, "S", "a")  # evicted
    assert not d.accept(1, "S", "d")


def test_sequential_handover_waits_until_old_reaches_new_first_id():
    d = Deduplicator(True)
    for t in range(1, 101):
        d.accept(1, "BTC", t)
    d.begin_handover(1, 2)
    assert d.handover_ready(1, 2, quiet_ok=False) == (False, ["(a first trade from the new connection)", "BTC"])
    assert d.handover_ready(1, 2, quiet_ok=True) == (True, [])  # nothing traded since the handover began
    # the new connection is ahead: it starts at 105 while the old one has only delivered up to 100
    for t in range(105, 110):
        assert d.accept(2, "BTC", t)
    ready, waiting = d.handover_ready(1, 2, quiet_ok=True)
    assert not ready and waiting == ["BTC"]
    for t in range(101, 106):  # the old connection catches up; 105 is a duplicate
        assert d.accept(1, "BTC", t) == (t < 105)
    assert d.handover_ready(1, 2, quiet_ok=True) == (True, [])
    d.end_handover(1, 2)
    assert not d.accept(2, "BTC", 109)


def test_handover_with_a_quiet_symbol_needs_quiet_ok_and_an_active_one_blocks():
    d = Deduplicator(True)
    d.accept(1, "QUIET", 7)
    d.accept(1, "BUSY", 1)
    d.begin_handover(1, 2)
    d.accept(2, "BUSY", 2)
    d.accept(1, "BUSY", 2)
    assert d.handover_ready(1, 2, quiet_ok=False) == (False, ["QUIET"])
    assert d.handover_ready(1, 2, quiet_ok=True) == (True, [])
    d.accept(1, "QUIET", 8)  # the old connection just delivered QUIET: the new one must show it too
    assert d.handover_ready(1, 2, quiet_ok=True) == (False, ["QUIET"])
    d.accept(2, "QUIET", 8)
    assert d.handover_ready(1, 2, quiet_ok=True)[0]


def test_opaque_handover_needs_one_id_both_connections_delivered():
    d = Deduplicator(False)
    for k in ["a", "b", "c"]:
        d.accept(1, "XBT/USD", k)
    d.begin_handover(1, 2)
    assert d.accept(2, "XBT/USD", "x")  # nothing in common yet: maybe a gap between c and x
    assert d.handover_ready(1, 2, quiet_ok=True) == (False, ["XBT/USD"])
    assert not d.accept(2, "XBT/USD", "x")  # the new connection repeating itself proves nothing
    assert d.handover_ready(1, 2, quiet_ok=True) == (False, ["XBT/USD"])
    assert not d.accept(2, "XBT/USD", "c")  # the snapshot on subscribe replays c: the streams meet
    assert d.handover_ready(1, 2, quiet_ok=False) == (True, [])
    d.accept(1, "XBT/USD", "d")
    d.accept(1, "XBT/USD", "e")  # the old connection runs ahead: the new one, lagging, still brings d and e
    assert d.handover_ready(1, 2, quiet_ok=True)[0]
    assert not d.accept(2, "XBT/USD", "d") and not d.accept(2, "XBT/USD", "e") and d.accept(2, "XBT/USD", "f")


def test_opaque_handover_when_the_old_connection_catches_up_with_the_new_one():
    d = Deduplicator(False)
    d.accept(1, "XBT/USD", "a")
    d.begin_handover(1, 2)
    assert d.accept(2, "XBT/USD", "c") and d.accept(2, "XBT/USD", "d")  # the new one starts ahead
    assert not d.handover_ready(1, 2, quiet_ok=True)[0]
    assert d.accept(1, "XBT/USD", "b")  # b only the old one has: closing it before now would lose b
    assert not d.handover_ready(1, 2, quiet_ok=True)[0]
    assert not d.accept(1, "XBT/USD", "c")  # the old one reaches what the new one delivered
    assert d.handover_ready(1, 2, quiet_ok=True)[0]


@pytest.mark.parametrize("sequential,seed", [(True, 9), (False, 9), (True, 3), (False, 3), (False, 11)])
def test_simulated_rotation_loses_and_duplicates_nothing(sequential, seed):
    """Two connections on one ordered stream with random lags: accepted ids are exactly the stream.

    The new connection starts up to 30 ids ahead of the old one, or up to 30 behind (a replayed snapshot).
    """
    rng = random.Random(seed)
    stream = list(range(1000, 6000)) if sequential else [f"h{i:05d}" for i in range(5000)]
    d = Deduplicator(sequential)
    out = []
    pos_old, pos_new = 0, None
    conn_old, conn_new = 1, 2
    closed_at = None
    while pos_old < len(stream):
        if pos_new is None and pos_old > 1000:
            pos_new = pos_old + rng.randint(-30, 30)  # the new connection starts near the head
            d.begin_handover(conn_old, conn_new)
        if closed_at is None and rng.random() < 0.6:
            if d.accept(conn_old, "S", stream[pos_old]):
                out.append(stream[pos_old])
            pos_old += 1
        if pos_new is not None and pos_new < len(stream) and rng.random() < 0.5:
            if d.accept(conn_new, "S", stream[pos_new]):
                out.append(stream[pos_new])
            pos_new += 1
        if pos_new is not None and closed_at is None and d.handover_ready(conn_old, conn_new, False)[0]:
            closed_at = pos_old
            d.end_handover(conn_old, conn_new)
        if closed_at is not None:
            pos_old = len(stream)
    while pos_new < len(stream):
        if d.accept(conn_new, "S", stream[pos_new]):
            out.append(stream[pos_new])
        pos_new += 1
    assert closed_at is not None
    assert sorted(out) == stream and len(out) == len(set(out))


def test_highest_ids_is_the_per_symbol_sequence_view():
    d = Deduplicator(True)
    for k in (7, 9, 8, 3):
        d.accept(1, "A", k)
    d.accept(2, "B", 40)
    assert d.highest_ids() == {"A": 9, "B": 40}
    opaque = Deduplicator(False)
    opaque.accept(1, "A", "x")
    assert opaque.highest_ids() == {}


def test_a_jump_in_ids_is_noted_as_a_gap_and_consecutive_ids_are_not():
    d = Deduplicator(True)
    for k in (10, 11, 12, 15, 16, 16, 14, 20 + dedup.WINDOW):
        d.accept(1, "S", k)
    assert d.take_jumps() == [("S", 13, 14), ("S", 17, 19 + dedup.WINDOW)]
    assert d.take_jumps() == []


def test_a_restart_resumes_from_the_topic_and_the_first_live_id_opens_the_gap():
    d = Deduplicator(True)
    d.resume_from({"S": 100, "T": 50})
    d.accept(1, "S", 131)
    d.accept(1, "T", 49)  # at or below the topic's last: no gap
    d.accept(1, "T", 51)
    assert d.take_jumps() == [("S", 101, 130), ("T", 50, 50)]


def test_backfilled_ids_fill_the_window_without_moving_it_and_live_copies_are_dropped():
    d = Deduplicator(True)
    hi = 10 * dedup.WINDOW
    d.accept(1, "S", hi)
    assert d.unseen("S", hi - 3, hi) == [(hi - 3, hi - 1)]
    assert d.accept_backfilled("S", hi - 2)
    assert not d.accept_backfilled("S", hi - 2) and d.backfill_duplicates == 1
    assert not d.accept(1, "S", hi - 2)  # the live copy of a backfilled trade
    assert d.accept_backfilled("S", hi - 5 * dedup.WINDOW)  # far older than the window: taken, window kept
    assert d.highest_ids() == {"S": hi}
    assert not d.accept(1, "S", hi)
    assert d.unseen("S", hi - 3, hi) == [(hi - 3, hi - 3), (hi - 1, hi - 1)]
    assert d.unseen("OTHER", 1, 2) == [(1, 2)]


def _brute_unseen(seen: set[int], lo: int, hi: int, first: int, last: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = None
    for k in range(first, last + 1):
        if lo < k <= hi and k in seen:
            if start is not None:
                out.append((start, k - 1))
                start = None
        elif start is None:
            start = k
    if start is not None:
        out.append((start, last))
    return out


def test_unseen_runs_agree_with_walking_every_id():
    import random

    from k2cli.stream.dedup import WINDOW

    rng = random.Random(5)
    for _ in range(200):
        dedup = Deduplicator(sequential=True)
        base = rng.randrange(1, 10**6)
        ids = sorted(rng.sample(range(base, base + 3000), rng.randrange(1, 2500)))
        for k in ids:
            dedup.accept(1, "S", k)
        hi = ids[-1]
        first = rng.randrange(base - 500, hi + 500)
        last = first + rng.randrange(0, 4000)
        assert dedup.unseen("S", first, last) == _brute_unseen(set(ids), hi - WINDOW, hi, first, last)


@pytest.mark.timeout(10)  # walking the ids one by one would take hours (a restart after downtime hung the stream)
def test_a_gap_of_billions_of_ids_is_judged_without_walking_it():
    dedup = Deduplicator(sequential=True)
    dedup.accept(1, "S", 10**15)
    assert dedup.unseen("S", 1_000_000, 10**15 - 1) == [(1_000_000, 10**15 - 1)]
    assert dedup.unseen("S", 1_000_000, 10**15 + 5) == [(1_000_000, 10**15 - 1), (10**15 + 1, 10**15 + 5)]

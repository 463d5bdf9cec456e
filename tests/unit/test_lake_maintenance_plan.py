"""Pure planning of `k2 lake`: file groups for compaction, sizes, snapshots to expire, orphan files."""

import pytest

from k2cli.lake.maintenance_plan import (
    MB,
    BadMaintenanceFlag,
    FileEntry,
    SnapshotEntry,
    StoredFile,
    find_orphans,
    normalise_path,
    parse_size,
    plan_compaction,
    plan_expiry,
)


def _files(partition: str, sizes: list[int]) -> list[FileEntry]:
    return [FileEntry(f"/w/{partition}/f{i:03d}.parquet", partition, s, s // 100) for i, s in enumerate(sizes)]


@pytest.mark.parametrize("text,size", [("128MB", 128 * MB), ("64m", 64 * MB), ("512KB", 512 * 1024),
                                       ("1GB", 1024 * MB), ("2048", 2048), ("1.5mb", int(1.5 * MB))])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "huge", "12 parsecs", "-1MB", "10"])
def test_parse_size_rejects_what_it_cannot_use(text):
    with pytest.raises(BadMaintenanceFlag) as err:
        parse_size(text, "--target-size")
    assert err.value.exit_code == 2 and "--target-size" in str(err.value)


def test_small_files_of_each_partition_are_grouped_up_to_the_target():
    files = _files("2026-01-01", [30 * MB] * 7) + _files("2026-01-02", [10 * MB] * 3)
    groups = plan_compaction(files, target_bytes=100 * MB)
    assert [(g.partition, len(g.files)) for g in groups] == [("2026-01-01", 3), ("2026-01-01", 3),
                                                            ("2026-01-02", 3)]
    assert all(g.size_bytes <= 100 * MB for g in groups)
    assert groups[0].records == 3 * (30 * MB // 100)
    assert {f.path for g in groups for f in g.files} <= {f.path for f in files}


def test_a_group_never_mixes_partitions():
    groups = plan_compaction(_files("a", [1, 1]) + _files("b", [1, 1]), target_bytes=100 * MB)
    assert all(len({f.partition for f in g.files}) == 1 for g in groups) and len(groups) == 2


def test_files_near_the_target_stay_and_a_lone_small_file_is_left_alone():
    files = _files("d", [80 * MB, 99 * MB, 5 * MB]) + _files("e", [1 * MB])
    assert plan_compaction(files, target_bytes=100 * MB) == []  # 80 and 99 MB are not small; 5 MB is alone


def test_min_files_drops_small_groups():
    files = _files("d", [MB] * 3)
    assert len(plan_compaction(files, target_bytes=100 * MB, min_files=3)) == 1
    assert plan_compaction(files, target_bytes=100 * MB, min_files=4) == []


def test_plan_is_deterministic_whatever_the_input_order():
    files = _files("d", [MB * (i + 1) for i in range(10)])
    assert plan_compaction(files, 8 * MB) == plan_compaction(list(reversed(files)), 8 * MB)


def _snaps(n: int, carrying: set[int] = frozenset()) -> list[SnapshotEntry]:
    return [SnapshotEntry(i, 1000 * i, i in carrying) for i in range(1, n + 1)]


def test_expiry_keeps_the_newest_n_and_returns_the_rest_oldest_first():
    assert plan_expiry(_snaps(10), keep=3, ancestry=range(10, 0, -1)) == [1, 2, 3, 4, 5, 6, 7]


def test_expiry_by_age_only_takes_snapshots_older_than_the_cutoff_beyond_keep():
    assert plan_expiry(_snaps(10), keep=2, older_than_ms=4500) == [1, 2, 3, 4]
    assert plan_expiry(_snaps(10), keep=8, older_than_ms=9500) == [1, 2]


def test_expiry_never_takes_branch_heads_or_the_newest_snapshot_carrying_the_consumers_state():
    # current is 10 (no state: a snapshot some other tool wrote), 8 carries the state, 3 is a tag
    victims = plan_expiry(_snaps(10, carrying={2, 5, 8}), keep=1, protected=[10, 3], ancestry=range(10, 0, -1))
    assert victims == [1, 2, 4, 5, 6, 7, 9]


def test_expiry_keeps_at_least_one_snapshot():
    assert plan_expiry(_snaps(3), keep=0) == [1, 2]


def test_orphans_are_unreferenced_and_old_enough():
    stored = [StoredFile("/w/t/data/a.parquet", 1_000), StoredFile("/w/t/data/b.parquet", 1_000),
              StoredFile("/w/t/data/new.parquet", 9_500), StoredFile("/w/t/metadata/v1.json", 1_000)]
    found = find_orphans(stored, ["file:///w/t/data/a.parquet", "file:///w/t/metadata/v1.json"], now_ms=10_000,
                         min_age_ms=1_000)
    assert [f.path for f in found] == ["/w/t/data/b.parquet"]  # new.parquet is too young: a writer may add it


def test_paths_compare_without_scheme_or_doubled_slashes():
    assert normalise_path("file:///w//t/x") == normalise_path("/w/t/x") == "/w/t/x"
    assert normalise_path("s3://bucket/t/x") == "/bucket/t/x"

"""Rich output of `k2 lake`: stats table, compaction plan and result, progress bar, orphan list."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


def _mb(size: int) -> str:
    return f"{size / 1_048_576:,.2f} MB"


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def render_stats(stats: Any) -> None:
    """Files per partition, then snapshots and manifests."""
    from rich.table import Table

    table = Table(title=f"{stats.table}: data files per day partition", header_style="bold")
    for name in ("partition", "files", "small", "rows", "size"):
        table.add_column(name, justify="left" if name == "partition" else "right", no_wrap=True)
    for p in stats.partitions:
        table.add_row(p.partition, f"{p.files:,}", f"{p.small_files:,}", f"{p.records:,}", _mb(p.size_bytes))
    t = stats.totals()
    table.add_row("total", f"{t['files']:,}", f"{t['small_files']:,}", f"{t['records']:,}", _mb(t["size_bytes"]),
                  style="bold")
    console = _console()
    console.print(table)
    ops = ", ".join(f"{op} {n}" for op, n in sorted(stats.snapshots_by_operation.items())) or "none"
    console.print(f"snapshots: {stats.snapshots} ({ops}); oldest {stats.oldest_snapshot or '-'}, newest "
                  f"{stats.newest_snapshot or '-'}")
    console.print(f"manifests (current snapshot): {stats.manifests}, {_mb(stats.manifest_bytes)}; "
                  f"metadata log: {stats.metadata_log} files; location {stats.location}")


def render_compaction_plan(groups: list[dict[str, Any]]) -> None:
    """What a compaction would rewrite."""
    console = _console()
    if not groups:
        console.print("nothing to compact: no partition has small files enough to group")
        return
    for g in groups:
        console.print(f"{g['partition']}: {g['files']:,} files, {g['records']:,} rows, {_mb(g['bytes'])}")
    console.print(f"would rewrite {sum(g['files'] for g in groups):,} files in {len(groups)} groups (dry run)")


@contextlib.contextmanager
def compaction_progress(live: bool) -> Iterator[Any]:
    """A progress bar over the groups on stderr (only on a terminal); yields the engine's progress callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    show = live and sys.stderr.isatty()
    columns = (TextColumn("compact {task.fields[partition]}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=_console(stderr=True), transient=True, disable=not show) as bar:
        task = bar.add_task("compact", total=None, partition="")

        def on_progress(group: Any, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, partition=group.partition)

        yield on_progress


def render_compaction(result: Any) -> None:
    """One line per outcome."""
    console = _console()
    if not result.groups and not result.abandoned:
        console.print("nothing to compact: no partition has small files enough to group")
        return
    console.print(f"compacted {result.files_removed:,} files into {result.files_added:,} in "
                  f"{len(result.partitions)} partitions ({result.records:,} rows, {_mb(result.bytes_before)} → "
                  f"{_mb(result.bytes_after)}), {result.groups} commits, {result.attempts} attempts")
    if result.abandoned:
        console.print(f"{result.abandoned} groups left alone: another writer rewrote their files meanwhile")


def render_orphans(result: Any) -> None:
    """The orphan files, then what was done."""
    console = _console()
    for f in result.orphans:
        console.print(f"{f.path}  {_mb(f.size_bytes)}")
    size = sum(f.size_bytes for f in result.orphans)
    if result.dry_run:
        console.print(f"{len(result.orphans)} orphan files ({_mb(size)}) of {result.scanned} scanned; dry run, "
                      "--delete removes them")
    else:
        console.print(f"deleted {result.deleted} of {len(result.orphans)} orphan files ({_mb(size)}); "
                      f"{result.scanned} scanned")

"""Run one reader until the table holds every record (optionally killed -9 at a fraction and restarted), and
measure it from the table's snapshots: steady rows/s between commits, time to the last commit, peak RSS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lake import Lake, Snapshot, snapshots
from procs import Tree

POLL_S = 0.25  # a snapshot check reads one small metadata file


def drive(start: Callable[[bool], Tree], lake: Lake, table: str, records: int, *, exits_itself: bool,
          kill_at: float | None = None, timeout: float = 600.0) -> dict[str, Any]:
    """start(first) starts the reader (first=False: the restart after the kill); returns the measurements."""
    t0 = time.time()
    tree = start(True)
    trees = [tree]
    killed_at_rows: int | None = None
    status = "ok"
    snaps: list[Snapshot] = []
    while True:
        time.sleep(POLL_S)
        snaps = snapshots(lake, table)
        total = snaps[-1].total if snaps else 0
        if kill_at is not None and killed_at_rows is None and total >= kill_at * records:
            tree.kill()  # SIGKILL to the whole group
            tree.reap()
            killed_at_rows = total
            tree = start(False)
            trees.append(tree)
            continue
        if total >= records:
            break
        if not tree.alive():
            status = f"exited {tree.proc.returncode} at {total:,} rows: {tree.log_tail(600)}"
            break
        if time.time() - t0 > timeout:
            status = f"timed out after {timeout:.0f} s at {total:,} rows"
            break
    if exits_itself and status == "ok":
        deadline = time.time() + 60
        while tree.alive() and time.time() < deadline:
            time.sleep(0.05)
    ended = time.time() if not tree.alive() else None
    code = tree.stop()
    snaps = snapshots(lake, table)
    return _figures(t0, snaps, trees, status, code, ended, killed_at_rows, tree.stdout)


def _figures(t0: float, snaps: list[Snapshot], trees: list[Tree], status: str, code: int, ended: float | None,
             killed_at_rows: int | None, stdout: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "exit_code": code, "commits": len(snaps),
                           "peak_rss_mb": round(max(t.peak_rss for t in trees) / 2**20, 1),
                           "rows_committed": snaps[-1].total if snaps else 0, "logs": [str(t.log) for t in trees]}
    if killed_at_rows is not None:
        out["killed_at_rows"] = killed_at_rows
    if snaps:
        first, last = snaps[0].at_ms / 1000, snaps[-1].at_ms / 1000
        out["commit_times_s_and_rows"] = [[round(sn.at_ms / 1000 - t0, 2), sn.added] for sn in snaps]
        out["first_commit_s"] = round(first - t0, 2)
        out["to_last_commit_s"] = round(last - t0, 2)
        if len(snaps) >= 2 and last > first:
            out["steady_rows_per_s"] = round(sum(s.added for s in snaps[1:]) / (last - first), 1)
        if ended is not None:
            out["exit_after_last_commit_s"] = round(ended - last, 2)
    if ended is not None:
        out["wall_s"] = round(ended - t0, 2)
    if stdout.strip():
        out["stdout_tail"] = stdout.decode(errors="replace")[-4000:]
    return out

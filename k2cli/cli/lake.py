"""`k2 lake`: table maintenance — stats, compact, expire, orphans; safe while `k2 consume` runs."""

from __future__ import annotations

from typing import Any

import typer

from k2cli.cli.options import RICH_JSON, TABLE, Format, format_option, setting_help

app = typer.Typer(
    help="Maintain the Iceberg trades table: stats, compact small files, expire snapshots, remove orphan files.\n\n"
    "Every command is safe while `k2 consume` runs: commits are optimistic and retried, and each maintenance "
    "snapshot carries the consumer's Kafka offsets and dedup state forward, so an exactly-once resume still "
    "finds them.",
    no_args_is_help=True,
)

FORMAT = format_option(RICH_JSON, "rich (default) or json.")
MIN_ORPHAN_AGE_S = 600


def _table(table: str | None) -> Any:
    from k2cli.lake.maintenance import open_table
    from k2cli.settings import load_settings

    settings = load_settings(table=table)
    return open_table(settings)


def _size(text: str, flag: str) -> int:
    from k2cli.lake.maintenance_plan import parse_size

    return parse_size(text, flag)


def _print(data: dict[str, Any]) -> None:
    from k2cli.cli._output import print_json

    print_json(data)


@app.command()
def stats(
    small_below: str = typer.Option("96MB", "--small-below", metavar="SIZE",
                                    help="Count data files below SIZE as small (compaction candidates)."),
    fmt: Format = FORMAT,
    table: str = TABLE,
) -> None:
    """Data files per day partition (count, rows, bytes, small files), snapshots and manifests."""
    from dataclasses import asdict

    from k2cli.lake.maintenance import table_stats

    limit = _size(small_below, "--small-below")
    result = table_stats(_table(table), limit)
    if fmt == Format.json:
        _print({**asdict(result), "totals": result.totals()})
        return
    from k2cli.cli.lake_render import render_stats

    render_stats(result)


@app.command()
def compact(
    target_size: str = typer.Option("128MB", "--target-size", metavar="SIZE",
                                    help="Size of the files to write; files below 3/4 of it are rewritten."),
    min_files: int = typer.Option(2, "--min-files", min=2, help="Rewrite a group only if it has at least N files."),
    partition: list[str] = typer.Option(None, "--partition", "-p", metavar="DAY",
                                        help="Only this day partition (2026-01-01); repeatable."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show which files would be rewritten."),
    fmt: Format = FORMAT,
    table: str = TABLE,
) -> None:
    """Rewrite small data files into target-size files, one day partition at a time (rows and Decimals exact)."""
    from k2cli.lake import compaction

    target = _size(target_size, "--target-size")
    tbl = _table(table)
    wanted = set(partition) if partition else None
    if dry_run:
        _, groups = compaction.plan(tbl, target, min_files, wanted)
        plan = [{"partition": g.partition, "files": len(g.files), "records": g.records, "bytes": g.size_bytes}
                for g in groups]
        if fmt == Format.json:
            _print({"dry_run": True, "groups": plan})
        else:
            from k2cli.cli.lake_render import render_compaction_plan

            render_compaction_plan(plan)
        return
    from k2cli.cli.lake_render import compaction_progress

    with compaction_progress(live=fmt == Format.rich) as on_progress:
        result = compaction.compact(tbl, target, min_files=min_files, partitions=wanted, on_progress=on_progress)
    if fmt == Format.json:
        from dataclasses import asdict

        _print(asdict(result))
    else:
        from k2cli.cli.lake_render import render_compaction

        render_compaction(result)


@app.command()
def expire(
    keep: int = typer.Option(None, "--keep", min=1, help=setting_help("Keep the newest N snapshots",
                                                                       "snapshots_to_keep")),
    older_than: str = typer.Option(None, "--older-than", metavar="DURATION",
                                   help="Only expire snapshots older than this (90s, 15m, 2h, 7d)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show which snapshots would be expired."),
    fmt: Format = FORMAT,
    table: str = TABLE,
) -> None:
    """Expire snapshots beyond the newest N (and older than a duration), deleting files only they referenced.

    The newest snapshot carrying the consumer's offsets and dedup state is always kept.
    """
    import time
    from dataclasses import asdict

    from k2cli.lake import retention
    from k2cli.settings import load_settings
    from k2cli.timespec import parse_duration

    cutoff = None
    if older_than is not None:
        cutoff = int((time.time() - parse_duration(older_than, "--older-than").total_seconds()) * 1000)
    settings = load_settings(table=table)
    tbl = _table(table)
    result = retention.expire(tbl, keep or settings.snapshots_to_keep, cutoff, dry_run=dry_run)
    if fmt == Format.json:
        _print(asdict(result))
        return
    verb = "would expire" if result.dry_run else "expired"
    deleted = "" if result.dry_run else f", {result.files_deleted} files only they referenced deleted"
    typer.echo(f"{verb} {len(result.expired)} snapshots, {result.retained} retained{deleted}")


@app.command()
def orphans(
    older_than: str = typer.Option("1d", "--older-than", metavar="DURATION",
                                   help="Only files last modified longer ago than this (at least 10m: a writer's "
                                        "files exist before the commit that adds them)."),
    delete: bool = typer.Option(False, "--delete", help="Delete the orphan files (default: only list them)."),
    fmt: Format = FORMAT,
    table: str = TABLE,
) -> None:
    """Files under the table that no snapshot or metadata references; a dry run unless --delete."""
    from k2cli.cli.options import usage_error
    from k2cli.lake import retention
    from k2cli.timespec import parse_duration

    age = parse_duration(older_than, "--older-than").total_seconds()
    if age < MIN_ORPHAN_AGE_S:
        raise usage_error(f"--older-than {older_than} is below 10m: files a running writer is about to commit "
                          "would look orphaned")
    result = retention.orphans(_table(table), int(age * 1000), delete=delete)
    if fmt == Format.json:
        _print({"dry_run": result.dry_run, "scanned": result.scanned, "deleted": result.deleted,
                "orphans": [{"path": f.path, "size_bytes": f.size_bytes, "modified_ms": f.modified_ms}
                            for f in result.orphans]})
        return
    from k2cli.cli.lake_render import render_orphans

    render_orphans(result)

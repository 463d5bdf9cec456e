"""`k2 dlq`: list, show, count, replay and purge dead-lettered records (consume- and stream-side)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from k2cli.cli._output import emit
from k2cli.cli.options import DATA_FORMAT, OUTPUT, Format, setting_help, usage_error
from k2cli.jsonutil import plain
from k2cli.settings import env_name

app = typer.Typer(
    help="List, inspect, replay and purge dead-lettered records.\n\n"
    "Entries come from `k2 consume` (origin consume: the original Kafka value bytes) and `k2 stream` "
    "(origin stream: the raw exchange frame, and the parsed record when there is one). "
    f"The directory is {env_name('dlq_dir')} (default ${env_name('data_dir')}/dlq). "
    "Times: ISO 8601 or a duration ago (15m, 2h, 7d).",
    no_args_is_help=True,
)

DIR_OPTION = typer.Option(None, "--dlq-dir", metavar="DIR", help=setting_help(
    "DLQ directory", "dlq_dir", default=f"${env_name('data_dir')}/dlq"))
ORIGIN_OPTION = typer.Option(None, "--origin", help="Only entries from consume or stream.")
ERROR_TYPE_OPTION = typer.Option(None, "--error-type", "-t", help="Only this error type (repeatable).")
SINCE_OPTION = typer.Option(None, "--since", metavar="TIME", help="Only entries at or after TIME.")
UNTIL_OPTION = typer.Option(None, "--until", metavar="TIME", help="Only entries before TIME.")
LIST_COLUMNS = ("id", "time", "origin", "error_type", "transient", "topic", "partition", "offset", "exchange",
                "replay", "replayable", "error", "file")


def _settings(dlq_dir: str | None) -> Any:
    from k2cli.settings import load_settings

    return load_settings(dlq_dir=Path(dlq_dir) if dlq_dir else None)


def _filter(ids: list[str] | None, error_types: list[str] | None, since: str | None, until: str | None,
            origin: str | None) -> Any:
    from k2cli.reliability.dlq_ops import EntryFilter
    from k2cli.timespec import parse_instant

    if origin is not None and origin not in ("consume", "stream"):
        raise usage_error(f"--origin must be consume or stream, got {origin!r}")
    return EntryFilter(
        ids=tuple(i.strip() for i in ids or () if i.strip()), error_types=tuple(error_types or ()),
        since=parse_instant(since, "--since") if since else None,
        until=parse_instant(until, "--until") if until else None, origin=origin)


def _short(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["id"] = row["id"][:12]
    error = row.get("error") or ""
    out["error"] = error if len(error) <= 60 else error[:57] + "..."
    return out


@app.command("list")
def list_entries(
    error_type: list[str] = ERROR_TYPE_OPTION,
    since: str = SINCE_OPTION,
    until: str = UNTIL_OPTION,
    origin: str = ORIGIN_OPTION,
    limit: int = typer.Option(None, "--limit", "-n", min=1, help="Only the newest N matching entries."),
    fmt: Format = DATA_FORMAT,
    output: str = OUTPUT,
    dlq_dir: str = DIR_OPTION,
) -> None:
    """Entries, oldest first: id, time, origin, error type, source topic/partition/offset, replay state."""
    from k2cli.reliability import dlq_ops

    settings = _settings(dlq_dir)
    flt = _filter(None, error_type, since, until, origin)
    data = dlq_ops.scan(settings.dlq_path)
    ledger = dlq_ops.ReplayLedger(settings.dlq_path).load()
    rows = [dlq_ops.summary(e, ledger) for e in dlq_ops.select(data.entries, flt)]
    rows.sort(key=lambda r: (r["time"] is None, r["time"] or 0))
    if limit:
        rows = rows[-limit:]
    bad = sum(data.bad_lines.values())
    footer = f"{len(rows)} entries in {settings.dlq_path}" + (f" · {bad} unreadable lines" if bad else "")
    if fmt in (Format.table, Format.rich):
        emit([_short(r) for r in rows], LIST_COLUMNS, fmt, output,
             table_columns=[c for c in LIST_COLUMNS if c not in ("transient", "file", "replayable")],
             title="dead-letter entries", footer=footer)
    else:
        emit(rows, LIST_COLUMNS, fmt, output)


@app.command()
def show(
    entry_id: str = typer.Argument(..., metavar="ID", help="Entry id (or a unique prefix of it)."),
    fmt: Format = DATA_FORMAT,
    output: str = OUTPUT,
    dlq_dir: str = DIR_OPTION,
) -> None:
    """Everything about one entry: error, source, original value (base64 and text), frame, record, replay."""
    from k2cli.reliability import dlq_ops

    settings = _settings(dlq_dir)
    entry = dlq_ops.find(dlq_ops.scan(settings.dlq_path).entries, entry_id)
    detail = dlq_ops.detail(entry, dlq_ops.ReplayLedger(settings.dlq_path).load())
    if fmt == Format.json:
        emit([], [], fmt, output, document=detail)
        return
    rows = [{"field": k, "value": v} for k, v in detail.items()]
    emit(rows, ["field", "value"], fmt, output, title=f"DLQ entry {entry.id}")


@app.command()
def stats(
    fmt: Format = DATA_FORMAT,
    output: str = OUTPUT,
    dlq_dir: str = DIR_OPTION,
) -> None:
    """Counts by origin, error type and file; oldest and newest entry; replay states."""
    from k2cli.reliability import dlq_ops

    settings = _settings(dlq_dir)
    data = dlq_ops.stats(settings.dlq_path)
    if fmt == Format.json:
        emit([], [], fmt, output, document=data)
        return
    rows: list[dict[str, Any]] = [
        {"group": "total", "key": "entries", "count": data["entries"]},
        *({"group": "origin", "key": k, "count": v} for k, v in data["by_origin"].items()),
        *({"group": "error_type", "key": k, "count": v} for k, v in data["by_error_type"].items()),
        *({"group": "file", "key": k, "count": v["entries"], "oldest": v["oldest"], "newest": v["newest"],
           "bytes": v["bytes"]} for k, v in data["by_file"].items()),
        *({"group": "replay", "key": k, "count": v} for k, v in data["replay"].items()),
        {"group": "total", "key": "not replayable", "count": data["not_replayable"]},
        {"group": "total", "key": "unreadable lines", "count": data["unreadable_lines"]},
    ]
    footer = f"oldest {plain(data['oldest'])} · newest {plain(data['newest'])} · {data['directory']}"
    emit(rows, ["group", "key", "count", "oldest", "newest", "bytes"], fmt, output, title="DLQ statistics",
         footer=footer)


@app.command()
def replay(
    entry_ids: list[str] = typer.Option(None, "--id", help="Replay this entry (id or unique prefix; repeatable)."),
    error_type: list[str] = ERROR_TYPE_OPTION,
    since: str = SINCE_OPTION,
    until: str = UNTIL_OPTION,
    origin: str = ORIGIN_OPTION,
    all_entries: bool = typer.Option(False, "--all", help="Replay every entry (needed when no filter is given)."),
    to_topic: str = typer.Option(None, "--to-topic", metavar="TOPIC",
                                 help="Produce here instead of the entry's source/exchange topic."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be replayed; produce nothing."),
    retry_failed: bool = typer.Option(False, "--retry-failed",
                                      help="Also retry entries whose earlier replay failed (the broker may still "
                                      "have stored them)."),
    fmt: Format = DATA_FORMAT,
    output: str = OUTPUT,
    dlq_dir: str = DIR_OPTION,
) -> None:
    """Re-produce dead-lettered records to Kafka, at most once per entry (recorded in a ledger).

    Entries holding Kafka value bytes (consume entries; stream records Kafka refused or had not acknowledged
    when the stream stopped): the original bytes, unchanged, to the source topic.

    stream entries with a parsed record and no bytes: that record, Avro-encoded, to the exchange topic.

    stream entries holding only a raw frame are not replayable (they never became a record): skipped.

    Exits 1 if any replay failed.
    """
    from k2cli.reliability import dlq_ops

    flt = _filter(entry_ids, error_type, since, until, origin)
    if not (flt.ids or flt.error_types or flt.since or flt.until or flt.origin or all_entries):
        raise usage_error("say what to replay: --id, --error-type, --since/--until, --origin, or --all")
    settings = _settings(dlq_dir)
    outcomes = dlq_ops.replay(settings.dlq_path, flt, settings, to_topic=to_topic, dry_run=dry_run,
                              retry_failed=retry_failed)
    rows = [vars(o) for o in outcomes]
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    columns = ["id", "origin", "error_type", "status", "topic", "partition", "offset", "reason"]
    if fmt == Format.json:
        emit([], [], fmt, output, document={"dry_run": dry_run, "counts": counts, "entries": rows})
    else:
        tally = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing matched"
        emit([_short_id(r) for r in rows] if fmt in (Format.table, Format.rich) else rows, columns, fmt,
             output, title="DLQ replay" + (" (dry run)" if dry_run else ""), footer=tally)
    if counts.get("failed"):
        raise typer.Exit(1)


def _short_id(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "id": row["id"][:12]}


@app.command()
def purge(
    older_than: str = typer.Option(..., "--older-than", metavar="DURATION",
                                   help="Remove entries older than this (e.g. 7d, 12h)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
    fmt: Format = DATA_FORMAT,
    dlq_dir: str = DIR_OPTION,
) -> None:
    """Remove entries older than DURATION: lists them first, then removes exactly those (asks unless --yes)."""
    from k2cli.reliability import dlq_ops
    from k2cli.timespec import parse_duration

    settings = _settings(dlq_dir)
    plan = dlq_ops.plan_purge(settings.dlq_path, parse_duration(older_than, "--older-than"))
    ledger = dlq_ops.ReplayLedger(settings.dlq_path).load()
    rows = [dlq_ops.summary(e, ledger) for e in plan.entries]
    document: dict[str, Any] = {"cutoff": plan.cutoff, "listed": len(rows), "removed": 0, "dry_run": dry_run,
                                "files_deleted": plan.whole_files, "files_rewritten": plan.partial_files,
                                "entries": rows}
    if fmt != Format.json:
        emit([_short(r) for r in rows], LIST_COLUMNS, Format.table, None,
             table_columns=("id", "time", "origin", "error_type", "topic", "offset", "file"),
             title=f"entries older than {older_than}", footer=f"{len(rows)} entries to remove")
    if not rows or dry_run:
        if fmt == Format.json:
            emit([], [], fmt, None, document=document)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise dlq_ops.DLQOpError(f"purge would remove {len(rows)} entries; confirm with --yes "
                                     "(no terminal to ask on)")
        if not typer.confirm(f"Remove these {len(rows)} entries?", err=True):
            typer.echo("k2: purge cancelled; nothing removed", err=True)
            raise typer.Exit(1)
    removed = dlq_ops.purge(settings.dlq_path, plan)
    document["removed"] = removed
    if fmt == Format.json:
        emit([], [], fmt, None, document=document)
    else:
        typer.echo(f"removed {removed} of {len(rows)} listed entries", err=True)
    if removed != len(rows):
        typer.echo(f"k2: warning: {len(rows) - removed} listed entries were already gone", err=True)

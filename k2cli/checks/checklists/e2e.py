"""`k2 validate e2e`: the consumer E2E procedure of seed 000, steps 1-6, through the real pipeline.

1. Baseline: table snapshots and records, the topic's pending messages for the table's offsets.
   Test data: when fewer than e2e_messages are pending, the rest is streamed by `k2 stream` from a local
   `k2 simulate` exchange (or --url) while the consumer runs; one poison record is injected.
2. `k2 consume --max-messages M --format json` over exactly the pending messages: no loss, no errors, the
   sequence-gap count equal to the gaps in the records themselves, throughput and cold start.
3. The snapshots and record count the run added; every consumed message_id is in the files it wrote.
4. `k2 query trades --format json`: count, ordering, every v2 field, types.
5. Prometheus: consumer throughput and p99 write duration over the run; peak consumer RSS.
6. The poison record is in the DLQ with its original bytes; nothing else was dead-lettered.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from k2cli.checks import metricnames as mn
from k2cli.checks.checklists import common, v2check
from k2cli.checks.context import Context, Options
from k2cli.checks.model import Checklist, Result, Status, Step
from k2cli.checks.probes import kafka
from k2cli.checks.probes.proc import StepError, rss_tree, run_k2, spawn_k2, wait_for

POISON_PREFIX = b"k2-validate poison "
POISON_KEY = b"k2-validate-poison"

# The consumer's statistics block (`k2 consume --format json`): accepted spellings of each figure.
STATS = {
    "consumed": ("messages_consumed", "consumed"),
    "written": ("messages_written", "written"),
    "dead_lettered": ("dlq_entries", "messages_dead_lettered", "dead_lettered"),
    "errors": ("errors", "unhandled_errors"),
    "gaps": ("sequence_gaps", "gaps"),
    "duration": ("duration_s", "duration_seconds", "duration"),
    "throughput": ("throughput_msg_per_sec", "throughput_msg_per_s", "throughput"),
}


def stat(stats: dict[str, Any], name: str) -> float:
    """A figure from the consumer's statistics block, whatever its nesting ('statistics': {...})."""
    for source in (stats, stats.get("statistics") or {}, stats.get("stats") or {}):
        for key in STATS[name]:
            if isinstance(source, dict) and isinstance(source.get(key), int | float):
                return source[key]
    raise StepError(f"the consumer's statistics have no {STATS[name][0]!r} (keys: {', '.join(sorted(stats))})")


def topic_of(ctx: Context) -> str:
    """The topic under test."""
    return ctx.settings.exchange_topic(ctx.options.exchange)


def is_poison(value: bytes | None) -> bool:
    """Whether a Kafka value is a poison record a validation run injected."""
    return value is not None and value.startswith(POISON_PREFIX)


def _summary(snapshot: Any) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot is not None and snapshot.summary else {}


def dlq_rows(ctx: Context) -> list[dict[str, Any]]:
    """`k2 dlq list --format json`: every entry of the DLQ directory in force."""
    done = run_k2(["dlq", "list", "--format", "json"], timeout=60)
    if done.returncode != 0:
        raise StepError(f"`{done.command}` exited {done.returncode}: {done.stderr.strip()[-200:]}")
    rows = done.json()
    return rows if isinstance(rows, list) else []


# ---------------------------------------------------------------- before the run


def measure_clean_state(ctx: Context) -> Result:
    """The consumer group has no active members (another consumer would take partitions from the run)."""
    group = ctx.settings.consumer_group
    # k2 consume is a static member: a clean exit keeps its slot until the session timeout, so a consumer
    # that has just finished is given that long to drop out before the group counts as busy
    deadline = time.monotonic() + ctx.settings.consumer_session_timeout + 3.0
    state, members = kafka.group_state(ctx.settings, group)
    waited = 0.0
    while members and time.monotonic() < deadline:
        time.sleep(0.5)
        waited += 0.5
        state, members = kafka.group_state(ctx.settings, group)
    if members:
        return Result.failed(f"consumer group {group} has {members} active member(s) (state {state}); stop the "
                             "running consumer first", measured=members, threshold="== 0", unit="members")
    note = f" after {waited:.1f} s for a departed member's session to expire" if waited else ""
    return Result.passed(f"consumer group {group} is idle (state {state}){note}", measured=0, threshold="== 0",
                         unit="members")


def measure_baseline(ctx: Context) -> Result:
    """Snapshot count, record count and resume offsets of the table; pending messages on the topic."""
    from k2cli.lake.offsets import offsets_from_summaries

    topic = topic_of(ctx)
    marks = kafka.watermarks(ctx.settings, topic)
    if not marks:
        return Result.failed(f"topic {topic} does not exist")
    table = common.load_table(ctx)
    snapshots = {s.snapshot_id for s in table.metadata.snapshots} if table is not None else set()
    current = table.current_snapshot() if table is not None else None
    records = int(_summary(current).get("total-records", 0))
    table_offsets = offsets_from_summaries([_summary(current)])
    committed = kafka.committed(ctx.settings, ctx.settings.consumer_group, topic)
    start, source = {}, {}
    for p, (low, _high) in marks.items():
        if (topic, p) in table_offsets:
            start[p], source[p] = max(low, table_offsets[(topic, p)]), "table"
        elif (group_offset := committed.get(p)) is not None:
            start[p], source[p] = max(low, group_offset), "group"
        else:
            start[p], source[p] = low, "earliest"
    pending = sum(max(0, marks[p][1] - start[p]) for p in marks)
    dlq_ids = {row["id"] for row in dlq_rows(ctx)}
    ctx.state["baseline"] = {"snapshots": snapshots, "records": records, "start": start, "pending": pending,
                             "dlq_ids": dlq_ids, "current": current.snapshot_id if current else None}
    evidence = [f"table {ctx.settings.table}: {len(snapshots)} snapshots, {records} records"
                + ("" if table is not None else " (not created yet)"),
                f"topic {topic}: {len(marks)} partitions, {pending} messages pending",
                "resume offsets from: " + ", ".join(f"p{p}={start[p]} ({source[p]})" for p in sorted(start)),
                f"DLQ {ctx.settings.dlq_path}: {len(dlq_ids)} entries"]
    return Result.passed(f"{len(snapshots)} snapshots, {records} records; {pending} messages pending on {topic}",
                         measured=pending, unit="messages pending", evidence=evidence)


def measure_test_data(ctx: Context) -> Result:
    """Plan a known message count: the pending backlog, trades to stream if it is short, one poison record."""
    from k2cli.checks.probes import pipeline

    wanted = int(ctx.threshold("e2e_messages"))
    base = ctx.state["baseline"]
    need = max(0, wanted - 1 - base["pending"])
    if base["pending"] + 1 > ctx.threshold("e2e_max_backlog"):
        return ctx.check("e2e_max_backlog", base["pending"] + 1,
                         f"{base['pending']} messages are pending; consume the backlog (or reset the group) before "
                         "a validation run")
    url, evidence = None, []
    if need:
        exchange = ctx.options.exchange
        if ctx.options.url:
            url = ctx.options.url
        else:
            symbols = ctx.settings.exchange(exchange).symbols
            # slow enough that the run spans three Prometheus scrapes of the consumer, so its rate is measurable
            interval = scrape_interval(ctx)
            rate = min(ctx.threshold("e2e_stream_rate"), max(1.0, need / (3 * interval)))
            sim = pipeline.start_simulator(ctx, exchange, symbols=list(symbols), rate=round(rate, 1),
                                           skip_ids_every=int(ctx.threshold("e2e_gap_every")))
            url = sim.url
            evidence.append(f"simulator at {rate:.0f} trades/s (Prometheus scrapes every {interval:g} s)")
        evidence.append(f"will stream {need} trades from {url} while the consumer runs")
    poison = POISON_PREFIX + uuid.uuid4().hex.encode()
    [(partition, offset)] = kafka.produce(ctx.settings, topic_of(ctx), [(POISON_KEY, poison)])
    total = base["pending"] + need + 1
    ctx.state["plan"] = {"need": need, "url": url, "total": total,
                         "poison": {"partition": partition, "offset": offset, "value": poison}}
    evidence.append(f"poison record injected at partition {partition} offset {offset} ({len(poison)} bytes, "
                    "no Confluent magic byte)")
    return Result.passed(f"{base['pending']} pending + {need} to stream + 1 poison = {total} messages",
                         measured=total, unit="messages", evidence=evidence)


def scrape_interval(ctx: Context) -> float:
    """Prometheus's scrape interval for the consumer job (15 s, Prometheus's default, when unknown)."""
    from k2cli.errors import ServiceUnavailable

    try:
        for target in common.k2_targets(ctx):
            if target.get("labels", {}).get("job") == mn.CONSUMER_JOB and target.get("scrapeInterval"):
                return float(str(target["scrapeInterval"]).rstrip("s"))
    except ServiceUnavailable:
        pass
    return 15.0


# ---------------------------------------------------------------- step 2: the consumer run


def run_consume(ctx: Context) -> Result:
    """Run `k2 consume` over exactly the planned messages (streaming the missing ones at the same time)."""
    plan = ctx.state["plan"]
    topic = topic_of(ctx)
    args = ["consume", "--topics", topic, "--max-messages", str(plan["total"]), "--batch-size",
            str(ctx.settings.batch_size), "--group", ctx.settings.consumer_group, "--format", "json"]
    limit = ctx.threshold("e2e_run_max_s")
    started_wall = time.time()
    consumer = spawn_k2(args, str(ctx.workdir))
    ctx.on_close(consumer.stop)
    producer = None
    if plan["need"]:
        ctx.progress("waiting for the consumer to join its group before streaming the test data")
        wait_for(lambda: not consumer.alive() or _assigned(ctx) > 0, timeout=60, interval=0.5)
        producer = spawn_k2(["stream", ctx.options.exchange, "--url", plan["url"], "--topic", topic,
                             "--max-messages", str(plan["need"]), "--duration", f"{limit:g}", "--metrics-port", "0"],
                            str(ctx.workdir))
        ctx.on_close(producer.stop)
    peak, deadline = 0, time.monotonic() + limit
    while consumer.alive():
        peak = max(peak, rss_tree(consumer.proc.pid))
        if producer is not None and not producer.alive() and producer.proc.returncode != 0:
            consumer.stop()
            done = producer.finish(5)
            return Result.failed(f"`k2 stream` (test data) exited {done.returncode}: "
                                 f"{done.stderr.strip()[-300:]}", evidence=[done.command])
        if time.monotonic() > deadline:
            consumer.stop()
            return Result.failed(f"`k2 consume` did not finish {plan['total']} messages within {limit:g} s",
                                 evidence=[consumer.command])
        ctx.progress(f"k2 consume running {time.time() - started_wall:.0f} s, RSS {peak / 2**20:.0f} MB")
        time.sleep(0.25)
    ended_wall = time.time()
    done = consumer.finish(5)
    stream_done = producer.finish(30) if producer is not None else None
    evidence = [f"command: {done.command}", f"exit code: {done.returncode}", f"peak RSS: {peak / 2**20:.1f} MB"]
    if stream_done is not None:
        evidence.append(f"test data: `{stream_done.command}` exited {stream_done.returncode}")
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return Result.failed(f"`k2 consume` exited {done.returncode}", evidence=evidence + tail)
    stats = done.json()
    ctx.state["consume"] = {"stats": stats, "started": started_wall, "ended": ended_wall, "peak_rss": peak,
                            "stderr": done.stderr, "stream_stderr": stream_done.stderr if stream_done else ""}
    consumed = stat(stats, "consumed")
    return Result.passed(f"k2 consume processed {int(consumed)} messages in {ended_wall - started_wall:.1f} s",
                         measured=consumed, unit="messages", evidence=evidence,
                         data={"statistics": stats})


def _assigned(ctx: Context) -> float:
    """Partitions the consumer reports as assigned on its metrics port (0 when it does not answer yet)."""
    from k2cli.checks.probes import pipeline

    metrics = pipeline.scrape(ctx.settings.consumer_metrics_port, timeout=0.5)
    return metrics.total("k2_consumer_assigned_partitions") or 0


def _new_snapshots(ctx: Context) -> tuple[Any, list[Any]]:
    """The table after the run and the snapshots the run added, oldest first."""
    table = common.load_table(ctx)
    if table is None:
        raise StepError(f"table {ctx.settings.table} still does not exist after the consumer run")
    table.refresh()
    old = ctx.state["baseline"]["snapshots"]
    new = sorted((s for s in table.metadata.snapshots if s.snapshot_id not in old), key=lambda s: s.timestamp_ms)
    return table, new


def consumed_messages(ctx: Context) -> list[Any]:
    """The Kafka messages the run consumed: from the baseline offsets to the table's offsets after the run."""
    if "consumed_messages" in ctx.state:
        return ctx.state["consumed_messages"]
    from k2cli.lake.offsets import offsets_from_summaries

    topic = topic_of(ctx)
    table, _ = _new_snapshots(ctx)
    after = offsets_from_summaries([_summary(table.current_snapshot())])
    start = ctx.state["baseline"]["start"]
    end = {p: after[(topic, p)] for (t, p) in after if t == topic}
    messages = kafka.read_range(ctx.settings, topic, start, end, timeout=60)
    ctx.state["consumed_messages"] = messages
    return messages


def consumed_records(ctx: Context) -> list[tuple[Any, dict[str, Any] | None]]:
    """Each consumed message with its record decoded through the registry (None for undecodable ones), once."""
    if "consumed_records" not in ctx.state:
        from k2cli.kafka.registry import RegistryClient
        from k2cli.kafka.serde import AvroDeserializer, DecodeError

        registry = RegistryClient.from_settings(ctx.settings)
        decoder = AvroDeserializer(registry)
        out: list[tuple[Any, dict[str, Any] | None]] = []
        try:
            for msg in consumed_messages(ctx):
                try:
                    out.append((msg, decoder.decode(msg.value())))
                except DecodeError:
                    out.append((msg, None))
        finally:
            registry.close()
        ctx.state["consumed_records"] = out
    return ctx.state["consumed_records"]


def measure_no_loss(ctx: Context) -> Result:
    """consumed == planned, and consumed == written + dead-lettered (every message accounted for)."""
    stats = ctx.state["consume"]["stats"]
    consumed, written = int(stat(stats, "consumed")), int(stat(stats, "written"))
    dead = int(stat(stats, "dead_lettered"))
    planned = ctx.state["plan"]["total"]
    lost = consumed - written - dead
    evidence = [f"planned {planned}, consumed {consumed}, written {written}, dead-lettered {dead}"]
    if consumed != planned:
        return Result.failed(f"consumed {consumed} messages, the run planned {planned}", measured=consumed,
                             threshold=f"== {planned}", unit="messages", evidence=evidence)
    if lost:
        return Result.failed(f"{lost} consumed messages were neither written nor dead-lettered", measured=lost,
                             threshold="== 0", unit="lost", evidence=evidence)
    return Result.passed(f"{consumed} consumed = {written} written + {dead} dead-lettered", measured=0,
                         threshold="== 0", unit="lost", evidence=evidence)


def measure_errors(ctx: Context) -> Result:
    """Errors the consumer reports beyond the records it dead-lettered (those are handled, e.g. the poison)."""
    stats = ctx.state["consume"]["stats"]
    errors, dead = stat(stats, "errors"), stat(stats, "dead_lettered")
    by_type = stats.get("errors_by_type") or {}
    return ctx.check("e2e_errors_max", errors - dead,
                     f"{int(errors - dead)} errors besides the {int(dead)} dead-lettered record(s)",
                     evidence=[f"errors {int(errors)}, dead-lettered {int(dead)}",
                               "by type: " + (", ".join(f"{k} {v}" for k, v in by_type.items()) or "none")])


def measure_gaps(ctx: Context) -> Result:
    """The consumer's gap count equals the gaps in the consumed records' source sequences."""
    reported = int(stat(ctx.state["consume"]["stats"], "gaps"))
    runs: dict[tuple[int, str, str], list[int]] = {}
    undecodable = 0
    for msg, rec in consumed_records(ctx):
        if rec is None:
            undecodable += 1
        elif rec.get("source_sequence") is not None:
            runs.setdefault((msg.partition(), rec["exchange"], rec["symbol"]), []).append(rec["source_sequence"])
    expected = sum(_gaps_in_order(seqs) for seqs in runs.values())
    evidence = [f"{p}/{ex}/{sym}: {len(seqs)} records, {_gaps_in_order(seqs)} gaps"
                for (p, ex, sym), seqs in sorted(runs.items())][:10]
    evidence.append(f"{undecodable} undecodable records (the poison) not counted")
    if reported != expected:
        return Result.failed(f"the consumer reported {reported} sequence gaps; the records hold {expected}",
                             measured=reported, threshold=f"== {expected}", unit="gaps", evidence=evidence)
    return Result.passed(f"{reported} sequence gaps reported, as in the records", measured=reported,
                         threshold=f"== {expected}", unit="gaps", evidence=evidence)


def _gaps_in_order(seqs: list[int]) -> int:
    """Forward jumps of more than 1 between consecutive sequence numbers as they arrived."""
    return sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b - a > 1)


def measure_throughput(ctx: Context) -> Result:
    """The consumer's own throughput and its cold start (run start to first committed snapshot)."""
    run = ctx.state["consume"]
    throughput = round(float(stat(run["stats"], "throughput")), 1)
    _, new = _new_snapshots(ctx)
    cold = round(new[0].timestamp_ms / 1000 - run["started"], 2) if new else math.nan
    tp = ctx.check("e2e_throughput_min_msg_per_s", throughput, f"throughput {throughput} msg/s")
    cs = ctx.check("e2e_cold_start_max_s", cold, f"cold start {cold} s to the first snapshot")
    status = Status.FAIL if Status.FAIL in (tp.status, cs.status) else Status.PASS
    duration = stat(run["stats"], "duration")
    return Result.make(status, f"{tp.summary}, {cs.summary}, duration {duration:.1f} s", measured=throughput,
                       unit="msg/s", threshold=f"{tp.threshold}; cold start {cs.threshold}",
                       evidence=[f"duration {duration} s", f"cold start {cold} s (process start to first commit)"])


# ---------------------------------------------------------------- step 3: Iceberg writes


def measure_snapshots(ctx: Context) -> Result:
    """The run added at least ceil(written/batch) snapshots, each with added-records and added-data-files."""
    written = int(stat(ctx.state["consume"]["stats"], "written"))
    batch = ctx.settings.batch_size
    _, new = _new_snapshots(ctx)
    expected = math.ceil(written / batch)
    evidence, problems, biggest = [], [], 0
    for snap in new:
        summary = _summary(snap)
        added = int(summary.get("added-records", 0))
        biggest = max(biggest, added)
        evidence.append(f"snapshot {snap.snapshot_id}: added-records={summary.get('added-records')} "
                        f"added-data-files={summary.get('added-data-files')}")
        if added and "added-data-files" not in summary:
            problems.append(f"snapshot {snap.snapshot_id} lacks added-data-files")
    if biggest > batch:
        problems.append(f"a snapshot added {biggest} records, more than the batch size {batch}")
    threshold = f">= {expected} (ceil({written}/{batch}))"
    if len(new) < expected or problems:
        return Result.failed(problems[0] if problems else f"{len(new)} new snapshots, expected at least {expected}",
                             measured=len(new), threshold=threshold, unit="snapshots", evidence=problems + evidence)
    text = f"{len(new)} new snapshots for {written} records at batch size {batch}"
    if len(new) > expected:
        if ctx.state["plan"]["need"]:  # streamed while consuming: a batch may age out before it fills
            text += f" ({len(new) - expected} partial batches flushed by age while the test data trickled in)"
        else:  # a backlog fills every batch: extra commits mean the consumer flushes early
            return Result.warned(text + " (time-based flushes made smaller commits from a full backlog)",
                                 measured=len(new), threshold=threshold, unit="snapshots", evidence=evidence)
    return Result.passed(text, measured=len(new), threshold=threshold, unit="snapshots", evidence=evidence)


def measure_records(ctx: Context) -> Result:
    """Total records grew by exactly the written count, and every consumed message_id is in the new files."""
    import pyarrow.parquet as pq

    written = int(stat(ctx.state["consume"]["stats"], "written"))
    table, new = _new_snapshots(ctx)
    total = int(_summary(table.current_snapshot()).get("total-records", 0))
    delta = total - ctx.state["baseline"]["records"]
    new_ids = {s.snapshot_id for s in new}
    entries = table.inspect.entries().to_pylist()
    paths = [e["data_file"]["file_path"] for e in entries if e["snapshot_id"] in new_ids and e["status"] != 2]
    in_table: set[str] = set()
    unreadable = []
    for path in paths:
        try:
            with table.io.new_input(path).open() as fh:
                in_table.update(pq.read_table(fh, columns=["message_id"]).column("message_id").to_pylist())
        except OSError as exc:  # a data file the new snapshots list is gone: the rows it held are lost
            unreadable.append(f"data file {path} cannot be read: {exc.__class__.__name__}: {exc}")
    missing, decoded = [], 0
    for msg, rec in consumed_records(ctx):
        if rec is None:
            continue
        decoded += 1
        if rec["message_id"] not in in_table:
            missing.append(f"partition {msg.partition()} offset {msg.offset()} message_id {rec['message_id']}")
    evidence = [f"total-records {ctx.state['baseline']['records']} -> {total}", f"{len(paths)} new data files, "
                f"{len(in_table)} message_ids", f"{decoded} decodable messages consumed"] + unreadable + missing[:10]
    if delta != written:
        return Result.failed(f"total records grew by {delta}, the consumer wrote {written}", measured=delta,
                             threshold=f"== {written}", unit="records", evidence=evidence)
    if unreadable:
        return Result.failed(unreadable[0], measured=delta, threshold=f"== {written}", unit="records",
                             evidence=evidence)
    if missing:
        return Result.failed(f"{len(missing)} consumed messages are not in the new data files", measured=delta,
                             threshold=f"== {written}", unit="records", evidence=evidence)
    return Result.passed(f"+{delta} records; all {decoded} consumed message_ids are in the new files",
                         measured=delta, threshold=f"== {written}", unit="records", evidence=evidence)


# ---------------------------------------------------------------- step 4: query


def run_query(ctx: Context) -> Result:
    """`k2 query trades --symbol S --limit L --order desc --format json` for a symbol this run wrote."""
    from pyiceberg.expressions import EqualTo

    counts: dict[str, int] = {}
    for _, rec in consumed_records(ctx):
        if rec is not None:
            counts[rec["symbol"]] = counts.get(rec["symbol"], 0) + 1
    if not counts:
        return Result.failed("the run wrote no trades to query")
    symbol = max(counts, key=counts.__getitem__)
    limit = int(ctx.threshold("e2e_query_limit"))
    done = run_k2(["query", "trades", "--symbol", symbol, "--limit", str(limit), "--order", "desc", "--format",
                   "json"], timeout=120)
    if done.returncode != 0:
        return Result.failed(f"`{done.command}` exited {done.returncode}: {done.stderr.strip()[-200:]}")
    rows = done.json()
    table = common.load_table(ctx)
    if table is None:
        return Result.errored(f"table {ctx.settings.table} does not exist")
    # pyiceberg's expressions are pydantic models: mypy sees the model's fields, not EqualTo's own __init__
    in_table = table.scan(row_filter=EqualTo("symbol", symbol)).count()  # type: ignore[call-arg, arg-type]
    ctx.state["query"] = {"rows": rows, "symbol": symbol, "limit": limit, "in_table": in_table, "table": table}
    return Result.passed(f"`k2 query trades --symbol {symbol}` returned {len(rows)} rows in {done.duration:.1f} s",
                         measured=len(rows), unit="rows", evidence=[done.command])


def measure_query_count(ctx: Context) -> Result:
    """Rows returned == min(limit, rows of the symbol in the table)."""
    q = ctx.state["query"]
    expected = min(q["limit"], q["in_table"])
    got = len(q["rows"])
    result = Status.PASS if got == expected else Status.FAIL
    return Result.make(result, f"{got} rows for {q['symbol']}; the table holds {q['in_table']}, limit {q['limit']}",
                       measured=got, threshold=f"== {expected}", unit="rows")


def micros(value: Any) -> int | None:
    """A query value as integer microseconds: ints as they are, ISO 8601 strings parsed (None otherwise)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return v2check.to_micros(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def measure_query_order(ctx: Context) -> Result:
    """Timestamps are in descending order."""
    rows = ctx.state["query"]["rows"]
    read = [micros(r.get("timestamp")) for r in rows]
    stamps = [s for s in read if s is not None]
    if len(stamps) < len(read):
        return Result.failed("some rows have no readable timestamp", evidence=[str(rows[0].get("timestamp"))])
    wrong = [i for i in range(1, len(stamps)) if stamps[i] > stamps[i - 1]]
    evidence = [f"newest {rows[0]['timestamp']}, oldest {rows[-1]['timestamp']}"] if rows else []
    if wrong:
        i = wrong[0]
        return Result.failed(f"{len(wrong)} rows out of order (row {i}: {rows[i]['timestamp']} after "
                             f"{rows[i - 1]['timestamp']})", measured=len(wrong), threshold="== 0",
                             unit="out of order", evidence=evidence)
    return Result.passed(f"{len(rows)} rows newest first", measured=0, threshold="== 0", unit="out of order",
                         evidence=evidence)


def measure_query_fields(ctx: Context) -> Result:
    """Every row carries every v2 field."""
    from k2cli.trade import FIELD_NAMES

    rows = ctx.state["query"]["rows"]
    missing = sorted({f for r in rows for f in FIELD_NAMES if f not in r})
    if not rows:
        return Result.failed("no rows to check")
    if missing:
        return Result.failed(f"rows lack {', '.join(missing)}", measured=len(FIELD_NAMES) - len(missing),
                             threshold=f"== {len(FIELD_NAMES)}", unit="fields")
    return Result.passed(f"all {len(FIELD_NAMES)} v2 fields present in {len(rows)} rows", measured=len(FIELD_NAMES),
                         threshold=f"== {len(FIELD_NAMES)}", unit="fields", evidence=[", ".join(FIELD_NAMES)])


def row_problems(row: dict[str, Any]) -> list[str]:
    """Type problems of one query row (JSON form): exact decimal strings, ISO or µs times, v2 value rules."""
    from k2cli.errors import InvalidTrade
    from k2cli.trade import DECIMAL_FIELDS, FIELD_NAMES, TIMESTAMP_FIELDS, validate_trade

    found = [f"{name}: {row[name]!r} is a float, not an exact decimal string" for name in DECIMAL_FIELDS
             if isinstance(row.get(name), float)]
    rec = {name: row.get(name) for name in FIELD_NAMES}
    for name in TIMESTAMP_FIELDS:
        rec[name] = micros(row.get(name))
    for name in DECIMAL_FIELDS:
        try:
            rec[name] = Decimal(str(row.get(name)))
        except InvalidOperation:
            found.append(f"{name}: {row.get(name)!r} is not a decimal")
    try:
        validate_trade(rec)
    except InvalidTrade as exc:  # names the field
        found.append(str(exc))
    return found


def measure_query_types(ctx: Context) -> Result:
    """The table schema is exactly the v2 Iceberg schema, and every row's values have the v2 types."""
    from k2cli.trade import iceberg_schema

    q = ctx.state["query"]
    diffs = common.schema_differences(q["table"].schema(), iceberg_schema())
    bad = [(r.get("trade_id"), p) for r in q["rows"] if (p := row_problems(r))]
    evidence = diffs + [f"{tid}: {'; '.join(p)}" for tid, p in bad[:10]]
    if diffs or bad:
        return Result.failed(diffs[0] if diffs else f"{len(bad)} rows have wrong types", measured=len(bad),
                             threshold="== 0", unit="rows with wrong types", evidence=evidence)
    return Result.passed(f"table schema is v2; all {len(q['rows'])} rows have v2 types", measured=0,
                         threshold="== 0", unit="rows with wrong types")


# ---------------------------------------------------------------- step 5: Prometheus


def _scrape_window(ctx: Context) -> tuple[float, int, float, float]:
    """(evaluation time, window seconds, scrape interval, successful consumer scrapes while the run lived)."""
    prom = common.prometheus(ctx)
    run = ctx.state["consume"]
    interval = scrape_interval(ctx)
    at = run["ended"]
    window = math.ceil(at - run["started"] + interval)
    # scrapes while the run lived only: a consumer that ran just before on the same port is the same target
    during = max(1, math.ceil(at - run["started"]))
    scrapes = prom.value(f'sum_over_time(up{{job="{mn.CONSUMER_JOB}"}}[{during}s])', at=at) or 0
    return at, window, interval, scrapes


def counter_rate(series: list[tuple[dict[str, str], list[tuple[float, float]]]]) -> tuple[float, float, int]:
    """(increase, seconds, samples) of counters from raw samples: per series from its last sample before it
    started rising to its last sample (no extrapolation); the increases add up, the span is the longest."""
    increase, span, count = 0.0, 0.0, 0
    for _, points in series:
        if len(points) < 2:
            continue
        first = 0
        while first + 1 < len(points) and points[first + 1][1] == points[0][1]:
            first += 1
        (t0, v0), (t1, v1) = points[first], points[-1]
        if v1 >= v0 and t1 > t0:
            increase += v1 - v0
            span = max(span, t1 - t0)
            count = max(count, len(points) - first)
    return increase, span, count


def measure_prom_throughput(ctx: Context) -> Result:
    """Messages per second while consuming, from the raw k2_messages_consumed_total samples in Prometheus."""
    prom = common.prometheus(ctx)
    at, window, interval, scrapes = _scrape_window(ctx)
    series = prom.samples(f'{mn.CONSUMED}{{topic="{topic_of(ctx)}"}}', window, at)  # this run's topic only
    increase, span, used = counter_rate(series)
    evidence = [f"{mn.CONSUMED}[{window}s] at {dt.datetime.fromtimestamp(at, dt.UTC).isoformat()}: "
                f"{sum(len(p) for _, p in series)} samples in {len(series)} series",
                f"consumer scraped {scrapes:.0f} times (scrape interval {interval:g} s)"]
    if span <= 0:
        stats_tp = stat(ctx.state["consume"]["stats"], "throughput")
        if scrapes < 2:
            return Result.warned(f"Prometheus scraped the consumer {scrapes:.0f} time(s) during its run, too few for "
                                 f"a rate; the consumer's own figure is {stats_tp:.1f} msg/s", evidence=evidence,
                                 threshold=ctx.describe("e2e_throughput_min_msg_per_s"))
        return Result.failed(f"Prometheus has no rising {mn.CONSUMED} samples for the run", evidence=evidence)
    rate = round(increase / span, 1)
    evidence.append(f"+{increase:.0f} messages over {span:.1f} s between {used} samples")
    return ctx.check("e2e_throughput_min_msg_per_s", rate, f"Prometheus: {rate} msg/s while consuming",
                     evidence=evidence)


def measure_prom_write_p99(ctx: Context) -> Result:
    """p99 of k2_iceberg_write_duration_seconds over the run, from Prometheus."""
    prom = common.prometheus(ctx)
    at, window, interval, scrapes = _scrape_window(ctx)
    expr = f"histogram_quantile(0.99, sum by (le) (rate({mn.WRITE_DURATION}_bucket[{window}s])))"
    value = prom.value(expr, at=at)
    evidence = [f"query: {expr}", f"consumer scraped {scrapes:.0f} times (interval {interval:g} s)"]
    if value is None:
        if scrapes < 2:
            return Result.warned(f"Prometheus scraped the consumer {scrapes:.0f} time(s) during its run, too few "
                                 "for a p99", evidence=evidence, threshold=ctx.describe("e2e_write_p99_max_s"))
        return Result.failed(f"Prometheus has no {mn.WRITE_DURATION} histogram for the run", evidence=evidence)
    return ctx.check("e2e_write_p99_max_s", round(value, 3), f"Prometheus: p99 write {value:.3f} s",
                     evidence=evidence)


def measure_memory(ctx: Context) -> Result:
    """Peak RSS of the consumer process (sampled every 0.25 s)."""
    mb = round(ctx.state["consume"]["peak_rss"] / 2**20, 1)
    return ctx.check("e2e_memory_max_mb", mb, f"consumer peak RSS {mb} MB")


# ---------------------------------------------------------------- step 6: DLQ


def measure_poison(ctx: Context) -> Result:
    """The injected poison record is in the DLQ with its original bytes and a descriptive error."""
    poison = ctx.state["plan"]["poison"]
    topic = topic_of(ctx)
    rows = [r for r in dlq_rows(ctx) if r.get("topic") == topic and r.get("partition") == poison["partition"]
            and r.get("offset") == poison["offset"]]
    where = f"{topic} partition {poison['partition']} offset {poison['offset']}"
    if not rows:
        return Result.failed(f"the poison record ({where}) is not in the DLQ",
                             evidence=[f"DLQ {ctx.settings.dlq_path}"])
    done = run_k2(["dlq", "show", rows[0]["id"], "--format", "json"], timeout=60)
    if done.returncode != 0:
        return Result.failed(f"`{done.command}` exited {done.returncode}: {done.stderr.strip()[-200:]}")
    entry = done.json()
    original = base64.b64decode(entry.get("value_b64") or "")
    evidence = [f"entry {entry.get('id')}: error_type={entry.get('error_type')}", f"error: {entry.get('error')}",
                f"value: {len(original)} bytes, sent {len(poison['value'])}"]
    if original != poison["value"]:
        return Result.failed("the DLQ entry does not hold the original bytes", evidence=evidence)
    if len(str(entry.get("error") or "")) < 10 or entry.get("error_type") in (None, "", "unknown"):
        return Result.failed("the DLQ entry's error is not descriptive", evidence=evidence)
    return Result.passed(f"poison record dead-lettered with its original {len(original)} bytes "
                         f"({entry.get('error_type')})", evidence=evidence)


def measure_dlq_clean(ctx: Context) -> Result:
    """Nothing but the poison was dead-lettered during the run."""
    before = ctx.state["baseline"]["dlq_ids"]
    poison = ctx.state["plan"]["poison"]
    new = [r for r in dlq_rows(ctx) if r["id"] not in before]
    others = [r for r in new if not (r.get("partition") == poison["partition"] and r.get("offset") == poison["offset"]
                                     and r.get("topic") == topic_of(ctx))]
    earlier = [r for r in others[:20] if _is_validation_poison(r["id"])]  # left in the topic by an earlier run
    others = [r for r in others if r not in earlier]
    evidence = [f"{r['id'][:12]} {r.get('origin')} {r.get('error_type')}: {r.get('error')}" for r in others[:10]]
    if others:
        return Result.failed(f"{len(others)} records other than the poison were dead-lettered", measured=len(others),
                             threshold="== 0", unit="entries", evidence=evidence)
    note = f" ({len(earlier)} poison records of earlier validation runs)" if earlier else ""
    return Result.passed(f"{len(new)} new DLQ entries: the poison{note}, no others", measured=0, threshold="== 0",
                         unit="entries")


def _is_validation_poison(entry_id: str) -> bool:
    done = run_k2(["dlq", "show", entry_id, "--format", "json"], timeout=60)
    if done.returncode != 0:
        return False
    return is_poison(base64.b64decode(done.json().get("value_b64") or ""))


def build(options: Options) -> Checklist:
    """The consumer E2E checklist."""
    return Checklist(
        "e2e",
        "Consumer E2E validation (steps 1-6)",
        "Baseline, a consumer run over a known number of messages (streamed from a simulator when the topic has "
        "too few), snapshot and record deltas, the query check, Prometheus performance and the DLQ check with an "
        "injected poison record.",
        (*_prerequisites(), *_step1_baseline(), *_step2_consume(), *_step3_lake(), *_step4_query(),
         *_step5_performance(), *_step6_dlq()),
        source=f"{common.SEED_CONSUMER} (Consumer E2E Validation Procedure, Steps 1-6)",
    )


_CONSUME = ("e2e.2-consume",)  # the consumer run most later steps read
_QUERY = ("e2e.4-query",)


def _prerequisites() -> tuple[Step, ...]:
    """The services, and no other consumer in the group."""
    return (
        common.broker_step("e2e.broker"),
        common.registry_step("e2e.registry"),
        common.catalog_step("e2e.catalog"),
        common.prometheus_step("e2e.prometheus"),
        Step("e2e.clean-state", "Consumer group idle",
             "No other consumer is active in the group (Prerequisites 3, clean state).", measure_clean_state,
             depends_on=("e2e.broker",)),
    )


def _step1_baseline() -> tuple[Step, ...]:
    """Step 1: the table's state before the run, and the messages the run will consume."""
    return (
        Step("e2e.1-baseline", "Step 1: baseline",
             "Record the table's snapshots, record count and resume offsets, and the pending messages.",
             measure_baseline, depends_on=("e2e.broker", "e2e.catalog", "e2e.clean-state")),
        Step("e2e.test-data", "Test data available",
             "Plan a known message count (pending + streamed from the simulator + 1 poison record).",
             measure_test_data, depends_on=("e2e.1-baseline", "e2e.registry"),
             thresholds=("e2e_messages", "e2e_max_backlog", "e2e_stream_rate", "e2e_gap_every"), retry=False),
    )


def _step2_consume() -> tuple[Step, ...]:
    """Step 2: the consumer run and what its statistics show."""
    return (
        Step("e2e.2-consume", "Step 2: run the consumer with a known message count",
             "`k2 consume --max-messages M --format json` processes exactly the planned messages.", run_consume,
             depends_on=("e2e.test-data",), thresholds=("e2e_run_max_s",), retry=False),
        Step("e2e.2-no-loss", "Messages consumed == written (no loss)",
             "Every consumed message was written or dead-lettered.", measure_no_loss, depends_on=_CONSUME),
        Step("e2e.2-errors", "Errors == 0", "The consumer reports no unhandled errors.", measure_errors,
             depends_on=_CONSUME, thresholds=("e2e_errors_max",)),
        Step("e2e.2-sequence-gaps", "Sequence gaps tracked correctly",
             "The consumer's gap count equals the gaps in the consumed records' source sequences.",
             measure_gaps, depends_on=_CONSUME),
        Step("e2e.2-throughput", "Duration and throughput within range",
             "Throughput above 100 msg/s and cold start under 60 s.", measure_throughput, depends_on=_CONSUME,
             thresholds=("e2e_throughput_min_msg_per_s", "e2e_cold_start_max_s")),
    )


def _step3_lake() -> tuple[Step, ...]:
    """Step 3: the snapshots and records the run added to the table."""
    return (
        Step("e2e.3-snapshots", "Step 3: snapshots added",
             "At least ceil(written/batch size) snapshots, each with added-records and added-data-files.",
             measure_snapshots, depends_on=_CONSUME),
        Step("e2e.3-records", "Step 3: records added",
             "Total records grew by the written count and every consumed message_id is in the new files.",
             measure_records, depends_on=_CONSUME),
    )


def _step4_query() -> tuple[Step, ...]:
    """Step 4: `k2 query trades` over the written data."""
    return (
        Step("e2e.4-query", "Step 4: query the written data",
             "`k2 query trades --symbol S --limit 100 --order desc --format json` answers.", run_query,
             depends_on=_CONSUME, thresholds=("e2e_query_limit",)),
        Step("e2e.4-count", "Query returns the expected number of records",
             "min(limit, rows of the symbol in the table) rows.", measure_query_count, depends_on=_QUERY),
        Step("e2e.4-order", "Timestamp ordering correct", "Rows are newest first.", measure_query_order,
             depends_on=_QUERY),
        Step("e2e.4-fields", "All v2 fields present", "Every row carries all 15 v2 fields.",
             measure_query_fields, depends_on=_QUERY),
        Step("e2e.4-types", "Data types match the schema",
             "The table has the v2 Iceberg schema; prices are exact decimal strings, times ISO, values valid.",
             measure_query_types, depends_on=_QUERY),
    )


def _step5_performance() -> tuple[Step, ...]:
    """Step 5: the run's throughput, write latency and memory as Prometheus recorded them."""
    return (
        Step("e2e.5-throughput", "Step 5: throughput in Prometheus",
             "rate(k2_messages_consumed_total) over the run above 100 msg/s.", measure_prom_throughput,
             depends_on=(*_CONSUME, "e2e.prometheus"), thresholds=("e2e_throughput_min_msg_per_s",)),
        Step("e2e.5-write-p99", "Step 5: p99 Iceberg write duration",
             "histogram_quantile(0.99, k2_iceberg_write_duration_seconds) over the run under 2 s.",
             measure_prom_write_p99, depends_on=(*_CONSUME, "e2e.prometheus"), thresholds=("e2e_write_p99_max_s",)),
        Step("e2e.5-memory", "Step 5: consumer memory", "Peak consumer RSS under 500 MB.", measure_memory,
             depends_on=_CONSUME, thresholds=("e2e_memory_max_mb",)),
    )


def _step6_dlq() -> tuple[Step, ...]:
    """Step 6: the injected poison record, and nothing else, in the DLQ."""
    return (
        Step("e2e.6-dlq-poison", "Step 6: injected poison record in the DLQ",
             "The poison record is dead-lettered with its original bytes and a descriptive error.",
             measure_poison, depends_on=_CONSUME),
        Step("e2e.6-dlq-clean", "Step 6: no other DLQ entries",
             "Nothing but the poison record was dead-lettered during the run.", measure_dlq_clean,
             depends_on=_CONSUME),
    )

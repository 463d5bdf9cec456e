"""`k2 validate tech-debt`: seed 000's technical debt resolution checklist, measured where a machine can."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from typing import Any

from k2cli.checks.checklists import common, deploy, e2e, v2check
from k2cli.checks.context import Context, Options
from k2cli.checks.model import Checklist, Manual, Result, Status, Step
from k2cli.checks.probes import pipeline
from k2cli.checks.probes.proc import run_k2
from k2cli.checks.probes.source import source_root
from k2cli.exchanges import registry
from k2cli.proc import free_port

# The interface contract of /work/shared/DESIGN.md: every command path and the flags it must take.
_STREAM_FLAGS = ("--symbols", "--url", "--topic", "--max-messages", "--duration", "--rotation-interval",
                 "--ping-interval", "--pong-timeout", "--idle-timeout", "--metrics-port")
CONTRACT: dict[tuple[str, ...], tuple[str, ...]] = {
    **{("stream", name): _STREAM_FLAGS for name in registry.names()},
    ("consume",): ("--topics", "--max-messages", "--batch-size", "--group", "--format"),
    ("query", "trades"): ("--symbol", "--limit", "--order", "--format"),
    ("query", "sql"): ("--format",),
    ("dlq", "list"): ("--format",),
    ("dlq", "show"): ("--format",),
    ("dlq", "stats"): ("--format",),
    ("dlq", "replay"): ("--format",),
    ("dlq", "purge"): ("--format",),
    ("validate", "prereqs"): ("--format", "--output"),
    ("validate", "e2e"): ("--format", "--output"),
    ("soak",): ("--hours", "--exchange", "--url", "--sample-interval", "--output-dir"),
}


def command_options(path: tuple[str, ...]) -> list[str] | None:
    """The options `k2 PATH` accepts (None when the command does not exist), read from the command tree."""
    import typer.main

    from k2cli.cli.app import app

    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("k2", [], resilient_parsing=True)
    for name in path:
        if not hasattr(cmd, "get_command"):
            return None
        cmd = cmd.get_command(ctx, name)
        if cmd is None:
            return None
    return [opt for p in cmd.params if p.param_type_name == "option" for opt in (*p.opts, *p.secondary_opts)]


def measure_api_contract(ctx: Context) -> Result:
    """Every command of the interface contract exists with every flag the contract names."""
    problems, evidence = [], []
    for path, flags in CONTRACT.items():
        have = command_options(path)
        name = "k2 " + " ".join(path)
        if have is None:
            problems.append(f"{name}: missing")
            continue
        missing = [f for f in flags if f not in have]
        if missing:
            problems.append(f"{name}: lacks {', '.join(missing)}")
        else:
            evidence.append(f"{name}: {', '.join(flags)}")
    total = len(CONTRACT)
    if problems:
        return Result.failed(problems[0], measured=total - len(problems), threshold=f"== {total}", unit="commands",
                             evidence=problems + evidence)
    return Result.passed(f"all {total} contract commands take their flags", measured=total, threshold=f"== {total}",
                         unit="commands", evidence=evidence)


def edge_records() -> list[dict[str, Any]]:
    """v2 trades at the edges of every type: smallest/largest decimals, µs times, UUIDs, unicode, nulls."""
    from k2cli.trade import new_trade

    code = registry.default().code
    base: dict[str, Any] = dict(symbol="BTCUSDT", exchange=code, currency="USDT", side="BUY")
    return [
        new_trade(trade_id=f"{code}-1", timestamp_us=1, price="0.00000001", quantity="0.00000001",
                  ingestion_timestamp_us=2, source_sequence=None, vendor_data=None, message_id=str(uuid.uuid4()),
                  **base),
        new_trade(trade_id=f"{code}-2", timestamp_us=4_102_444_799_999_999, price="9999999999.99999999",
                  quantity="1234567.89012345", ingestion_timestamp_us=4_102_444_800_000_000,
                  source_sequence=2**62, platform_sequence=-1, trade_conditions=["odd-lot", "ünïcødé"],
                  vendor_data={"is_buyer_maker": "true", "note": "€ ✓ 日本"}, **base),
        new_trade(trade_id=f"{code}-3", timestamp_us=1_768_318_245_123_456, price="16500.1",
                  quantity="100", ingestion_timestamp_us=1_768_318_245_123_457, source_sequence=0,
                  vendor_data={}, side="SELL", **{k: v for k, v in base.items() if k != "side"}),
    ]


def measure_serialization(ctx: Context) -> Result:
    """Edge-value trades survive Avro through the real registry and Kafka exactly, and k2's JSON encoder."""
    from k2cli.jsonutil import dumps
    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import AvroDeserializer

    records = edge_records()
    topic = pipeline.scratch_topic(ctx, "serialization")
    pipeline.produce_trades(ctx, topic, records)
    marks = pipeline.kafka.watermarks(ctx.settings, topic)
    messages = pipeline.kafka.read_range(ctx.settings, topic, {p: lo for p, (lo, _) in marks.items()},
                                         {p: hi for p, (_, hi) in marks.items()})
    registry = RegistryClient.from_settings(ctx.settings)
    try:
        decoded = [v2check.normalize(AvroDeserializer(registry).decode(m.value())) for m in messages]
    finally:
        registry.close()
    by_id = {r["trade_id"]: r for r in decoded}
    problems = []
    for rec in records:
        got = by_id.get(rec["trade_id"])
        if got is None:
            problems.append(f"{rec['trade_id']}: not read back from Kafka")
            continue
        for field, want in rec.items():
            if got[field] != want or type(got[field]) is not type(want):
                problems.append(f"{rec['trade_id']}.{field}: sent {want!r}, got {got[field]!r}")
    stamp = dt.datetime(2026, 1, 13, 15, 30, 45, 123456, tzinfo=dt.UTC)
    sample = {"timestamp": stamp, "price": Decimal("16500.12345678"), "id": uuid.UUID(int=1), "nested": [stamp]}
    back = json.loads(dumps(sample))
    want_json = {"timestamp": stamp.isoformat(), "price": "16500.12345678", "id": str(uuid.UUID(int=1)),
                 "nested": [stamp.isoformat()]}
    if back != want_json:
        problems.append(f"JSON encoder: {back} != {want_json}")
    evidence = [f"{len(records)} records through {topic} (Avro via the registry) and back",
                "types: decimal(18,8) at 1e-8 and 9999999999.99999999, timestamps 1 µs and 2099-12-31, UUIDs, "
                "2^62 sequences, unicode, null and empty maps", "JSON: datetime -> ISO, Decimal -> exact string, UUID"]
    return Result.counted(problems, "datetime, Decimal, UUID and friends round-trip exactly (Avro, Kafka, JSON)",
                          unit="mismatches", evidence=evidence)


def measure_error_classes(ctx: Context) -> Result:
    """Decoding errors are permanent (DecodeError, to the DLQ); an unreachable registry is transient."""
    from k2cli.errors import ServiceUnavailable
    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import AvroDeserializer, DecodeError, frame
    from k2cli.trade import avro_schema

    registry = RegistryClient.from_settings(ctx.settings)
    subject = f"{pipeline.scratch_name(ctx, 'errors')}-value"
    ctx.on_close(pipeline.delete_subject, ctx, subject)
    schema_id = registry.register(subject, avro_schema())
    cases = {
        "empty value": (b"", "truncated"),
        "bad magic byte": (b"\x01\x00\x00\x00\x01abc", "bad_magic_byte"),
        "unknown schema id": (frame(2**31 - 7, b"\x00"), "unknown_schema_id"),
        "corrupt Avro body": (frame(schema_id, b"\xff\xff\xff\xff\xff\xff"), "invalid_record"),
        "tombstone": (None, "null_value"),
    }
    problems: list[str] = []
    evidence: list[str] = []
    decoder = AvroDeserializer(registry)
    try:
        for name, (value, expected) in cases.items():
            try:
                decoder.decode(value)
                problems.append(f"{name}: decoded without error")
            except DecodeError as exc:
                (evidence if exc.error_type == expected else problems).append(
                    f"{name}: permanent ({exc.error_type})" + ("" if exc.error_type == expected else
                                                              f", expected {expected}"))
            except ServiceUnavailable as exc:
                problems.append(f"{name}: classified transient: {exc}")
    finally:
        registry.close()
    dead = RegistryClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    try:
        AvroDeserializer(dead).decode(frame(schema_id, b"\x00"))
        problems.append("registry down: decoded without error")
    except ServiceUnavailable:
        evidence.append("registry unreachable: transient (ServiceUnavailable, retried, never dead-lettered)")
    except DecodeError as exc:
        problems.append(f"registry unreachable: classified permanent ({exc.error_type}) - records would be "
                        "dead-lettered for an outage")
    finally:
        dead.close()
    return Result.counted(problems, f"{len(cases)} permanent and 1 transient failure classified correctly",
                          unit="misclassified", evidence=evidence)


def measure_backoff(ctx: Context) -> Result:
    """`k2 stream` against a refusing endpoint retries with capped exponential backoff (jitter in [d/2, d])."""
    initial, cap = 0.2, 1.6
    topic = pipeline.scratch_name(ctx, "backoff")
    ctx.on_close(pipeline.kafka.delete_topic, ctx.settings, topic)  # the producer may create it on start-up
    ctx.on_close(pipeline.delete_subject, ctx, f"{topic}-value")  # and the stream registers its subject
    run = run_k2(["stream", ctx.options.exchange, "--url", f"ws://127.0.0.1:{free_port()}/stream",
                  "--topic", topic, "--duration", "7", "--metrics-port", "0",
                  "--format", "json"], timeout=60, env={"K2_BACKOFF_INITIAL": str(initial),
                                                         "K2_BACKOFF_MAX": str(cap)})
    text = " ".join(run.stderr.split())
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+)s", text)]
    evidence = [run.command + f" (K2_BACKOFF_INITIAL={initial}, K2_BACKOFF_MAX={cap})",
                "delays: " + ", ".join(f"{d:g}" for d in delays)]
    if len(delays) < 4:
        return Result.failed(f"only {len(delays)} retries logged in 7 s", measured=len(delays), unit="retries",
                             evidence=evidence)
    problems = []
    for n, delay in enumerate(delays, start=1):
        ceiling = min(cap, initial * 2 ** (n - 1))
        if not ceiling / 2 - 0.051 <= delay <= ceiling + 0.051:  # logged with one decimal
            problems.append(f"retry {n}: {delay:g} s outside [{ceiling / 2:g}, {ceiling:g}]")
    return Result.counted(problems, f"{len(delays)} retries, delays doubling from {initial:g} s to the {cap:g} s cap "
                          "with jitter", unit="bad delays", evidence=evidence)


def measure_dlq_context(ctx: Context) -> Result:
    """A poison record consumed from a scratch topic lands in the DLQ with its source, error and original bytes."""
    import base64

    topic = pipeline.scratch_topic(ctx, "dlq")
    pipeline.produce_trades(ctx, topic, pipeline.make_trades("BTCUSDT", range(1, 11)))
    poison = e2e.POISON_PREFIX + uuid.uuid4().hex.encode()
    [(partition, offset)] = pipeline.kafka.produce(ctx.settings, topic, [(e2e.POISON_KEY, poison)])
    lake = pipeline.scratch_lake(ctx, "dlq")
    done = run_k2(["consume", "--topics", topic, "--max-messages", "11", "--format", "json"], timeout=180,
                  env=lake.env)
    if done.returncode != 0:
        return Result.failed(f"`k2 consume` exited {done.returncode}", evidence=done.stderr.strip().splitlines()[-3:])
    listed = run_k2(["dlq", "list", "--format", "json", "--dlq-dir", lake.dlq_dir], timeout=60).json()
    rows = [r for r in listed if r.get("topic") == topic and r.get("offset") == offset]
    if not rows:
        return Result.failed(f"the poison record ({topic} p{partition} o{offset}) is not in the DLQ")
    entry = run_k2(["dlq", "show", rows[0]["id"], "--format", "json", "--dlq-dir", lake.dlq_dir], timeout=60).json()
    source = entry.get("source") or {}
    checks = {
        "original bytes": base64.b64decode(entry.get("value_b64") or "") == poison,
        "error message": len(str(entry.get("error") or "")) >= 10,
        "error type": entry.get("error_type") not in (None, "", "unknown"),
        "source topic/partition/offset": (source.get("topic"), source.get("partition"), source.get("offset"))
        == (topic, partition, offset),
        "time": bool(entry.get("time")),
    }
    evidence = [f"{k}: {'ok' if v else 'MISSING'}" for k, v in checks.items()]
    evidence += [f"error_type={entry.get('error_type')}", f"error={entry.get('error')}", f"source={source}"]
    missing = [k for k, v in checks.items() if not v]
    if missing:
        return Result.failed(f"the DLQ entry lacks: {', '.join(missing)}", evidence=evidence)
    return Result.passed("DLQ entry keeps the original bytes, error, type, source and time", evidence=evidence)


# the operators' definitions of k2's metrics: what the alert rules and dashboard panels query, with which labels
DEFINITIONS = ("deploy/prometheus/rules/*.yml", "deploy/grafana/dashboards/*.json")


def declared_labels(exchange: str) -> dict[str, set[str]]:
    """Label names of every family the stream and consumer define (k2cli/observe), counters with `_total`."""
    from prometheus_client import CollectorRegistry

    from k2cli.observe.consumer_metrics import ConsumerMetrics
    from k2cli.observe.metrics import StreamMetrics

    out: dict[str, set[str]] = {"up": set(), "ALERTS": set()}  # made by Prometheus
    for owner in (StreamMetrics(exchange, CollectorRegistry()), ConsumerMetrics(CollectorRegistry())):
        for collector in vars(owner).values():
            name = getattr(collector, "_name", None)
            if name:
                suffix = "_total" if getattr(collector, "_type", "") == "counter" else ""
                out[name + suffix] = set(getattr(collector, "_labelnames", ()))
    return out


def exported_labels(scraped: dict[str, list[tuple[dict[str, str], float]]]) -> tuple[dict[str, set[str]], list[str]]:
    """Label names per family in a scrape, and the families whose series do not all carry the same label names."""
    from k2cli.checks.promql_labels import family

    labels: dict[str, set[str]] = {}
    mixed = []
    for sample_name, samples in scraped.items():
        sets = {frozenset(k for k in lbl if k not in ("le", "quantile")) for lbl, _ in samples}
        if len(sets) > 1:
            mixed.append(f"{sample_name}: series with different label names {sorted(map(sorted, sets))}")
        labels.setdefault(family(sample_name), set()).update(*sets)
    return labels, mixed


def measure_metric_labels(ctx: Context) -> Result:
    """The labels the alert rules and dashboards use exist on the families a running stream exports (those with no
    series yet, and the consumer's, as k2cli/observe defines them); each family's series carry one label set."""
    from k2cli.checks import promql_labels

    root = source_root()
    if root is None:
        return Result.errored("no checkout: the alert rules and dashboards (deploy/) are not here to compare")
    ex = ctx.options.exchange
    sim = pipeline.start_simulator(ctx, ex, symbols=list(ctx.settings.exchange(ex).symbols), rate=50)
    run = pipeline.stream_run(ctx, ex, sim.url, duration=4)
    scraped = run.last_scrape.samples
    if not scraped:
        return Result.failed("the stream's /metrics never answered", evidence=[run.completed.command])
    exported, problems = exported_labels(scraped)
    labels = {**declared_labels(ex), **exported}
    rename = {f"{other}_{name[len(ex) + 1:]}": name for name in labels if name.startswith(f"{ex}_")
              for other in registry.names()}
    files = sorted(f for pattern in DEFINITIONS for f in root.glob(pattern))
    uses = promql_labels.definitions(files, root)
    wrong, judged = promql_labels.problems(uses, labels, rename)
    evidence = [f"{len(files)} files, {len(uses)} expressions; {judged} read only families k2 exports and were "
                f"compared", f"{len(exported)} families exported by the running {ex} stream"]
    return Result.counted(problems + wrong, f"every label the {judged} alert and dashboard expressions use exists on "
                          "the families they read", unit="mismatches", evidence=evidence)


def measure_e2e(ctx: Context) -> Result:
    """The E2E checklist passes."""
    report = deploy.run_nested_e2e(ctx)
    counts = ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
    bad = [f"{o.step.id}: {o.result.status.value} {o.result.summary}" for o in report.outcomes
           if o.result.status not in (Status.PASS, Status.MANUAL)]
    return Result.make(report.verdict, f"E2E {report.verdict.value} ({counts})", evidence=bad[:10])


REGRESSION = Manual("which fix needs which regression test is a judgement over the change history",
                    "for every technical-debt fix in this release there is a test that fails without the fix")
TECH_DEBT_DOC = Manual("whether the resolution is described well is a judgement",
                       "TECHNICAL_DEBT.md (or docs/technical-debt.md) records each resolved item with its fix and test")


def measure_tech_debt_doc(ctx: Context) -> Result:
    """A technical-debt document exists (else FAIL); a person checks its content (MANUAL)."""
    root = source_root()
    if root is None:
        return Result.needs_person(TECH_DEBT_DOC)
    docs = sorted(p for p in [*root.glob("*.md"), *root.glob("docs/**/*.md")]
                  if re.search(r"tech(nical)?[-_ ]?debt", p.name, re.IGNORECASE))
    if not docs:
        return Result.failed("no TECHNICAL_DEBT.md (or docs/*technical-debt*.md) in the checkout")
    return Result.needs_person(TECH_DEBT_DOC, evidence=[str(p.relative_to(root)) for p in docs])


def build(options: Options) -> Checklist:
    """The technical-debt checklist."""
    services = ("tech-debt.broker", "tech-debt.registry")
    return Checklist(
        "tech-debt", "Technical debt resolution checklist",
        "API contract, serialization of every type, error classification, backoff, DLQ context, metric labels and an "
        "E2E run; regression tests and the debt document are MANUAL.",
        (
            common.broker_step("tech-debt.broker"),
            common.registry_step("tech-debt.registry"),
            Step("tech-debt.api-contract", "API mismatches: signatures validated",
                 "Every command of the interface contract exists with every flag it names.", measure_api_contract),
            Step("tech-debt.serialization", "Serialization: datetime, Decimal, UUID tested",
                 "Edge-value trades round-trip exactly through Avro, the registry, Kafka and k2's JSON encoder.",
                 measure_serialization, depends_on=services),
            Step("tech-debt.error-classes", "Transient vs permanent errors classified",
                 "Undecodable values are permanent (DLQ); an unreachable registry is transient (retry).",
                 measure_error_classes, depends_on=services),
            Step("tech-debt.retry-backoff", "Exponential backoff implemented",
                 "Against a refusing endpoint, k2 stream's retry delays double up to the cap, with jitter.",
                 measure_backoff, depends_on=services),
            Step("tech-debt.dlq-context", "DLQ keeps error context and the original message",
                 "A poison record's DLQ entry has its original bytes, error, type, source offsets and time.",
                 measure_dlq_context, depends_on=services),
            Step("tech-debt.metrics-labels", "Metric labels match their definitions",
                 "Every label the alert rules and dashboards use exists on the families they read (a running "
                 "stream's, the consumer's as defined); each family's series carry one label set.",
                 measure_metric_labels, depends_on=services),
            Step("tech-debt.regression-tests", "Regression tests for all fixes", REGRESSION.check, manual=REGRESSION),
            Step("tech-debt.docs", "TECHNICAL_DEBT.md updated", TECH_DEBT_DOC.check, measure_tech_debt_doc,
                 manual=TECH_DEBT_DOC),
            Step("tech-debt.e2e", "E2E validation completed", "`k2 validate e2e` passes (run inside this checklist).",
                 measure_e2e, depends_on=services, retry=False),
        ),
        source=f"{common.SEED_CONSUMER} (Technical Debt Resolution Checklist)",
    )

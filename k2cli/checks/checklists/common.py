"""Steps several checklists share: service health of the broker, registry, catalog and Prometheus."""

from __future__ import annotations

import importlib.metadata
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2cli.checks.context import Context
from k2cli.checks.model import Result, Step
from k2cli.errors import ConfigError

if TYPE_CHECKING:
    from k2cli.kafka.registry import RegistryError, RegistryUnavailable

SEED_CONSUMER = "seed 000: Consumer Validation Procedures"
SEED_PHASE5 = "seed 003: Phase 5 Validation Guide"


def ms_since(started: float) -> float:
    """Milliseconds since a monotonic start, rounded."""
    return round((time.monotonic() - started) * 1000, 1)


# ---------------------------------------------------------------- broker


def measure_broker(ctx: Context) -> Result:
    """Ask the brokers for cluster metadata."""
    from k2cli.checks.probes import kafka

    started = time.monotonic()
    meta = kafka.cluster(ctx.settings)
    elapsed = ms_since(started)
    brokers = sorted(f"{b.id}@{b.host}:{b.port}" for b in meta.brokers.values())
    if not brokers:
        return Result.failed("the cluster reported no brokers", measured=0, unit="brokers")
    return ctx.check("service_latency_max_ms", elapsed, f"{len(brokers)} broker(s) answered in {elapsed} ms",
                     evidence=[f"bootstrap: {ctx.settings.kafka_bootstrap_servers}", f"brokers: {', '.join(brokers)}",
                               f"cluster id: {meta.cluster_id}", f"topics visible: {len(meta.topics)}"])


def broker_step(step_id: str) -> Step:
    """Kafka answers metadata requests."""
    return Step(step_id, "Kafka broker reachable",
                "The brokers at K2_KAFKA_BOOTSTRAP_SERVERS answer a metadata request.", measure_broker,
                thresholds=("service_latency_max_ms",))


def measure_topics(ctx: Context) -> Result:
    """Check every exchange's trade topic exists with partitions and no errors."""
    from k2cli.checks.probes import kafka

    meta = kafka.cluster(ctx.settings)
    wanted = [es.topic for es in ctx.settings.exchanges.values()]
    evidence, missing = [], []
    for topic in wanted:
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            missing.append(topic)
            evidence.append(f"{topic}: missing" + (f" ({info.error.str()})" if info and info.error else ""))
        else:
            evidence.append(f"{topic}: {len(info.partitions)} partitions")
    present = len(wanted) - len(missing)
    if missing:
        return Result.failed(f"topic {missing[0]} does not exist (`k2 stack up` creates the trade topics)",
                             measured=present, threshold=f"== {len(wanted)}", unit="topics", evidence=evidence)
    return Result.passed(f"{present} trade topics exist", measured=present, threshold=f"== {len(wanted)}",
                         unit="topics", evidence=evidence)


# ---------------------------------------------------------------- registry


def _answered(exc: RegistryError | RegistryUnavailable) -> int:
    """The HTTP status of a registry error; re-raises when the registry did not answer at all."""
    if exc.status == 0:
        raise exc
    return exc.status


def _latest(ctx: Context, subject: str) -> dict[str, Any] | int | None:
    """The latest version of a subject, None when it is not registered, or the HTTP status of an error answer."""
    from k2cli.kafka.registry import RegistryClient, RegistryError, RegistryUnavailable

    client = RegistryClient.from_settings(ctx.settings)
    try:
        return client.latest(subject)
    except (RegistryError, RegistryUnavailable) as exc:
        return _answered(exc)
    finally:
        client.close()


def measure_registry(ctx: Context) -> Result:
    """List subjects through the Confluent REST API."""
    from k2cli.kafka.registry import RegistryClient, RegistryError, RegistryUnavailable

    client = RegistryClient.from_settings(ctx.settings)
    try:
        started = time.monotonic()
        subjects = client.subjects()
        elapsed = ms_since(started)
        try:
            level = client.compatibility() or "unknown (HTTP 200)"
        except (RegistryError, RegistryUnavailable) as exc:
            level = f"unknown (HTTP {_answered(exc)})"
    finally:
        client.close()
    return ctx.check("service_latency_max_ms", elapsed,
                     f"registry answered in {elapsed} ms with {len(subjects)} subjects",
                     evidence=[f"url: {client.url}", f"global compatibility: {level}"])


def registry_step(step_id: str) -> Step:
    """The Schema Registry answers."""
    return Step(step_id, "Schema Registry reachable",
                "The registry at K2_SCHEMA_REGISTRY_URL lists its subjects (Confluent REST API).", measure_registry,
                thresholds=("service_latency_max_ms",))


def measure_subjects(ctx: Context) -> Result:
    """Each trade subject is either not registered yet or carries the v2 trade schema."""
    import json

    from k2cli.trade import FIELD_NAMES

    evidence, wrong, registered = [], [], 0
    for topic in (es.topic for es in ctx.settings.exchanges.values()):
        subject = f"{topic}-value"
        body = _latest(ctx, subject)
        if body is None:
            evidence.append(f"{subject}: not registered yet (the first `k2 stream` registers it)")
            continue
        if isinstance(body, int):
            wrong.append(subject)
            evidence.append(f"{subject}: HTTP {body}")
            continue
        registered += 1
        try:
            fields = [f["name"] for f in json.loads(body["schema"]).get("fields", [])]
        except (KeyError, ValueError, TypeError):
            fields = []
        if tuple(fields) == FIELD_NAMES:
            evidence.append(f"{subject}: version {body.get('version')}, schema id {body.get('id')}, v2 fields")
        else:
            wrong.append(subject)
            missing = [f for f in FIELD_NAMES if f not in fields]
            evidence.append(f"{subject}: version {body.get('version')} is not the v2 trade "
                            f"(missing {missing or 'none'}, fields {fields})")
    if wrong:
        return Result.failed(f"subject {wrong[0]} does not hold the v2 trade schema", measured=registered,
                             unit="subjects", evidence=evidence)
    return Result.passed(f"{registered} of 2 trade subjects registered, all v2", measured=registered,
                         unit="subjects", evidence=evidence)


# ---------------------------------------------------------------- catalog and lake


def open_catalog(ctx: Context) -> Any:
    """The Iceberg SQL catalog of the settings (cached for the run)."""
    if "catalog" not in ctx.state:
        from k2cli.lake.catalog import open_catalog as _open

        ctx.state["catalog"] = _open(ctx.settings)
    return ctx.state["catalog"]


def measure_catalog(ctx: Context) -> Result:
    """Open the SQL catalog and list namespaces."""
    from k2cli.redaction import redact

    ctx.state.pop("catalog", None)
    opened = time.monotonic()
    catalog = open_catalog(ctx)  # imports pyiceberg and creates the catalog tables if needed: not service time
    open_ms = ms_since(opened)
    started = time.monotonic()
    namespaces = [".".join(ns) for ns in catalog.list_namespaces()]
    elapsed = ms_since(started)
    return ctx.check("service_latency_max_ms", elapsed,
                     f"catalog answered in {elapsed} ms with {len(namespaces)} namespace(s)",
                     evidence=[f"uri: {redact(ctx.settings.catalog_uri)}", f"warehouse: {ctx.settings.warehouse}",
                               f"namespaces: {', '.join(namespaces) or '(none)'}",
                               f"opening the catalog (imports, schema set-up) took {open_ms} ms"])


def catalog_step(step_id: str) -> Step:
    """The Iceberg catalog answers."""
    return Step(step_id, "Iceberg catalog reachable",
                "pyiceberg's SQL catalog at K2_ICEBERG_CATALOG_URI opens and lists namespaces.", measure_catalog,
                thresholds=("service_latency_max_ms",))


def load_table(ctx: Context) -> Any | None:
    """The trades table, or None when it does not exist yet."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        return open_catalog(ctx).load_table(ctx.settings.table)
    except (NoSuchTableError, NoSuchNamespaceError):
        return None


def schema_differences(actual: Any, expected: Any) -> list[str]:
    """How an Iceberg schema differs from the expected one (names, types, required flags)."""
    have = {f.name: f for f in actual.fields}
    diffs = []
    for want in expected.fields:
        got = have.get(want.name)
        if got is None:
            diffs.append(f"{want.name}: missing")
            continue
        if str(got.field_type) != str(want.field_type):
            diffs.append(f"{want.name}: {got.field_type}, expected {want.field_type}")
        if got.required != want.required:
            diffs.append(f"{want.name}: {'required' if got.required else 'optional'}, expected "
                         f"{'required' if want.required else 'optional'}")
    extra = [name for name in have if name not in {f.name for f in expected.fields}]
    diffs += [f"{name}: not a v2 field" for name in extra]
    return diffs


def measure_table(ctx: Context) -> Result:
    """The trades table is either not created yet or has exactly the v2 schema."""
    from k2cli.trade import iceberg_schema

    table = load_table(ctx)
    if table is None:
        return Result.passed(f"{ctx.settings.table} not created yet (the first `k2 consume` creates it)",
                             measured=0, unit="snapshots")
    diffs = schema_differences(table.schema(), iceberg_schema())
    snapshot = table.current_snapshot()
    summary = dict(snapshot.summary.additional_properties) if snapshot and snapshot.summary else {}
    evidence = [f"location: {table.metadata.location}", f"snapshots: {len(table.metadata.snapshots)}",
                f"total records: {summary.get('total-records', 0)}", f"partition spec: {table.spec()}"]
    if diffs:
        return Result.failed(f"{ctx.settings.table} schema differs from v2: {diffs[0]}", evidence=diffs + evidence)
    return Result.passed(f"{ctx.settings.table} has the v2 schema ({len(table.metadata.snapshots)} snapshots)",
                         measured=len(table.metadata.snapshots), unit="snapshots", evidence=evidence)


def measure_writable(ctx: Context) -> Result:
    """Write, read back and delete a probe file in the warehouse; prove the data and DLQ directories writable."""
    from pyiceberg.io import load_file_io

    from k2cli.lake.catalog import storage_properties
    from k2cli.settings import ensure_writable_dir

    s = ctx.settings
    evidence, problems = [], []
    location = s.warehouse.rstrip("/")
    props = storage_properties(s)
    probe = f"{location}/.k2-validate-probe-{uuid.uuid4().hex[:8]}"
    try:
        io = load_file_io(props, location)
        with io.new_output(probe).create(overwrite=True) as fh:
            fh.write(b"k2")
        if io.new_input(probe).open().read() != b"k2":
            problems.append(f"warehouse {location}: probe read back different bytes")
        io.delete(probe)
        evidence.append(f"warehouse {location}: wrote, read back and deleted a probe file")
    except Exception as exc:  # any FileIO failure means the consumer could not write data files either
        problems.append(f"warehouse {location} is not writable: {exc.__class__.__name__}: {exc}")
    for path, setting in ((s.resolved_data_dir, "K2_DATA_DIR"), (s.dlq_path, "K2_DLQ_DIR")):
        try:
            ensure_writable_dir(Path(path), setting)
            evidence.append(f"{setting} {path}: writable")
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        return Result.failed(problems[0], measured=len(problems), unit="problems", evidence=problems + evidence)
    return Result.passed("warehouse, data and DLQ directories are writable", measured=0, unit="problems",
                         evidence=evidence)


# ---------------------------------------------------------------- Prometheus


def prometheus(ctx: Context) -> Any:
    """A Prometheus client for the run."""
    if "prometheus" not in ctx.state:
        from k2cli.observe.prometheus_api import Prometheus

        ctx.state["prometheus"] = Prometheus(ctx.settings.prometheus_url)
        ctx.on_close(ctx.state["prometheus"].close)
    return ctx.state["prometheus"]


def measure_prometheus(ctx: Context) -> Result:
    """Prometheus reports ready."""
    prom = prometheus(ctx)
    started = time.monotonic()
    ready, text = prom.ready()
    elapsed = ms_since(started)
    if not ready:
        return Result.failed(f"Prometheus at {prom.url} is not ready: {text}")
    return ctx.check("service_latency_max_ms", elapsed, f"Prometheus {prom.version()} ready in {elapsed} ms",
                     evidence=[f"url: {prom.url}", f"/-/ready: {text}"])


def prometheus_step(step_id: str) -> Step:
    """Prometheus answers."""
    return Step(step_id, "Prometheus up", "Prometheus at K2_PROMETHEUS_URL reports ready.", measure_prometheus,
                thresholds=("service_latency_max_ms",))


REFUSED = ("connection refused", "connect: connection refused")


def k2_targets(ctx: Context) -> list[dict[str, Any]]:
    """Prometheus's active scrape targets of k2 jobs (job names starting with k2)."""
    return [t for t in prometheus(ctx).targets() if str(t.get("labels", {}).get("job", "")).startswith("k2")]


def measure_scraping(ctx: Context) -> Result:
    """Prometheus's scrape loop works and it has k2 targets; no k2 endpoint answers with garbage."""
    prom = prometheus(ctx)
    self_up = prom.value('max(up{job="prometheus"})')
    targets = k2_targets(ctx)
    evidence = [f"{t['labels'].get('job')} {t.get('scrapeUrl')}: {t.get('health')}"
                + (f" ({t.get('lastError')})" if t.get("lastError") else "") for t in targets]
    evidence.insert(0, f'up{{job="prometheus"}} = {self_up}')
    if not targets:
        return Result.failed("Prometheus has no k2 scrape targets (its configuration is not k2's; "
                             "`k2 stack up` renders it)", measured=0, unit="targets", evidence=evidence)
    up = [t for t in targets if t.get("health") == "up"]
    broken = [t for t in targets if t.get("health") == "down"
              and not any(r in str(t.get("lastError", "")).lower() for r in REFUSED)]
    if broken:
        t = broken[0]
        return Result.failed(f"k2 target {t['labels'].get('job')} at {t.get('scrapeUrl')} answers but cannot be "
                             f"scraped: {t.get('lastError')}", measured=len(up), unit="targets up",
                             evidence=evidence)
    if self_up != 1:
        return Result.failed("Prometheus is not scraping (its own target is not up)", measured=len(up),
                             unit="targets up", evidence=evidence)
    note = "" if up else "; no k2 process with metrics is running right now"
    return Result.passed(f"{len(targets)} k2 targets configured, {len(up)} up{note}", measured=len(up),
                         unit="targets up", evidence=evidence)


# ---------------------------------------------------------------- Python dependencies


_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*((?:[<>=!~]=?\s*[^,;\s]+\s*,?\s*)*)(;.*)?$")


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def satisfies(version: str, spec: str) -> bool:
    """Whether a version meets a simple specifier list like '>=5.9,<8' (release numbers only)."""
    have = _release(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        op = re.match(r"[<>=!~]=?", clause)
        if not op:
            continue
        want = _release(clause[op.end():].strip())
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "==": a == b, "!=": a != b,
              "~=": a >= b and a[:len(want) - 1] == b[:len(want) - 1]}.get(op.group(), True)
        if not ok:
            return False
    return True


def requirements() -> list[tuple[str, str]]:
    """(package, specifier) of k2's runtime dependencies (installed metadata, else pyproject.toml)."""
    try:
        lines = importlib.metadata.requires("k2cli") or []
    except importlib.metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
        lines = tomllib.loads(pyproject.read_text())["project"]["dependencies"] if pyproject.is_file() else []
    out = []
    for line in lines:
        match = _SPEC.match(line)
        if not match or (match.group(3) and "extra" in match.group(3)):
            continue
        out.append((match.group(1), match.group(2).replace(" ", "")))
    return out


def measure_dependencies(ctx: Context) -> Result:
    """Every runtime dependency is installed at a version its specifier accepts."""
    evidence, problems = [], []
    for name, spec in requirements():
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed (needs {spec or 'any version'})")
            continue
        if satisfies(version, spec):
            evidence.append(f"{name} {version} ({spec or 'any'})")
        else:
            problems.append(f"{name} {version} does not satisfy {spec}")
    total = len(evidence) + len(problems)
    if problems:
        return Result.failed(problems[0], measured=len(evidence), threshold=f"== {total}", unit="packages",
                             evidence=problems + evidence)
    return Result.passed(f"all {total} runtime dependencies installed", measured=total, threshold=f"== {total}",
                         unit="packages", evidence=evidence)

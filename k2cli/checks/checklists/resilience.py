"""`k2 validate resilience`: the Phase 5 P0/P1 steps of seed 003 that a machine can check.

Faults come from `k2 simulate` (no pong, stalled connection, a TLS certificate from an unknown CA); every
run of `k2 stream` writes to a scratch topic that is deleted afterwards. Long runs (12 h, 24 h) are MANUAL
steps that name the `k2 soak` command to run instead.
"""

from __future__ import annotations

import re
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from k2cli.checks import metricnames as mn
from k2cli.checks.checklists import common, v2check
from k2cli.checks.context import Context, Options
from k2cli.checks.model import Checklist, Manual, Result, Status, Step
from k2cli.checks.probes import pipeline
from k2cli.checks.probes.proc import run_k2
from k2cli.checks.probes.source import source_root
from k2cli.exchanges import registry

# seed 003's unit-test areas, matched against test module/class/function names
UNIT_AREAS = {
    "SSL context creation, certificate validation": ("ssl", "tls", "cert"),
    "rotation loop, lifetime tracking": ("rotat", "lifetime"),
    "LRU eviction, bounded cache": ("lru", "evict", "cache"),
    "memory monitoring, leak detection": ("memory", "leak", "rss"),
    "ping loop, pong tracking": ("ping", "pong", "heartbeat"),
}
DOC_SETTINGS = ("K2_SSL_VERIFY", "K2_CA_BUNDLE", "K2_ROTATION_INTERVAL", "K2_PING_INTERVAL", "K2_PONG_TIMEOUT",
                "K2_IDLE_TIMEOUT", "K2_SERIALIZER_CACHE_MAX_SIZE")


def _symbols(ctx: Context) -> list[str]:
    return list(ctx.settings.exchange(ctx.options.exchange).symbols)


def _family(ctx: Context, family: str) -> str:
    return mn.stream(ctx.options.exchange, family)


def _default(name: str) -> Any:
    from k2cli.settings import Settings

    return Settings.__dataclass_fields__[name].default


# ---------------------------------------------------------------- unit tests and documentation


def unit_run(ctx: Context, coverage: bool = False) -> Any:
    """The unit suite of the checkout, run once per checklist (None without a checkout)."""
    from k2cli.checks.probes.source import run_pytest

    root = source_root()
    if root is None:
        return None
    if "unit_run" not in ctx.state:
        ctx.progress("running the unit tests")
        ctx.state["unit_run"] = run_pytest(root, "tests/unit", ctx.workdir, timeout=1200, coverage=coverage)
    return ctx.state["unit_run"]


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    """Whether a test's dotted name has a word starting with one of the keywords (so 'dropping' is not 'ping')."""
    tokens = re.split(r"[^a-z0-9]+", text.lower())
    return any(token.startswith(word) for token in tokens for word in words)


NO_CHECKOUT = Manual("k2 runs from an installed package, without its tests",
                     "run the unit tests of the k2 release in CI and check they all pass")


def measure_unit_tests(ctx: Context) -> Result:
    """Each Phase 5 area has unit tests and the whole unit suite passes (every failure counts)."""
    run = unit_run(ctx)
    if run is None:
        return Result.needs_person(NO_CHECKOUT)
    evidence, problems = [], []
    for area, words in UNIT_AREAS.items():
        cases = [c for c in run.cases if _mentions(c.text, words)]
        failed = [c for c in cases if c.outcome in ("failed", "error")]
        evidence.append(f"{area}: {len(cases)} tests, {len(failed)} failed"
                        + (f" (e.g. {', '.join(c.name for c in cases[:2])})" if cases else ""))
        if not cases:
            problems.append(f"no unit tests for {area}")
    failed_all = [c for c in run.cases if c.outcome in ("failed", "error")]  # every failure counts, in an area or not
    problems += [f"{c.classname}::{c.name} {c.outcome}" for c in failed_all]
    evidence.append(f"whole unit suite: {len(run.cases)} tests, {len(failed_all)} failed ({run.command})")
    if not run.cases:
        return Result.errored(f"pytest ran no tests: {run.tail[-200:]}")
    if run.returncode != 0 and not failed_all:
        problems.append(f"pytest exited {run.returncode} with no failed test case: {run.tail[-200:]}")
    return Result.counted(problems, "every Phase 5 area has passing unit tests", unit="problems", evidence=evidence)


def docs_mentions(root: Path, names: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Where README.md and docs/*.md mention each name: ({name: 'file:line'}, missing names)."""
    files = [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]
    found: dict[str, str] = {}
    for path in files:
        if not path.is_file() or "seeds" in path.parts or path.name == "validation-coverage.md":  # not docs of k2
            continue
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name in names:
                if name not in found and name in line:
                    found[name] = f"{path.relative_to(root)}:{lineno}"
    return found, [n for n in names if n not in found]


DOCS_MANUAL = Manual("whether documentation is accurate and complete is a judgement",
                     "read the README and the streaming runbook: TLS (K2_SSL_VERIFY, K2_CA_BUNDLE), rotation, "
                     "heartbeat and idle-timeout settings are described as k2 behaves")


def measure_docs(ctx: Context) -> Result:
    """README/docs mention every Phase 5 setting (else FAIL); a person then checks they are accurate (MANUAL)."""
    root = source_root()
    if root is None:
        return Result.needs_person(DOCS_MANUAL, evidence=["no checkout to search"])
    found, missing = docs_mentions(root, DOC_SETTINGS)
    evidence = [f"{name}: {where}" for name, where in found.items()]
    if missing:
        return Result.failed(f"the documentation never mentions {', '.join(missing)}", measured=len(found),
                             threshold=f"== {len(DOC_SETTINGS)}", unit="settings",
                             evidence=[f"missing: {', '.join(missing)}"] + evidence)
    return Result.needs_person(DOCS_MANUAL, "every Phase 5 setting is documented; a person must check the text",
                               evidence=evidence)


# ---------------------------------------------------------------- configuration defaults


def _config(ctx: Context, field: str, threshold: str, what: str) -> Result:
    default = _default(field)
    effective = getattr(ctx.settings, field)
    expected = ctx.threshold(threshold)
    evidence = [f"default {field} = {default}", f"in force here: {effective}"]
    if float(default) != expected:
        return Result.failed(f"{what} defaults to {default}, the seed asks for {expected:g}", measured=default,
                             threshold=ctx.describe(threshold), evidence=evidence)
    return Result.passed(f"{what} defaults to {default:g}" + ("" if effective == default else
                                                            f" (overridden to {effective:g} here)"),
                         measured=default, threshold=ctx.describe(threshold), evidence=evidence)


def measure_tls_default(ctx: Context) -> Result:
    """ssl_verify defaults to True and is in force; the exchange URLs are wss://."""
    from k2cli.settings import env_name

    s = ctx.settings
    urls = [u for es in s.exchanges.values() for u in (es.url, *es.failover_urls)]
    plain = [u for u in urls if not u.startswith("wss://")]
    evidence = [f"default ssl_verify = {_default('ssl_verify')}", f"in force: {s.ssl_verify}",
                f"ca_bundle: {s.ca_bundle or '(certifi only)'}", *[f"url: {u}" for u in urls]]
    if _default("ssl_verify") is not True:
        return Result.failed("ssl_verify does not default to True", evidence=evidence)
    if not s.ssl_verify:
        return Result.failed(f"TLS verification is switched off here ({env_name('ssl_verify')}=false)",
                             evidence=evidence)
    if plain:
        return Result.warned(f"{plain[0]} is not wss:// (fine for a local simulator, not for an exchange)",
                             evidence=evidence)
    return Result.passed("ssl_verify defaults to True and is on; every exchange URL is wss://", evidence=evidence)


def measure_cache_config(ctx: Context) -> Result:
    """serializer_cache_max_size defaults to 10."""
    return _config(ctx, "serializer_cache_max_size", "config_cache_max_size", "serializer_cache_max_size")


def measure_heartbeat_config(ctx: Context) -> Result:
    """ping_interval defaults to 180 s and pong_timeout to 10 s."""
    ping = _config(ctx, "ping_interval", "config_ping_interval_s", "ping_interval")
    pong = _config(ctx, "pong_timeout", "config_pong_timeout_s", "pong_timeout")
    status = Status.FAIL if Status.FAIL in (ping.status, pong.status) else Status.PASS
    return Result.make(status, f"{ping.summary}; {pong.summary}", measured=ping.measured, unit="s",
                       threshold=f"{ping.threshold}; pong {pong.threshold}", evidence=ping.evidence + pong.evidence)


def measure_idle_config(ctx: Context) -> Result:
    """idle_timeout (the seed's health-check timeout) defaults to 30 s."""
    return _config(ctx, "idle_timeout", "config_idle_timeout_s", "idle_timeout")


def measure_idle_compose(ctx: Context) -> Result:
    """The Docker Compose files do not set K2_IDLE_TIMEOUT to anything but the seed's 30 s."""
    root = source_root()
    if root is None:
        return Result.needs_person(Manual("k2 runs from an installed package, without its deployment files",
                                          "check your deployment sets K2_IDLE_TIMEOUT=30 or leaves it unset"))
    files = sorted({*root.glob("docker-compose*.yml"), *root.glob("deploy/compose/*.yml")})
    expected = ctx.threshold("config_idle_timeout_s")
    evidence, wrong = [], []
    for path in files:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            match = re.search(r"K2_IDLE_TIMEOUT\W+([0-9.]+)", line)
            if match:
                evidence.append(f"{path.relative_to(root)}:{lineno}: {line.strip()}")
                if float(match.group(1)) != expected:
                    wrong.append(evidence[-1])
    if not files:
        return Result.needs_person(Manual("this checkout has no Docker Compose file",
                                          "check your deployment sets K2_IDLE_TIMEOUT=30 or leaves it unset"))
    if wrong:
        return Result.failed(f"a Compose file sets K2_IDLE_TIMEOUT to something other than {expected:g}",
                             evidence=wrong + evidence)
    summary = "K2_IDLE_TIMEOUT=30 in Compose" if evidence else "Compose leaves K2_IDLE_TIMEOUT unset (default 30 s)"
    searched = ", ".join(str(f.relative_to(root)) for f in files)
    return Result.passed(summary, evidence=evidence or [f"searched {searched}"])


# ---------------------------------------------------------------- the probe run: rotation, heartbeat, metrics


def run_probe(ctx: Context) -> Result:
    """`k2 stream` against the simulator with a short rotation interval and ping interval, scraping /metrics."""
    ex = ctx.options.exchange
    interval = ctx.threshold("rotation_test_interval_s")
    ping = ctx.threshold("heartbeat_test_interval_s")
    duration = ctx.threshold("resilience_probe_s")
    sim = pipeline.start_simulator(ctx, ex, symbols=_symbols(ctx), rate=50)
    ctx.progress(f"k2 stream {ex} for {duration:g} s: rotation every {interval:g} s, ping every {ping:g} s")
    run = pipeline.stream_run(ctx, ex, sim.url, duration=duration,
                              extra=["--rotation-interval", f"{interval:g}", "--ping-interval", f"{ping:g}",
                                     "--verbose"])
    records, errors, _ = pipeline.read_records(ctx, run.topic)
    ctx.state["probe"] = {"run": run, "records": [v2check.normalize(r) for r in records], "errors": errors}
    evidence = [f"command: {run.completed.command}", f"exit code {run.completed.returncode}",
                f"{len(records)} records, {len(run.scrapes)} scrapes of /metrics"]
    if run.completed.returncode != 0:
        return Result.failed(f"`k2 stream` exited {run.completed.returncode}",
                             evidence=evidence + run.completed.stderr.strip().splitlines()[-3:])
    if not run.last_scrape.samples:
        return Result.failed("k2 stream's /metrics never answered", evidence=evidence)
    return Result.passed(f"k2 stream ran {duration:g} s against the simulator: {len(records)} trades",
                         measured=len(records), unit="trades", evidence=evidence)


def _metrics_visible(ctx: Context, families: list[str]) -> Result:
    metrics = ctx.state["probe"]["run"].last_scrape
    present = [f for f in families if metrics.total(f) is not None]
    missing = [f for f in families if f not in present]
    evidence = [f"{f} = {metrics.total(f)}" for f in present]
    if missing:
        return Result.failed(f"not exported: {', '.join(missing)}", measured=len(present),
                             threshold=f"== {len(families)}", unit="metrics", evidence=evidence)
    return Result.passed(f"exported: {', '.join(families)}", measured=len(present), threshold=f"== {len(families)}",
                         unit="metrics", evidence=evidence)


def measure_baseline(ctx: Context) -> Result:
    """Capture the baseline: stream RSS, TLS setting, leak-detection metric (seed 003, pre-implementation)."""
    probe = ctx.state["probe"]
    metrics = probe["run"].last_scrape
    rss = metrics.total(mn.RSS)
    score = metrics.total(mn.LEAK_SCORE)
    evidence = [f"stream RSS: {rss / 2**20:.1f} MB" if rss else "stream RSS: not exported",
                f"ssl_verify: {ctx.settings.ssl_verify}", f"leak detection score: {score}",
                f"rate: {len(probe['records'])} trades in {probe['run'].completed.duration:.1f} s"]
    if rss is None or score is None:
        return Result.failed("the baseline metrics (RSS, leak score) are not exported", evidence=evidence)
    return Result.passed(f"baseline captured: RSS {rss / 2**20:.1f} MB, ssl_verify {ctx.settings.ssl_verify}, "
                         f"leak score {score:.2f}", measured=round(rss / 2**20, 1), unit="MB", evidence=evidence)


def measure_rotation(ctx: Context) -> Result:
    """Rotations happened at the short interval."""
    metrics = ctx.state["probe"]["run"].last_scrape
    rotations = metrics.total(_family(ctx, "connection_rotations_total")) or 0
    return ctx.check("rotation_test_min_rotations", rotations,
                     f"{rotations:g} rotations at a {ctx.threshold('rotation_test_interval_s'):g} s interval")


def measure_rotation_metrics(ctx: Context) -> Result:
    """Rotation metrics are exported."""
    return _metrics_visible(ctx, [_family(ctx, "connection_rotations_total"),
                                  _family(ctx, "connection_lifetime_seconds")])


def measure_rotation_logged(ctx: Context) -> Result:
    """Each rotation is logged."""
    lines = [line for line in ctx.state["probe"]["run"].completed.stderr.splitlines() if "rotat" in line.lower()]
    if not lines:
        return Result.failed("no rotation appears in the stream's log (--verbose)", measured=0, unit="log lines")
    return Result.passed(f"{len(lines)} rotation log lines", measured=len(lines), unit="log lines",
                         evidence=lines[:4])


def measure_rotation_continuity(ctx: Context) -> Result:
    """No trade was lost or duplicated across rotations: every symbol delivered, its sequence numbers contiguous
    and each once (k2 stream drops the trades two overlapping connections both deliver)."""
    records = ctx.state["probe"]["records"]
    runs: dict[str, list[int]] = {}
    for rec in records:
        if rec.get("source_sequence") is not None:
            runs.setdefault(rec["symbol"], []).append(rec["source_sequence"])
    if not runs:
        return Result.errored(f"{ctx.options.exchange} trades carry no source_sequence; continuity cannot be "
                              f"measured (use --exchange {registry.default().name})")
    gaps = sum(v2check.sequence_gaps(seqs) for seqs in runs.values())
    dups = sum(len(seqs) - len(set(seqs)) for seqs in runs.values())
    evidence = [f"{sym}: {min(s)}..{max(s)}, {len(s)} trades, {v2check.sequence_gaps(s)} gaps, "
                f"{len(s) - len(set(s))} duplicates" for sym, s in sorted(runs.items())]
    symbols = _symbols(ctx)
    if len(runs) < len(symbols):  # the simulator trades every symbol many times a second
        return Result.failed(f"trades of {len(runs)} of {len(symbols)} symbols reached Kafka "
                             f"(streamed {', '.join(symbols)})", measured=len(runs), threshold=f"== {len(symbols)}",
                             unit="symbols", evidence=evidence)
    if gaps or dups:
        return Result.failed(f"{gaps} gaps and {dups} duplicate trades in the sequences across rotations",
                             measured=gaps + dups, threshold="== 0", unit="gaps and duplicates", evidence=evidence)
    return Result.passed(f"{len(records)} trades contiguous across rotations, no duplicates", measured=0,
                         threshold="== 0", unit="gaps and duplicates", evidence=evidence)


def measure_heartbeat(ctx: Context) -> Result:
    """Pings went out at the short interval and every one got its pong in time."""
    run = ctx.state["probe"]["run"]
    scraped_at = next((t for t, m in reversed(run.scrapes) if m.samples), time.time())
    metrics = run.last_scrape
    pings = metrics.total(_family(ctx, "pings_sent_total")) or 0
    timeouts = metrics.total(_family(ctx, "pong_timeouts_total")) or 0
    last_pong = metrics.total(_family(ctx, "last_pong_timestamp_seconds")) or 0
    age = scraped_at - last_pong if last_pong else None
    evidence = [f"pings sent {pings:g}, pong timeouts {timeouts:g}",
                f"last pong {age:.1f} s before the last scrape" if age is not None else "no pong recorded"]
    pongs = pings - timeouts
    limit = ctx.threshold("heartbeat_test_interval_s") + ctx.settings.pong_timeout
    if timeouts or age is None or age > limit:
        return Result.failed(f"{timeouts:g} pong timeouts; last pong "
                             + (f"{age:.1f} s old" if age is not None else "never"), measured=pongs, unit="pongs",
                             threshold=ctx.describe("heartbeat_test_min_pongs"), evidence=evidence)
    return ctx.check("heartbeat_test_min_pongs", pongs, f"{pings:g} pings, all answered; last pong {age:.1f} s old",
                     evidence=evidence)


def measure_heartbeat_metrics(ctx: Context) -> Result:
    """Heartbeat metrics are exported."""
    return _metrics_visible(ctx, [_family(ctx, "last_pong_timestamp_seconds"), _family(ctx, "pong_timeouts_total")])


def measure_cache_metrics(ctx: Context) -> Result:
    """Serializer cache metrics are exported."""
    return _metrics_visible(ctx, [mn.CACHE_SIZE, mn.CACHE_EVICTIONS])


def measure_memory_metrics(ctx: Context) -> Result:
    """Memory metrics are exported."""
    return _metrics_visible(ctx, [mn.RSS, mn.VMS, mn.LEAK_SCORE])


# ---------------------------------------------------------------- fault runs


def _fault_run(ctx: Context, sim_faults: dict[str, Any], extra: list[str], duration: float) -> pipeline.StreamRun:
    ex = ctx.options.exchange
    sim = pipeline.start_simulator(ctx, ex, symbols=_symbols(ctx), rate=50, **sim_faults)
    return pipeline.stream_run(ctx, ex, sim.url, duration=duration, extra=extra)


def measure_pong_timeout(ctx: Context) -> Result:
    """A simulator that never answers pings makes the stream time out and reconnect."""
    ping = ctx.threshold("heartbeat_test_interval_s")
    run = _fault_run(ctx, {"no_pong": True}, ["--ping-interval", f"{ping:g}", "--pong-timeout", f"{ping:g}"],
                     duration=ping * 4 + 2)
    metrics = run.last_scrape
    timeouts = metrics.total(_family(ctx, "pong_timeouts_total")) or 0
    reconnects = metrics.total(_family(ctx, "reconnects_total"), reason="pong_timeout") or 0
    evidence = [f"pong timeouts {timeouts:g}, reconnects for pong_timeout {reconnects:g}", run.completed.command]
    if timeouts < 1 or reconnects < 1:
        return Result.failed("the stream did not reconnect after unanswered pings", measured=reconnects,
                             threshold=">= 1", unit="reconnects", evidence=evidence)
    return Result.passed(f"{timeouts:g} pong timeouts, each followed by a reconnect", measured=reconnects,
                         threshold=">= 1", unit="reconnects", evidence=evidence)


def measure_idle_reconnect(ctx: Context) -> Result:
    """A simulator that goes silent makes the stream reconnect after the idle timeout."""
    idle = ctx.threshold("idle_test_timeout_s")
    run = _fault_run(ctx, {"stall_after": 1}, ["--idle-timeout", f"{idle:g}"], duration=idle * 2 + 3)
    reconnects = run.last_scrape.total(_family(ctx, "reconnects_total"), reason="idle_timeout") or 0
    lines = [line for line in run.completed.stderr.splitlines() if "idle" in line.lower()][:3]
    evidence = [run.completed.command, *lines]
    if reconnects < 1:
        return Result.failed(f"no reconnect after {idle:g} s without frames", measured=reconnects, threshold=">= 1",
                             unit="reconnects", evidence=evidence)
    return Result.passed(f"{reconnects:g} reconnects after {idle:g} s without frames", measured=reconnects,
                         threshold=">= 1", unit="reconnects", evidence=evidence)


def _tls_simulator(ctx: Context) -> tuple[str, Any]:
    if "tls" not in ctx.state:
        from k2cli.checks.probes.tls import make_tls

        files = make_tls(ctx.workdir / "tls")
        sim = pipeline.start_simulator(ctx, ctx.options.exchange, symbols=_symbols(ctx), rate=50,
                                       tls_cert=str(files.cert), tls_key=str(files.key))
        ctx.state["tls"] = (sim.url, files)
    return ctx.state["tls"]


def measure_tls_valid(ctx: Context) -> Result:
    """With verification on, k2 stream connects over TLS to a server whose CA it was given."""
    url, files = _tls_simulator(ctx)
    run = pipeline.stream_run(ctx, ctx.options.exchange, url, duration=20, max_messages=5,
                              extra=["--ca-bundle", str(files.ca)], env={"K2_SSL_VERIFY": "true"})
    records, _, _ = pipeline.read_records(ctx, run.topic)
    evidence = [run.completed.command, f"exit code {run.completed.returncode}"]
    if not records:
        return Result.failed(f"no trades over verified TLS from {url}", measured=0, unit="trades",
                             evidence=evidence + run.completed.stderr.strip().splitlines()[-3:])
    return Result.passed(f"{len(records)} trades over TLS with the certificate verified", measured=len(records),
                         unit="trades", evidence=evidence)


def measure_tls_bad_cert(ctx: Context) -> Result:
    """With verification on and no CA for it, k2 stream refuses the server's certificate."""
    url, _ = _tls_simulator(ctx)
    run = pipeline.stream_run(ctx, ctx.options.exchange, url, duration=4,
                              env={"K2_SSL_VERIFY": "true", "K2_CA_BUNDLE": ""})
    records, _, _ = pipeline.read_records(ctx, run.topic)
    tls_errors = run.last_scrape.total(_family(ctx, "connection_errors_total"), error_type="tls") or 0
    lines = [line for line in run.completed.stderr.splitlines() if "certif" in line.lower() or "tls" in line.lower()]
    evidence = [run.completed.command, f"tls connection errors: {tls_errors:g}", *lines[:3]]
    if records:
        return Result.failed(f"{len(records)} trades accepted from a server with an untrusted certificate",
                             measured=len(records), threshold="== 0", unit="trades", evidence=evidence)
    if tls_errors < 1 and not lines:
        return Result.failed("no trades, but no TLS refusal either (the connection failed for another reason)",
                             measured=0, threshold="== 0", unit="trades", evidence=evidence)
    return Result.passed(f"certificate refused ({tls_errors:g} TLS errors), no trades accepted", measured=0,
                         threshold="== 0", unit="trades", evidence=evidence)


# ---------------------------------------------------------------- serializer cache (in process, real registry)


def _cache_subjects(ctx: Context, count: int) -> list[str]:
    prefix = f"k2-validate.resilience.cache.{uuid.uuid4().hex[:8]}"
    subjects = [f"{prefix}.{i}-value" for i in range(count)]
    for subject in subjects:
        ctx.on_close(pipeline.delete_subject, ctx, subject)
    return subjects


def _sample_record() -> dict[str, Any]:
    from k2cli.trade import new_trade

    now = int(time.time() * 1_000_000)
    code = registry.default().code
    return new_trade(trade_id=f"{code}-1", symbol="BTCUSDT", exchange=code, timestamp_us=now, price="1",
                     quantity="1", currency="USDT", side="BUY", ingestion_timestamp_us=now)


def measure_cache_eviction(ctx: Context) -> Result:
    """15 subjects through a cache of 10 serializers evict exactly 5 (each serializer registers and encodes)."""
    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import SerializerCache

    count = int(ctx.threshold("cache_test_subjects"))
    size = int(ctx.threshold("config_cache_max_size"))
    registry = RegistryClient.from_settings(ctx.settings)
    record = _sample_record()
    try:
        cache = SerializerCache(registry, max_size=size)
        for subject in _cache_subjects(ctx, count):
            cache.get(subject).serialize(record)
    finally:
        registry.close()
    expected = count - size
    evidence = [f"{count} subjects registered and used, cache max_size {size}",
                f"cache size {cache.size}, evictions {cache.evictions}"]
    if cache.evictions != expected or cache.size != size:
        return Result.failed(f"{cache.evictions} evictions and size {cache.size}; expected {expected} and {size}",
                             measured=cache.evictions, threshold=f"== {expected}", unit="evictions", evidence=evidence)
    return Result.passed(f"{count} serializers, {cache.evictions} evicted, {cache.size} kept",
                         measured=cache.evictions, threshold=f"== {expected}", unit="evictions", evidence=evidence)


def measure_cache_memory(ctx: Context) -> Result:
    """Memory retained by a full cache stays flat while 100+ more subjects pass through it."""
    import gc

    from k2cli.kafka.registry import RegistryClient
    from k2cli.kafka.serde import SerializerCache

    count = int(ctx.threshold("cache_stress_subjects"))
    size = int(ctx.threshold("config_cache_max_size"))
    subjects = _cache_subjects(ctx, count)
    record = _sample_record()
    registry = RegistryClient.from_settings(ctx.settings)
    tracemalloc.start()
    try:
        cache = SerializerCache(registry, max_size=size)
        for subject in subjects[:size]:
            cache.get(subject).serialize(record)
        gc.collect()
        full = tracemalloc.get_traced_memory()[0]
        for i, subject in enumerate(subjects[size:], start=size):
            cache.get(subject).serialize(record)
            if i % 20 == 0:
                ctx.progress(f"{i}/{count} subjects")
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        registry.close()
    growth_kb = round((after - full) / 1024, 1)
    evidence = [f"traced memory with a full cache ({size} serializers): {full / 1024:.0f} KiB",
                f"after {count} subjects in total: {after / 1024:.0f} KiB",
                f"cache size {cache.size}, evictions {cache.evictions}",
                "growth includes the registry client's id cache (a few KiB per subject)"]
    return ctx.check("cache_memory_growth_max_kb", growth_kb,
                     f"+{growth_kb} KiB retained over {count - size} more subjects", evidence=evidence)


# ---------------------------------------------------------------- Prometheus alert rules


def rule_limit(expr: str, metric: str) -> float | None:
    """The number a rule compares a metric against (`metric > 400 * 1024 * 1024 and ...` gives 419430400)."""
    match = re.search(re.escape(metric) + r"\s*>\s*([0-9.e+*/ ()]+?)(?:\s+(?:and|or|unless)\b|$)", expr)
    if not match:
        return None
    text = match.group(1).strip()
    if not re.fullmatch(r"[0-9.e+*/ ()]+", text):
        return None
    try:
        return float(eval(text, {"__builtins__": {}}, {}))
    except Exception:
        return None


def measure_alert_memory(ctx: Context) -> Result:
    """Prometheus has loaded a memory-high alert (>400 MB RSS) and a leak alert (score >0.8) for this exchange."""
    rules = [r for r in common.prometheus(ctx).rules() if r.get("type") == "alerting"]
    ex = ctx.options.exchange
    want_mb, want_score = ctx.threshold("alert_memory_high_mb"), ctx.threshold("alert_leak_score")
    found, problems = {}, []
    for rule in rules:
        expr = rule.get("query", "")
        if ex not in expr and ex not in str(rule.get("labels", {})):
            continue
        rss = rule_limit(expr, mn.RSS)
        if rss is not None and min(abs(rss / 2**20 - want_mb), abs(rss / 1e6 - want_mb)) < 0.01 * want_mb:
            found["memory_high"] = rule
        score = rule_limit(expr, mn.LEAK_SCORE)
        if score is not None and abs(score - want_score) < 1e-9:
            found["leak"] = rule
    evidence = [f"{k}: {r['name']} ({r.get('health')}): {r.get('query')}" for k, r in found.items()]
    if "memory_high" not in found:
        problems.append(f"no loaded alert fires on {mn.RSS} > {want_mb:g} MB for {ex}")
    if "leak" not in found:
        problems.append(f"no loaded alert fires on {mn.LEAK_SCORE} > {want_score:g} for {ex}")
    problems += [f"rule {r['name']} is unhealthy: {r.get('lastError')}" for r in found.values()
                 if r.get("health") not in ("ok", "unknown")]
    if problems:
        return Result.failed(problems[0], measured=len(found), threshold="== 2", unit="rules",
                             evidence=problems + evidence)
    return Result.passed(f"{found['memory_high']['name']} and {found['leak']['name']} are loaded", measured=2,
                         threshold="== 2", unit="rules", evidence=evidence)


# ---------------------------------------------------------------- soak


def measure_soak_command(ctx: Context) -> Result:
    """The 24 h soak test exists: `k2 soak` runs and takes --hours and --output-dir."""
    done = run_k2(["soak", "--help"], timeout=60)
    if done.returncode != 0:
        return Result.failed(f"`k2 soak --help` exited {done.returncode}", evidence=[done.command])
    flags = [f for f in ("--hours", "--exchange", "--output-dir") if f in done.stdout]
    if len(flags) < 3:
        return Result.failed("`k2 soak --help` lacks " + ", ".join({"--hours", "--exchange", "--output-dir"}
                                                                  - set(flags)))
    return Result.passed("`k2 soak --hours H --exchange E --output-dir DIR` is available", evidence=[done.command])


_SEED = registry.default()  # the exchange the seeds' soak procedure runs against
SOAK_12H = Manual("a 12-hour run; validation checklists run for minutes",
                  f"run `k2 soak --hours 12 --exchange {_SEED.name} --output-dir DIR` and check its report: "
                  "verdict PASS, memory growth < 30 MB, 3 rotations (every 4 h), message rate > 10 msg/s sustained, "
                  "zero critical errors (`k2 soak report DIR` re-renders it)")
SOAK_24H = Manual("a 24-hour run; validation checklists run for minutes",
                  f"run `k2 soak --hours 24 --exchange {_SEED.name} --output-dir DIR` and check its report: "
                  "verdict PASS (24 h without crashes), memory growth < 50 MB, rate > 10 msg/s average, connection "
                  f"drops < 10, and DIR/{_SEED.name}_soak_memory_profile.json written")


def build(options: Options) -> Checklist:
    """The resilience checklist."""
    return Checklist(
        "resilience",
        f"Phase 5 resilience (P0/P1): {options.exchange}",
        "TLS on by default and a bad certificate refused, rotation with a short interval and no loss, heartbeat "
        "and pong-timeout reconnect, bounded serializer cache, memory metrics, alert rules, idle-timeout "
        "reconnect, using the simulator's faults.",
        (*_prerequisites(), *_step01_tls(), *_probe(), *_step02_rotation(), *_step03_cache(), *_step04_memory(),
         *_step05_heartbeat(), *_step06_idle(), *_step07_soak()),
        source=f"{common.SEED_PHASE5} (P0 Steps 01-04, 12h test, P1 Steps 05-07)",
    )


_PROBE = ("resilience.stream-probe",)  # the short-interval stream run the metric steps read
_SERVICES = ("resilience.broker", "resilience.registry")  # what a k2 stream run needs


def _prerequisites() -> tuple[Step, ...]:
    """The services, and the unit tests of every Phase 5 area."""
    return (
        common.broker_step("resilience.broker"),
        common.registry_step("resilience.registry"),
        common.prometheus_step("resilience.prometheus"),
        Step("resilience.unit-tests", "Unit tests pass (Phase 5 areas)",
             "The unit suite passes and has tests for SSL, rotation, LRU cache, memory and ping/pong.",
             measure_unit_tests, manual=NO_CHECKOUT),
    )


def _step01_tls() -> tuple[Step, ...]:
    """Step 01: TLS verification on by default, a verified connection, a bad certificate refused; the docs."""
    return (
        Step("resilience.tls-default", "ssl_verify defaults to True",
             "TLS verification is on by default and in force; exchange URLs are wss://.", measure_tls_default),
        Step("resilience.tls-valid", "Connects over verified TLS",
             "k2 stream reaches a wss:// simulator whose certificate verifies against the given CA.",
             measure_tls_valid, depends_on=_SERVICES),
        Step("resilience.tls-bad-cert", "Invalid certificate refused",
             "With no CA for the server's certificate, k2 stream refuses the connection and takes no trades.",
             measure_tls_bad_cert, depends_on=_SERVICES),
        Step("resilience.docs", "Documentation updated (README, runbook)",
             "README/docs mention every Phase 5 setting; a person checks the text.", measure_docs,
             manual=DOCS_MANUAL),
    )


def _probe() -> tuple[Step, ...]:
    """The probe run with short rotation and ping intervals, and the baseline read from it."""
    return (
        Step("resilience.stream-probe", "Stream with short rotation and ping intervals",
             "k2 stream runs against the simulator with rotation every 2 s and pings every 1 s, /metrics "
             "scraped.", run_probe, depends_on=_SERVICES,
             thresholds=("rotation_test_interval_s", "heartbeat_test_interval_s", "resilience_probe_s")),
        Step("resilience.baseline", "Baseline metrics captured",
             "Stream RSS, ssl_verify and the leak-detection score are recorded.", measure_baseline,
             depends_on=_PROBE),
    )


def _step02_rotation() -> tuple[Step, ...]:
    """Step 02: rotation at a short interval, its metrics and log lines, no trade lost across it."""
    return (
        Step("resilience.rotation", "Connection rotates at a short interval",
             "At least 2 rotations in the probe run.", measure_rotation, depends_on=_PROBE,
             thresholds=("rotation_test_min_rotations",)),
        Step("resilience.rotation-metrics", "Rotation metrics visible",
             "<exchange>_connection_rotations_total and _connection_lifetime_seconds are exported.",
             measure_rotation_metrics, depends_on=_PROBE),
        Step("resilience.rotation-logged", "Rotation logged", "Each rotation appears in the stream's log.",
             measure_rotation_logged, depends_on=_PROBE),
        Step("resilience.rotation-continuity", "No data loss during rotation",
             "Every symbol's trades reach Kafka across rotations, sequences contiguous, each trade once.",
             measure_rotation_continuity, depends_on=_PROBE),
    )


def _step03_cache() -> tuple[Step, ...]:
    """Step 03: the bounded serializer cache: eviction, memory, metrics, its default size."""
    return (
        Step("resilience.cache-eviction", "15 serializers, 5 evicted (max 10)",
             "A SerializerCache of 10 evicts exactly 5 of 15 subjects registered in the real registry.",
             measure_cache_eviction, depends_on=("resilience.registry",),
             thresholds=("cache_test_subjects", "config_cache_max_size")),
        Step("resilience.cache-memory", "Memory stable with 100+ subjects",
             "Retained memory barely grows while 110 more subjects pass through a full cache.",
             measure_cache_memory, depends_on=("resilience.registry",),
             thresholds=("cache_stress_subjects", "cache_memory_growth_max_kb")),
        Step("resilience.cache-metrics", "Serializer cache metrics visible",
             "serializer_cache_size and serializer_cache_evictions_total are exported.", measure_cache_metrics,
             depends_on=_PROBE),
        Step("resilience.cache-config", "serializer_cache_max_size defaults to 10",
             "The setting exists with the seed's default.", measure_cache_config,
             thresholds=("config_cache_max_size",)),
    )


def _step04_memory() -> tuple[Step, ...]:
    """Step 04: the memory metrics and the alert rules on them."""
    return (
        Step("resilience.memory-metrics", "Memory metrics visible",
             "process_memory_rss_bytes, process_memory_vms_bytes and memory_leak_detection_score are exported.",
             measure_memory_metrics, depends_on=_PROBE),
        Step("resilience.alert-memory", "Memory alerts configured",
             "Prometheus has loaded alerts on RSS > 400 MB and leak score > 0.8 for the exchange.",
             measure_alert_memory, depends_on=("resilience.prometheus",),
             thresholds=("alert_memory_high_mb", "alert_leak_score")),
    )


def _step05_heartbeat() -> tuple[Step, ...]:
    """Step 05: the ping-pong heartbeat, its metrics and defaults, and a pong timeout reconnecting."""
    return (
        Step("resilience.heartbeat", "Ping sent, pong received in time",
             "Pings every 1 s in the probe run, every one answered within the pong timeout.", measure_heartbeat,
             depends_on=_PROBE, thresholds=("heartbeat_test_min_pongs",)),
        Step("resilience.heartbeat-metrics", "Heartbeat metrics visible",
             "<exchange>_last_pong_timestamp_seconds and _pong_timeouts_total are exported.",
             measure_heartbeat_metrics, depends_on=_PROBE),
        Step("resilience.heartbeat-config", "ping_interval defaults to 180 s",
             "ping_interval defaults to 180 s and pong_timeout to 10 s.", measure_heartbeat_config,
             thresholds=("config_ping_interval_s", "config_pong_timeout_s")),
        Step("resilience.pong-timeout", "Pong timeout triggers reconnect",
             "Against a simulator that never answers pings, the stream times out and reconnects.",
             measure_pong_timeout, depends_on=_SERVICES),
    )


def _step06_idle() -> tuple[Step, ...]:
    """Step 06: the idle timeout (the seed's health-check timeout): default, compose files, reconnect."""
    return (
        Step("resilience.idle-config", "Idle timeout defaults to 30 s",
             "The seed's health-check timeout (k2: idle_timeout) defaults to 30 s.", measure_idle_config,
             thresholds=("config_idle_timeout_s",)),
        Step("resilience.idle-compose", "Compose environment updated",
             "Docker Compose files leave K2_IDLE_TIMEOUT unset or at 30.", measure_idle_compose),
        Step("resilience.idle-reconnect", "Reconnect after the idle timeout",
             "Against a simulator that goes silent, the stream reconnects after the idle timeout.",
             measure_idle_reconnect, depends_on=_SERVICES, thresholds=("idle_test_timeout_s",)),
    )


def _step07_soak() -> tuple[Step, ...]:
    """Step 07 and the 12 h test: the soak command, and the long runs a person makes with it."""
    return (
        Step("resilience.soak-command", "Soak test implemented",
             "`k2 soak` exists with --hours, --exchange and --output-dir.", measure_soak_command),
        Step("resilience.soak-12h", "12 h validation run", "A 12-hour soak meets the seed's criteria.",
             manual=SOAK_12H),
        Step("resilience.soak-24h", "24 h soak run", "A 24-hour soak meets the seed's criteria.",
             manual=SOAK_24H),
    )

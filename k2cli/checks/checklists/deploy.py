"""`k2 validate deploy --pre|--post`: seed 000's pre/post-deployment checklists and seed 003's deployment steps.

--pre runs the E2E checklist inside it and reads its results, then measures what the E2E run does not
(injected sequence gaps, SIGTERM of the consumer and the stream, lag metrics and alert, docs).
--post measures the running pipeline (group, lag, throughput, DLQ, snapshots, freshness, alerts) and the
seed's 7-day production figures through `k2 soak report --prometheus`; the blue/green steps are measured in
bluegreen.py (the new image and the rollback stay MANUAL).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from typing import Any

from k2cli.checks import metricnames as mn
from k2cli.checks.checklists import bluegreen, common, e2e, resilience
from k2cli.checks.context import Context, Options
from k2cli.checks.model import Checklist, Manual, Result, Status, Step
from k2cli.checks.probes import kafka, pipeline
from k2cli.checks.probes.proc import Spawned, StepError, run_k2, spawn_k2, wait_for
from k2cli.checks.probes.source import SuiteRun, source_root, suite_coverage, suite_run
from k2cli.proc import stop
from k2cli.verdict import worst

# ---------------------------------------------------------------- the nested E2E run


def run_nested_e2e(ctx: Context) -> Any:
    """Run the e2e checklist inside this one (once) and keep its report."""
    if "e2e_report" not in ctx.state:
        from k2cli.checks.runner import run_checklist

        inner = Context(ctx.settings, ctx.options)

        def forward(event: Any) -> None:
            if event.kind in ("step_started", "step_progress"):
                ctx.progress(f"e2e {event.step_id}: {event.message or 'running'}")

        ctx.state["e2e_report"] = run_checklist(e2e.build(ctx.options), inner, emit=forward)
        ctx.state["e2e_context"] = inner.state
    return ctx.state["e2e_report"]


def measure_e2e(ctx: Context) -> Result:
    """The E2E checklist passes over at least 5,000 messages."""
    report = run_nested_e2e(ctx)
    outcomes = {o.step.id: o.result for o in report.outcomes}
    consumed = outcomes["e2e.2-consume"].measured if outcomes["e2e.2-consume"].status is Status.PASS else 0
    bad = [f"{sid}: {r.status.value} {r.summary}" for sid, r in outcomes.items()
           if r.status not in (Status.PASS, Status.MANUAL)]
    counts = ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
    evidence = [f"e2e verdict {report.verdict.value} ({counts}) in {report.duration:.0f} s", *bad[:10]]
    if report.verdict is Status.ERROR:
        return Result.errored(f"the E2E checklist could not run: {bad[0] if bad else ''}", evidence=evidence)
    if report.verdict is Status.FAIL:
        return Result.failed(f"the E2E checklist failed ({counts})", measured=consumed, unit="messages",
                             evidence=evidence)
    size = ctx.check("deploy_e2e_min_messages", consumed, f"E2E {report.verdict.value} over {consumed} messages",
                     evidence=evidence)
    if size.status is Status.PASS and report.verdict is Status.WARN:
        return Result.warned(size.summary, measured=consumed, unit="messages", threshold=size.threshold,
                             evidence=evidence)
    return size


def mirror(ctx: Context, step_ids: tuple[str, ...], what: str) -> Result:
    """The worst result among some steps of the nested E2E run, with each as evidence (ERROR for any not found)."""
    report = run_nested_e2e(ctx)
    results = {o.step.id: o.result for o in report.outcomes if o.step.id in step_ids}
    missing = [sid for sid in step_ids if sid not in results]
    if missing:  # a step renamed or dropped from e2e: nothing was measured for it here
        return Result.errored(f"{what}: the E2E run has no {', '.join(missing)}",
                              evidence=[f"{sid}: {r.status.value} {r.summary}" for sid, r in results.items()])
    status = worst(r.status if r.status is not Status.SKIP else Status.ERROR for r in results.values())
    evidence = [f"{sid}: {r.status.value} {r.summary}" for sid, r in results.items()]
    return Result.make(status, f"{what}: {status.value} in the E2E run", evidence=evidence)


def measure_logs(ctx: Context) -> Result:
    """No traceback and no ERROR/CRITICAL line in what the E2E run's consumer and stream logged."""
    run_nested_e2e(ctx)
    inner = ctx.state["e2e_context"]
    consume = inner.get("consume")
    if consume is None:
        return Result.errored("the E2E run did not get as far as the consumer; no logs to read")
    bad = []
    for name, text in (("k2 consume", consume["stderr"]), ("k2 stream", consume["stream_stderr"])):
        for line in text.splitlines():
            if "Traceback" in line or re.search(r"\b(ERROR|CRITICAL)\b", line):
                bad.append(f"{name}: {line.strip()}")
    lines = len(consume["stderr"].splitlines()) + len(consume["stream_stderr"].splitlines())
    return Result.counted(bad, f"no errors in {lines} log lines of the E2E run", unit="lines",
                          failed=f"{len(bad)} error lines in the logs")


# ---------------------------------------------------------------- tests the E2E run does not cover


def measure_unit_tests(ctx: Context) -> Result:
    """The whole unit suite passes; line coverage (the whole suite's when measured for this commit) at least 80%."""
    run = resilience.unit_run(ctx, coverage=True)
    if run is None:
        return Result.needs_person(resilience.NO_CHECKOUT)
    failed = [f"{c.classname}::{c.name} {c.outcome}" for c in run.cases if c.outcome in ("failed", "error")]
    evidence = [f"{len(run.cases)} tests, {len(failed)} failed: {run.command}", *failed[:10]]
    if not run.cases:
        return Result.errored(f"pytest ran no tests: {run.tail[-200:]}")
    if failed:
        return Result.failed(f"{len(failed)} of {len(run.cases)} unit tests failed", measured=len(failed),
                             threshold="== 0", unit="failed", evidence=evidence)
    if run.returncode != 0:
        return Result.failed(f"pytest exited {run.returncode} with no failed test case: {run.tail[-200:]}",
                             measured=run.returncode, threshold="== 0", unit="exit", evidence=evidence)
    # Unit tests cover pure logic; I/O code is tested against real services by the integration and fault
    # suites, so the coverage that counts is the whole suite's (scripts/coverage.sh) when it matches this checkout.
    root = source_root()  # not None: unit_run found the checkout
    suite = suite_coverage(root) if root is not None else None
    if suite is not None:
        evidence.append(f"whole-suite coverage measured by scripts/coverage.sh at commit {suite.commit[:12]}")
        if run.coverage_pct is not None:
            evidence.append(f"unit suite alone: {run.coverage_pct:.1f}% line coverage")
        return ctx.check("unit_coverage_min_pct", round(suite.percent, 1),
                         f"all {len(run.cases)} unit tests pass; {suite.percent:.1f}% line coverage by the whole suite",
                         evidence=evidence)
    if run.coverage_pct is None:
        return Result.warned(f"all {len(run.cases)} unit tests pass; coverage not measured (pytest-cov is not "
                             "installed)", threshold=ctx.describe("unit_coverage_min_pct"), evidence=evidence)
    evidence.append("unit suite only: no whole-suite measurement for this commit (run bash scripts/coverage.sh)")
    return ctx.check("unit_coverage_min_pct", round(run.coverage_pct, 1),
                     f"all {len(run.cases)} unit tests pass, {run.coverage_pct:.1f}% line coverage (unit suite only)",
                     evidence=evidence)


INTEGRATION_MANUAL = Manual(
    "the integration suite runs for tens of minutes against the shared stack, and cannot run inside a validation "
    "of that same stack; no run of it is recorded for this exact checkout",
    "run `bash scripts/test.sh` on this checkout (it records its results in .k2-results/), or check that CI's "
    "run of it passed for the commit being deployed")
SUITE_PARTS = ("tests.integration.", "tests.faults.")
WHOLE_SUITE = ({"tests"}, {"."}, {"tests/integration", "tests/faults"})  # path arguments that run every test
NARROWING = ("-k", "-m", "--deselect", "--ignore", "--ignore-glob", "--lf", "--last-failed", "--sw", "--stepwise",
             "--co", "--collect-only")
VALUED = ("-k", "-m", "--deselect", "--ignore", "--ignore-glob", "-p", "-n", "-c", "-o", "-W", "--rootdir",
          "--timeout", "--maxfail", "--basetemp", "--junitxml", "--cov", "--durations")


def partial_run(args: tuple[str, ...]) -> str | None:
    """Why a scripts/test.sh run with these pytest arguments did not run every integration and fault test, or None."""
    paths: set[str] = set()
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        name = arg.split("=", 1)[0]
        if name in NARROWING or (arg[:2] in ("-k", "-m") and len(arg) > 2 and arg[1] != "-"):
            return f"it selected tests with {arg}"
        if arg.startswith("-"):
            skip_value = name in VALUED and "=" not in arg
            continue
        path = arg.removeprefix("./").rstrip("/") or "."
        if "::" in path:
            return f"it ran only {arg}"
        paths.add(path)
    if not paths:
        paths = {"tests"}  # scripts/test.sh without paths runs tests/
    if any(whole <= paths for whole in WHOLE_SUITE):
        return None
    return f"it ran only {', '.join(sorted(paths))}"


def integration_verdict(run: SuiteRun | None) -> Result:
    """Judge the integration and fault tests of the suite run recorded for this checkout (MANUAL without a whole run).

    A non-zero exit is never a pass; a run of part of the suite shows nothing about the rest."""
    cases = [c for c in run.cases if c.classname.startswith(SUITE_PARTS)] if run else []
    if run is None or not cases:
        return Result.needs_person(INTEGRATION_MANUAL)
    failed = [f"{c.classname}::{c.name} {c.outcome}" for c in cases if c.outcome in ("failed", "error")]
    skipped = [f"{c.classname}::{c.name}" for c in cases if c.outcome == "skipped"]
    command = "`" + " ".join(("scripts/test.sh", *run.args)) + "`"
    evidence = [f"{command} at commit {run.commit[:12]}, finished {run.finished}, exit {run.exit_code}",
                f"{len(cases)} integration and fault tests: {len(failed)} failed, {len(skipped)} skipped",
                *failed[:10], *[f"skipped: {s}" for s in skipped[:5]]]
    if failed:
        return Result.failed(f"{len(failed)} of {len(cases)} integration and fault tests failed", measured=len(failed),
                             threshold="== 0", unit="failed", evidence=evidence)
    if run.exit_code != 0:
        return Result.failed(f"{command} exited {run.exit_code} (a failure outside the test cases: collection, "
                             "mypy or ruff; see its output)", measured=run.exit_code, threshold="== 0", unit="exit",
                             evidence=evidence)
    partial = partial_run(run.args)
    if partial is not None:
        return Result.needs_person(INTEGRATION_MANUAL, f"the run recorded for this checkout was partial ({partial}): "
                                   f"it shows nothing about the other integration and fault tests", evidence=evidence)
    if skipped:
        return Result.warned(f"{len(skipped)} of {len(cases)} integration and fault tests were skipped",
                             measured=len(skipped), threshold="== 0", unit="skipped", evidence=evidence)
    return Result.passed(f"all {len(cases)} integration and fault tests passed in the run recorded for this checkout",
                         measured=0, threshold="== 0", unit="failed", evidence=evidence)


def measure_integration_tests(ctx: Context) -> Result:
    """The integration and fault tests passed in the last scripts/test.sh run of this exact checkout."""
    root = source_root()
    if root is None:
        return Result.needs_person(resilience.NO_CHECKOUT)
    if "suite_run" not in ctx.state:
        ctx.state["suite_run"] = suite_run(root)
    return integration_verdict(ctx.state["suite_run"])


def _consume_scratch(ctx: Context, purpose: str, records: list[dict], args: list[str]) -> tuple[Any, Any, str]:
    """Produce records to a scratch topic and start `k2 consume` on it with a scratch table, group and DLQ."""
    topic = pipeline.scratch_topic(ctx, purpose)
    pipeline.produce_trades(ctx, topic, records)
    lake = pipeline.scratch_lake(ctx, purpose)
    proc = spawn_k2(["consume", "--topics", topic, "--format", "json", *args], str(ctx.workdir), env=lake.env)
    ctx.on_close(proc.stop)
    return proc, lake, topic


def measure_gap_detection(ctx: Context) -> Result:
    """Records with known sequence gaps (3 holes over 2 symbols) make the consumer report exactly 3 gaps."""
    records = (pipeline.make_trades("BTCUSDT", [*range(1, 51), *range(60, 101)])
               + pipeline.make_trades("ETHUSDT", [*range(1, 21), *range(25, 41), *range(50, 61)]))
    proc, _, topic = _consume_scratch(ctx, "gaps", records, ["--max-messages", str(len(records))])
    done = proc.finish(timeout=180)
    if done.returncode != 0:
        return Result.failed(f"`k2 consume` exited {done.returncode}", evidence=done.stderr.strip().splitlines()[-3:])
    stats = done.json()
    gaps = int(e2e.stat(stats, "gaps"))
    evidence = [f"{len(records)} records to {topic}: BTCUSDT 1-50, 60-100; ETHUSDT 1-20, 25-40, 50-60",
                f"consumer statistics: sequence_gaps={gaps}, events {stats.get('sequence_events')}"]
    status = Status.PASS if gaps == 3 else Status.FAIL
    return Result.make(status, f"the consumer reported {gaps} gaps for 3 injected", measured=gaps, threshold="== 3",
                       unit="gaps", evidence=evidence)


SIGTERM_EXIT_S = 30.0  # how long a process may take to exit after SIGTERM


def exited_after_sigterm(proc: Spawned) -> bool:
    """Whether a process sent SIGTERM exits within SIGTERM_EXIT_S; one that does not is killed (a second SIGTERM
    would be ignored like the first)."""
    try:
        proc.proc.wait(timeout=SIGTERM_EXIT_S)
    except subprocess.TimeoutExpired:
        stop(proc.proc, grace=0.5)
        return False
    return True


def measure_consumer_sigterm(ctx: Context) -> Result:
    """SIGTERM mid-run: the consumer commits what it has, prints its statistics and exits 0; nothing is lost."""
    from k2cli.lake.catalog import open_catalog
    from k2cli.lake.offsets import offsets_from_summaries

    records = pipeline.make_trades("BTCUSDT", range(1, 3001))
    proc, lake, topic = _consume_scratch(ctx, "sigterm", records, ["--batch-size", "200"])
    catalog = open_catalog(ctx.settings)

    def written() -> int:
        try:
            snap = catalog.load_table(lake.table).current_snapshot()
        except Exception:  # the table is created by the consumer; until then nothing is written
            return 0
        return int(snap.summary.additional_properties.get("total-records", 0)) if snap else 0

    wait_for(lambda: not proc.alive() or written() > 0, timeout=120, interval=0.5)
    sent = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    if not exited_after_sigterm(proc):
        return Result.failed(f"the consumer did not exit within {SIGTERM_EXIT_S:g} s of SIGTERM",
                             evidence=[proc.command])
    done = proc.finish(timeout=5)
    took = time.monotonic() - sent
    evidence = [f"SIGTERM after the first commit; exit {done.returncode} {took:.1f} s later"]
    if done.returncode != 0:
        return Result.failed(f"exit code {done.returncode} after SIGTERM", evidence=evidence
                             + done.stderr.strip().splitlines()[-3:])
    stats = done.json()
    table = catalog.load_table(lake.table)
    snap = table.current_snapshot()
    in_table = int(snap.summary.additional_properties.get("total-records", 0))
    offsets = offsets_from_summaries([dict(snap.summary.additional_properties)])
    committed = sum(v for (t, _), v in offsets.items() if t == topic)
    consumed, wrote = int(e2e.stat(stats, "consumed")), int(e2e.stat(stats, "written"))
    evidence += [f"statistics: consumed {consumed}, written {wrote}, stopped by {stats.get('stopped_by')}",
                 f"table: {in_table} records, offsets carried {committed}"]
    if not (consumed == wrote == in_table == committed):
        return Result.failed("after SIGTERM the counts disagree (consumed/written/table/offsets)", evidence=evidence)
    return Result.passed(f"graceful: {wrote} records committed with their offsets, exit 0 in {took:.1f} s",
                         measured=round(took, 2), unit="s", evidence=evidence)


def measure_stream_sigterm(ctx: Context) -> Result:
    """SIGTERM to `k2 stream`: it flushes the producer and exits 0; every trade it counted is in Kafka."""
    ex = ctx.options.exchange
    sim = pipeline.start_simulator(ctx, ex, symbols=list(ctx.settings.exchange(ex).symbols), rate=200)
    topic = pipeline.scratch_topic(ctx, "stream-sigterm")
    proc = spawn_k2(["stream", ex, "--url", sim.url, "--topic", topic, "--metrics-port", "0", "--format", "json"],
                    str(ctx.workdir))
    ctx.on_close(proc.stop)
    time.sleep(4)
    proc.proc.send_signal(signal.SIGTERM)
    if not exited_after_sigterm(proc):
        return Result.failed(f"`k2 stream` did not exit within {SIGTERM_EXIT_S:g} s of SIGTERM",
                             evidence=[proc.command])
    done = proc.finish(timeout=5)
    marks = kafka.watermarks(ctx.settings, topic)
    in_topic = sum(high - low for low, high in marks.values())
    evidence = [proc.command, f"exit {done.returncode}", f"{in_topic} records in {topic}"]
    if done.returncode != 0:
        return Result.failed(f"exit code {done.returncode} after SIGTERM",
                             evidence=evidence + done.stderr.strip().splitlines()[-3:])
    summary = done.json()
    produced = summary.get("produced")
    undelivered = int(summary.get("undelivered") or 0) + sum((summary.get("produce_errors") or {}).values())
    evidence.append(f"summary: {summary}")
    if not isinstance(produced, int):  # without the stream's own count there is nothing to compare the topic with
        return Result.failed("the stream's JSON summary has no `produced` count", evidence=evidence)
    if produced != in_topic:
        return Result.failed(f"the stream counted {produced} produced trades, the topic has {in_topic}",
                             evidence=evidence)
    if undelivered:
        return Result.failed(f"{undelivered} trades the stream received were not delivered to Kafka",
                             measured=undelivered, threshold="== 0", unit="trades", evidence=evidence)
    if not in_topic:
        return Result.failed("nothing reached Kafka before the SIGTERM", evidence=evidence)
    return Result.passed(f"stopped gracefully: {in_topic} trades flushed to Kafka, exit 0", measured=in_topic,
                         unit="trades", evidence=evidence)


# ---------------------------------------------------------------- monitoring configuration


def measure_lag_monitoring(ctx: Context) -> Result:
    """Prometheus scrapes the consumer and has recorded its lag metric."""
    prom = common.prometheus(ctx)
    jobs = {t["labels"].get("job") for t in common.k2_targets(ctx)}
    series = prom.query(f"count by (job) (last_over_time({mn.CONSUMER_LAG}[1h]))")
    evidence = [f"k2 scrape jobs: {', '.join(sorted(j for j in jobs if j))}",
                f"{mn.CONSUMER_LAG} series in the last hour: {sum(v for _, v in series):g}"]
    if mn.CONSUMER_JOB not in jobs:
        return Result.failed(f"Prometheus has no {mn.CONSUMER_JOB} scrape job", evidence=evidence)
    if not series:
        return Result.failed(f"Prometheus has no {mn.CONSUMER_LAG} sample in the last hour (no consumer scraped)",
                             evidence=evidence)
    return Result.passed(f"{mn.CONSUMER_LAG} recorded from job {mn.CONSUMER_JOB}", evidence=evidence)


def measure_lag_alert(ctx: Context) -> Result:
    """An alert on consumer lag above 10,000 messages is loaded."""
    want = ctx.threshold("alert_lag_messages")
    rules = [r for r in common.prometheus(ctx).rules() if r.get("type") == "alerting"]
    for rule in rules:
        expr = rule.get("query", "")
        for metric in re.findall(r"k2_consumer_[a-z_]*lag[a-z_]*", expr):
            limit = resilience.rule_limit(expr, metric)
            if limit is not None and limit == want:
                return Result.passed(f"{rule['name']} fires on {metric} > {want:g}", measured=limit,
                                     threshold=ctx.describe("alert_lag_messages"),
                                     evidence=[f"{rule['name']} ({rule.get('health')}): {expr}"])
    lagging = [f"{r['name']}: {r.get('query')}" for r in rules if "lag" in r.get("query", "")]
    return Result.failed(f"no loaded alert fires on consumer lag > {want:g}", evidence=lagging or
                         [f"{len(rules)} alerting rules loaded, none on consumer lag"])


def measure_docs_config(ctx: Context) -> Result:
    """README/docs mention the environment variable of every setting."""
    from k2cli.settings import env_name, setting_names

    root = source_root()
    if root is None:
        return Result.needs_person(Manual("no checkout to search", "check the README documents every K2_* setting"))
    names = tuple(env_name(n) for n in setting_names() if n not in ("config_file",))
    found, missing = resilience.docs_mentions(root, names)
    if missing:
        return Result.failed(f"{len(missing)} of {len(names)} settings are not documented: {', '.join(missing[:8])}"
                             + (" ..." if len(missing) > 8 else ""), measured=len(found),
                             threshold=f"== {len(names)}", unit="settings", evidence=[f"missing: {m}" for m in missing])
    return Result.passed(f"all {len(names)} settings documented", measured=len(names), threshold=f"== {len(names)}",
                         unit="settings")


def measure_docs_alerts(ctx: Context) -> Result:
    """Every alert rule Prometheus has loaded is named in the documentation."""
    root = source_root()
    if root is None:
        return Result.needs_person(Manual("no checkout to search", "check every alert rule is documented"))
    names = tuple(sorted({r["name"] for r in common.prometheus(ctx).rules() if r.get("type") == "alerting"}))
    if not names:
        return Result.failed("Prometheus has no alert rules loaded")
    found, missing = resilience.docs_mentions(root, names)
    if missing:
        return Result.failed(f"{len(missing)} of {len(names)} alerts are not documented: {', '.join(missing[:6])}",
                             measured=len(found), threshold=f"== {len(names)}", unit="alerts",
                             evidence=[f"{n}: {w}" for n, w in found.items()])
    return Result.passed(f"all {len(names)} loaded alerts are documented", measured=len(names),
                         threshold=f"== {len(names)}", unit="alerts", evidence=[f"{n}: {w}" for n, w in found.items()])


RUNBOOK = Manual("whether a runbook covers the failure modes found is a judgement",
                 "read the streaming/consumer runbook: every failure mode met since the last release (and each alert "
                 "it may fire) has a diagnosis and a fix")


def measure_runbook(ctx: Context) -> Result:
    """A runbook exists (else FAIL); a person checks it is current (MANUAL)."""
    root = source_root()
    books = sorted(p for p in (root / "docs").glob("**/*.md") if "runbook" in p.name.lower()) if root else []
    if root is not None and not books:
        return Result.failed("no runbook in docs/ (a file named *runbook*.md)")
    return Result.needs_person(RUNBOOK, evidence=[str(p.relative_to(root)) for p in books] if root else [])


# ---------------------------------------------------------------- post-deployment: the running pipeline


def measure_group(ctx: Context) -> Result:
    """The consumer group is Stable with members in three samples two seconds apart."""
    group = ctx.settings.consumer_group
    samples = []
    for i in range(3):
        samples.append(kafka.group_state(ctx.settings, group))
        if i < 2:
            time.sleep(2)
    evidence = [f"sample {i + 1}: {state}, {members} members" for i, (state, members) in enumerate(samples)]
    states = [s for s, _ in samples]
    if all(m == 0 for _, m in samples):
        return Result.failed(f"consumer group {group} has no members ({states[-1]}): no consumer is running",
                             evidence=evidence)
    if all(s == "STABLE" for s in states):
        return Result.passed(f"{group} stable with {samples[-1][1]} member(s)", evidence=evidence)
    if any(s == "STABLE" for s in states):
        return Result.warned(f"{group} rebalanced during the check", evidence=evidence)
    return Result.failed(f"{group} is not stable ({', '.join(states)})", evidence=evidence)


def _lag(ctx: Context) -> tuple[int, list[str]]:
    from k2cli.lake.offsets import offsets_from_summaries

    table = common.load_table(ctx)
    if table is not None:
        table.refresh()
    snap = table.current_snapshot() if table is not None else None
    offsets = offsets_from_summaries([dict(snap.summary.additional_properties)] if snap and snap.summary else [])
    total, lines = 0, []
    for topic in ctx.settings.consumer_topics:
        marks = kafka.watermarks(ctx.settings, topic)
        lag = sum(max(0, high - offsets.get((topic, p), low)) for p, (low, high) in marks.items())
        total += lag
        lines.append(f"{topic}: {lag} behind the table's offsets")
    return total, lines


def measure_lag(ctx: Context) -> Result:
    """Lag (topic end offsets minus the table's committed offsets) drops below 1,000 within 5 minutes."""
    limit = ctx.threshold("post_lag_within_s")
    deadline = time.monotonic() + limit
    while True:
        lag, lines = _lag(ctx)
        if ctx.holds("post_lag_max_messages", lag) or time.monotonic() >= deadline:
            break
        ctx.progress(f"lag {lag}; waiting up to {deadline - time.monotonic():.0f} s more")
        time.sleep(5)
    return ctx.check("post_lag_max_messages", lag, f"lag {lag} messages", evidence=lines)


def measure_post_throughput(ctx: Context) -> Result:
    """Consumer throughput over the last 5 minutes, from Prometheus."""
    window = max(1, int(ctx.threshold("post_throughput_window_s")))
    expr = f"sum(rate({mn.CONSUMED}[{window}s]))"
    value = common.prometheus(ctx).value(expr)
    if value is None:
        return Result.failed(f"Prometheus has no {mn.CONSUMED} in the last {window} s", evidence=[expr])
    return ctx.check("post_throughput_min_msg_per_s", round(value, 1), f"{value:.1f} msg/s over {window} s",
                     evidence=[expr])


def measure_post_dlq(ctx: Context) -> Result:
    """No DLQ entries, or only poison records injected by validation runs; anything else FAILs (seed 000: "No DLQ
    entries (or all DLQ entries expected)": an entry no validation run put there is not expected)."""
    from k2cli.reliability import dlq_ops

    scan = dlq_ops.scan(ctx.settings.dlq_path)
    where = f"DLQ directory {ctx.settings.dlq_path}"
    unexpected = [f"{e.id[:12]} {e.origin} {e.error_type}: {e.error}"[:200] for e in scan.entries
                  if not e2e.is_poison(e.value)]
    unexpected += [f"{file}: {n} unreadable lines" for file, n in scan.bad_lines.items()]
    poison = len(scan.entries) - sum(1 for e in scan.entries if not e2e.is_poison(e.value))
    evidence = [where, f"{len(scan.entries)} entries: {poison} validation poison records"]
    if unexpected:
        return Result.failed(f"{len(unexpected)} unexpected DLQ entries (not validation poison): {unexpected[0]}",
                             measured=len(unexpected), threshold="== 0", unit="unexpected entries",
                             evidence=[*evidence, *unexpected[:10], "inspect with `k2 dlq show ID`; replay or purge "
                                       "them once understood"])
    if not scan.entries:
        return Result.passed("the DLQ is empty", measured=0, threshold="== 0", unit="unexpected entries",
                             evidence=evidence)
    return Result.passed(f"{len(scan.entries)} DLQ entries, all poison records of validation runs", measured=0,
                         threshold="== 0", unit="unexpected entries", evidence=evidence)


def measure_post_snapshots(ctx: Context) -> Result:
    """The newest snapshot is recent and snapshots keep coming."""
    table = common.load_table(ctx)
    if table is None or table.current_snapshot() is None:
        return Result.failed(f"{ctx.settings.table} has no snapshot")
    now = time.time()
    times = sorted(s.timestamp_ms / 1000 for s in table.metadata.snapshots)
    age = round(now - times[-1], 1)
    recent = sum(1 for t in times if now - t <= 600)
    return ctx.check("post_snapshot_max_age_s", age, f"newest snapshot {age} s old; {recent} in the last 10 minutes",
                     evidence=[f"{len(times)} snapshots retained"])


def measure_freshness(ctx: Context) -> Result:
    """The query engine returns trades newer than 5 minutes."""
    done = run_k2(["query", "sql", "SELECT max(timestamp) AS newest FROM trades", "--format", "json"], timeout=120)
    if done.returncode != 0:
        return Result.failed(f"`{done.command}` exited {done.returncode}: {done.stderr.strip()[-200:]}")
    rows = done.json()
    newest = e2e.micros(rows[0].get("newest")) if rows else None
    if newest is None:
        return Result.failed("the query engine returned no trades", evidence=[done.command])
    lag = round(time.time() - newest / 1e6, 1)
    return ctx.check("post_freshness_max_s", lag, f"newest trade {lag} s old", evidence=[done.command,
                                                                                     f"newest: {rows[0]['newest']}"])


def measure_post_metrics(ctx: Context) -> Result:
    """The consumer and at least one stream are up in Prometheus and their series are fresh."""
    targets = common.k2_targets(ctx)
    evidence = [f"{t['labels'].get('job')}: {t.get('health')} (last scrape {t.get('lastScrape')})" for t in targets]
    up = {t["labels"].get("job") for t in targets if t.get("health") == "up"}
    if mn.CONSUMER_JOB not in up:
        return Result.failed(f"{mn.CONSUMER_JOB} is not up in Prometheus", evidence=evidence)
    streams = sorted(j for j in up if j.startswith("k2-stream"))
    if not streams:
        return Result.failed("no k2 stream is up in Prometheus", evidence=evidence)
    return Result.passed(f"up: {mn.CONSUMER_JOB}, {', '.join(streams)}", evidence=evidence)


def measure_firing(ctx: Context) -> Result:
    """No alert is firing."""
    alerts = [a for a in common.prometheus(ctx).alerts() if a.get("state") == "firing"]
    evidence = [f"{a['labels'].get('alertname')} ({a['labels'].get('severity')}): "
                f"{a.get('annotations', {}).get('summary', '')}" for a in alerts]
    return Result.counted(evidence, "no alerts firing", unit="alerts", failed=f"{len(alerts)} alerts firing")


LOGS = Manual("k2 logs to the stderr of wherever it runs (systemd, containers); k2 validate cannot read those logs",
              "read the consumer's and the streams' logs since the deployment: no ERROR or WARNING lines")


def error_counters(window: str) -> list[str]:
    """The PromQL of every error counter k2 exports (consumer, stream, each registered exchange), over a window."""
    from k2cli.exchanges import registry

    exchanges = "|".join(registry.names())
    per_exchange = "|".join(mn.STREAM_ERROR_FAMILIES)
    return [*(f"sum(increase({name}[{window}]))" for name in mn.ERROR_COUNTERS),
            f'sum(increase({{__name__=~"({exchanges})_({per_exchange})"}}[{window}]))']


def measure_post_logs(ctx: Context) -> Result:
    """Error counters did not move in the last hour (else FAIL); a person reads the logs (MANUAL)."""
    prom = common.prometheus(ctx)
    w = f"{max(1, int(ctx.threshold('post_error_window_s')))}s"
    found = {e: prom.value(e) for e in error_counters(w)}
    bad = {e: v for e, v in found.items() if v}
    evidence = [f"{e} = {v if v is not None else 'no series'}" for e, v in found.items()]
    if bad:
        return Result.failed(f"error counters rose in the last {w}: {next(iter(bad))} = {next(iter(bad.values()))}",
                             evidence=evidence)
    return Result.needs_person(LOGS, f"error counters flat for {w}; a person must read the logs", evidence=evidence)


def measure_post_tls(ctx: Context) -> Result:
    """TLS verification is on and every exchange URL is wss:// (production)."""
    result = resilience.measure_tls_default(ctx)
    if result.status is Status.WARN:  # ws:// is fine for a simulator, not in production
        return Result.failed(result.summary, evidence=result.evidence)
    return result


# ---------------------------------------------------------------- the seed's 7-day figures (k2 soak report)


def weekly(ctx: Context) -> dict[str, Any]:
    """`k2 soak report --prometheus URL --days D --format json` (once per run)."""
    if "weekly" not in ctx.state:
        days = ctx.threshold("prod_window_days")
        done = run_k2(["soak", "report", "--prometheus", ctx.settings.prometheus_url, "--days", f"{days:g}",
                       "--exchange", ctx.options.exchange, "--format", "json"], timeout=300)
        if not done.stdout.strip().startswith("{"):  # exit 3 with a report means "no data", still a report
            raise StepError(f"`{done.command}` exited {done.returncode}: {done.stderr.strip()[-200:]}")
        ctx.state["weekly"] = {"data": done.json(), "command": done.command}
    return ctx.state["weekly"]


def measure_weekly_report(ctx: Context) -> Result:
    """The 7-day production validation report is generated from Prometheus."""
    report = weekly(ctx)
    data = report["data"]
    from k2cli.soak.weekly import span

    window = span(float(data.get("days", 0)) * 86400)
    evidence = [report["command"], f"verdict {data.get('verdict')}, covering "
                f"{span(float(data.get('coverage_days', 0)) * 86400)} of {window}",
                *[f"{line['status']}: {line['text']}" for line in data.get("lines", [])]]
    no_data = [line["text"] for line in data.get("lines", []) if line.get("key") == "data"]
    if no_data:
        return Result.errored(f"no report: {no_data[0]}", evidence=evidence)
    return Result.passed(f"production report over {window} generated (verdict {data.get('verdict')})",
                         evidence=evidence, data={"weekly": data})


def weekly_line(*keys: str) -> Any:
    """A step reading lines of the 7-day report: their worst status and their text."""
    def run(ctx: Context) -> Result:
        lines = [line for line in weekly(ctx)["data"].get("lines", []) if line.get("key") in keys]
        context = [line for line in weekly(ctx)["data"].get("lines", []) if line.get("key") in ("data", "coverage")]
        if not lines:
            return Result.errored(f"the 7-day report has no {'/'.join(keys)} line", evidence=[
                f"{line['status']}: {line['text']}" for line in context])
        status = worst(Status(line["status"]) for line in lines)
        evidence = [f"{line['status']}: {line['text']}" for line in lines + context]
        return Result.make(status, "; ".join(line["text"] for line in lines), evidence=evidence)
    return run


WEEKLY_SIGNOFF = Manual("the 7-day report needs dashboards attached, issues listed and a recommendation signed",
                        "complete the report of `k2 soak report --prometheus URL --days 7 --format markdown`: attach "
                        "the Grafana panels, list issues and resolutions, and record the approval")
GRAFANA = Manual("Grafana panels are read by people; k2 has no Grafana API check",
                 "open the k2 dashboard: throughput, lag, write latency, memory and connection panels show the "
                 "expected shapes since the deployment")


def _manual(step_id: str, title: str, reason: str, check: str) -> Step:
    return Step(step_id, title, check, manual=Manual(reason, check))


def build_pre(options: Options) -> Checklist:
    """The pre-deployment checklist."""
    return Checklist(
        "deploy-pre", "Pre-deployment checklist",
        "Tests, an E2E run of 5,000+ messages and what it shows (logs, DLQ, performance, metrics), injected sequence "
        "gaps, graceful SIGTERM of consumer and stream, lag monitoring and alerting, documentation.",
        (
            common.broker_step("deploy-pre.broker"),
            common.registry_step("deploy-pre.registry"),
            common.prometheus_step("deploy-pre.prometheus"),
            Step("deploy-pre.unit-tests", "All unit tests passing (80%+ coverage)",
                 "The whole unit suite passes; line coverage at least 80% (needs pytest-cov).", measure_unit_tests,
                 manual=resilience.NO_CHECKOUT, thresholds=("unit_coverage_min_pct",)),
            Step("deploy-pre.integration-tests", "All integration tests passing",
                 "The integration and fault tests passed in the last `scripts/test.sh` run of this exact checkout "
                 "(MANUAL when none is recorded).", measure_integration_tests, manual=INTEGRATION_MANUAL),
            Step("deploy-pre.e2e", "E2E validation (5,000+ messages)",
                 "`k2 validate e2e` passes over at least 5,000 messages (run inside this checklist).", measure_e2e,
                 thresholds=("deploy_e2e_min_messages",), retry=False),
            Step("deploy-pre.logs-clean", "No unhandled errors in logs",
                 "The E2E run's consumer and stream logged no traceback and no ERROR line.", measure_logs,
                 depends_on=("deploy-pre.e2e",)),
            Step("deploy-pre.dlq-injected", "DLQ validated (injected error)",
                 "The E2E run's poison record reached the DLQ with its original bytes, and nothing else did.",
                 lambda ctx: mirror(ctx, ("e2e.6-dlq-poison", "e2e.6-dlq-clean"), "DLQ"),
                 depends_on=("deploy-pre.e2e",)),
            Step("deploy-pre.performance", "Performance meets thresholds",
                 "The E2E run's throughput, cold start, p99 write duration and memory meet their thresholds.",
                 lambda ctx: mirror(ctx, ("e2e.2-throughput", "e2e.5-throughput", "e2e.5-write-p99", "e2e.5-memory"),
                                    "performance"), depends_on=("deploy-pre.e2e",)),
            Step("deploy-pre.sequence-gaps", "Gap detection working",
                 "Records with 3 injected sequence gaps make the consumer report exactly 3.", measure_gap_detection,
                 depends_on=("deploy-pre.broker", "deploy-pre.registry")),
            Step("deploy-pre.metrics", "Metrics recorded in Prometheus",
                 "Prometheus recorded the E2E run's consumer throughput and write durations.",
                 lambda ctx: mirror(ctx, ("e2e.5-throughput", "e2e.5-write-p99"), "consumer metrics in Prometheus"),
                 depends_on=("deploy-pre.e2e",)),
            Step("deploy-pre.sigterm", "Graceful shutdown (SIGTERM)",
                 "SIGTERM mid-run: the consumer commits, prints statistics, exits 0 and loses nothing.",
                 measure_consumer_sigterm, depends_on=("deploy-pre.broker", "deploy-pre.registry")),
            Step("deploy-pre.stream-sigterm", "Stream stops gracefully (SIGTERM)",
                 "SIGTERM to k2 stream flushes every trade it counted to Kafka and exits 0.", measure_stream_sigterm,
                 depends_on=("deploy-pre.broker", "deploy-pre.registry")),
            Step("deploy-pre.lag-monitoring", "Consumer lag monitoring configured",
                 "Prometheus scrapes the consumer job and has recorded its lag.", measure_lag_monitoring,
                 depends_on=("deploy-pre.prometheus", "deploy-pre.e2e")),
            Step("deploy-pre.lag-alert", "Lag alert (>10,000 messages) configured",
                 "An alert on consumer lag above 10,000 messages is loaded in Prometheus.", measure_lag_alert,
                 depends_on=("deploy-pre.prometheus",), thresholds=("alert_lag_messages",)),
            Step("deploy-pre.docs-config", "README documents every config option",
                 "README/docs mention the K2_* variable of every setting.", measure_docs_config),
            Step("deploy-pre.docs-alerts", "Alert rules documented",
                 "Every alert loaded in Prometheus is named in the documentation.", measure_docs_alerts,
                 depends_on=("deploy-pre.prometheus",)),
            Step("deploy-pre.runbook", "Runbook updated", RUNBOOK.check, measure_runbook, manual=RUNBOOK),
        ),
        source=f"{common.SEED_CONSUMER} (Pre-Deployment Checklist); {common.SEED_PHASE5} (Success Criteria)",
    )


def build_post(options: Options) -> Checklist:
    """The post-deployment checklist."""
    return Checklist(
        "deploy-post", "Post-deployment checklist",
        "The running pipeline (group, lag, throughput, DLQ, snapshots, freshness, metrics, alerts) and the seed's "
        "7-day production figures from Prometheus; blue/green and sign-off steps are MANUAL.",
        (*_post_services(), *_post_pipeline(), *_post_weekly(), *_post_signoff(), *_post_blue_green()),
        source=f"{common.SEED_CONSUMER} (Post-Deployment Checklist); {common.SEED_PHASE5} (Steps 08-09, Success "
               "Criteria)",
    )


def _post_services() -> tuple[Step, ...]:
    """Post-deployment: the services the running pipeline needs."""
    return (
        common.broker_step("deploy-post.broker"),
        common.catalog_step("deploy-post.catalog"),
        common.prometheus_step("deploy-post.prometheus"),
    )


def _post_pipeline() -> tuple[Step, ...]:
    """Post-deployment: the running pipeline (group, lag, throughput, DLQ, snapshots, freshness, metrics, logs)."""
    return (
        Step("deploy-post.group-healthy", "Consumer group healthy",
             "The consumer group is Stable with members, without rebalancing, over three samples.", measure_group,
             depends_on=("deploy-post.broker",)),
        Step("deploy-post.lag", "Consumer lag < 1,000 within 5 minutes",
             "End offsets minus the table's offsets fall below 1,000 within 5 minutes.", measure_lag,
             depends_on=("deploy-post.broker", "deploy-post.catalog"),
             thresholds=("post_lag_max_messages", "post_lag_within_s")),
        Step("deploy-post.throughput", "Throughput > 100 msg/s",
             "rate(k2_messages_consumed_total[5m]) above 100 msg/s.", measure_post_throughput,
             depends_on=("deploy-post.prometheus",),
             thresholds=("post_throughput_min_msg_per_s", "post_throughput_window_s")),
        Step("deploy-post.dlq", "No unexpected DLQ entries",
             "The DLQ is empty or holds only validation poison records (anything else, or an unreadable line: FAIL).",
             measure_post_dlq),
        Step("deploy-post.snapshots", "Iceberg snapshots increasing",
             "The newest snapshot is younger than 5 minutes.", measure_post_snapshots,
             depends_on=("deploy-post.catalog",), thresholds=("post_snapshot_max_age_s",)),
        Step("deploy-post.freshness", "Query engine returns fresh data (< 5 min)",
             "`k2 query sql 'SELECT max(timestamp) FROM trades'` is under 5 minutes old.", measure_freshness,
             thresholds=("post_freshness_max_s",)),
        Step("deploy-post.metrics", "Prometheus metrics reporting",
             "The consumer and at least one stream are up in Prometheus.", measure_post_metrics,
             depends_on=("deploy-post.prometheus",)),
        Step("deploy-post.grafana", "Grafana dashboards as expected", GRAFANA.check, manual=GRAFANA),
        Step("deploy-post.alerts-firing", "No alerts firing", "Prometheus has no firing alert.", measure_firing,
             depends_on=("deploy-post.prometheus",)),
        Step("deploy-post.logs", "Logs show no errors or warnings",
             "Error counters flat for an hour; a person reads the logs.", measure_post_logs, manual=LOGS,
             depends_on=("deploy-post.prometheus",), thresholds=("post_error_window_s",)),
        Step("deploy-post.tls", "SSL verification enabled in production",
             "ssl_verify is on and every exchange URL is wss://.", measure_post_tls),
    )


def _post_weekly() -> tuple[Step, ...]:
    """Post-deployment: the seed's 7-day production report and the figures read from it."""
    weekly_dep = ("deploy-post.weekly-report",)
    return (
        Step("deploy-post.weekly-report", "7-day validation report generated",
             "`k2 soak report --prometheus URL --days 7` builds the seed's production report.",
             measure_weekly_report, depends_on=("deploy-post.prometheus",), thresholds=("prod_window_days",)),
        Step("deploy-post.memory", "Memory stable (200-250 MB)",
             "Stream RSS stays under 250 MB and grows less than 50 MB (7-day report).",
             weekly_line("memory", "leak"), depends_on=weekly_dep,
             thresholds=("prod_memory_max_mb", "prod_memory_growth_max_mb")),
        Step("deploy-post.rotations", "Connection rotations: 6 per day",
             "Rotations per day match the seed's 6 (prod_rotations_per_day), whatever the interval (7-day report).",
             weekly_line("rotations"),
             depends_on=weekly_dep, thresholds=("prod_rotations_per_day", "prod_rate_tolerance_pct")),
        Step("deploy-post.heartbeat", "Ping-pong heartbeat: 480 pings per day",
             "Pings per day match the seed's 480 (prod_pings_per_day), no pong timeout (7-day report).",
             weekly_line("heartbeat"),
             depends_on=weekly_dep, thresholds=("prod_pings_per_day", "prod_rate_tolerance_pct")),
        Step("deploy-post.stream-rate", "Message rate > 10 msg/s sustained",
             "The stream's average rate exceeds 10 msg/s (7-day report).", weekly_line("rate"),
             depends_on=weekly_dep, thresholds=("prod_stream_rate_min_per_s",)),
        Step("deploy-post.reconnects", "Zero unscheduled reconnections",
             "Reconnects other than rotations (7-day report).", weekly_line("reconnects"), depends_on=weekly_dep,
             thresholds=("prod_unscheduled_reconnects_max",)),
        Step("deploy-post.critical-alerts", "No critical alerts",
             "No critical alert fired in the window (7-day report).", weekly_line("alerts"),
             depends_on=weekly_dep, thresholds=("prod_critical_alerts_max",)),
        Step("deploy-post.uptime", "Uptime > 99.9%",
             "Connected share of the window, scheduled rotations excluded (7-day report).", weekly_line("uptime"),
             depends_on=weekly_dep, thresholds=("prod_uptime_min_pct",)),
    )


def _post_signoff() -> tuple[Step, ...]:
    """Post-deployment: the MANUAL sign-offs of the 7-day report and of Phase 5 as a whole."""
    return (
        Step("deploy-post.weekly-signoff", "7-day validation report completed", WEEKLY_SIGNOFF.check,
             manual=WEEKLY_SIGNOFF),
        _manual("deploy-post.phase5-complete", "All 9 Phase 5 steps complete",
                "a roll-up over steps that span days (soak, blue/green, 7-day production)",
                "`k2 validate resilience`, `k2 validate deploy --pre/--post`, the 24 h `k2 soak` and the 7-day "
                "report are all green"),
    )


BLUE_GREEN = "blue/green is a deployment-platform procedure (images, containers, cutover) that k2 does not drive"


def _post_blue_green() -> tuple[Step, ...]:
    """Post-deployment: the blue/green rollout (seed Step 08); Prometheus and the table show the collectors' part."""
    measured = ("deploy-post.prometheus", "deploy-post.catalog")
    return (
        _manual("deploy-post.bg-image", "New image built", BLUE_GREEN,
                "the new image (e.g. k2-platform:v2.0-stable) is built from the release and `k2 --version` in it "
                "prints the release"),
        Step("deploy-post.bg-green-deployed", "Green deployed alongside blue",
             "Prometheus shows two instances of the exchange's stream job up at once in the look-back (blue on its "
             "metrics port, green on the green port, port + 100).", bluegreen.measure_bg_green_deployed,
             depends_on=("deploy-post.prometheus",), thresholds=("bg_lookback_s",)),
        Step("deploy-post.bg-dual", "Both producing to Kafka (10 min)",
             "During the overlap both instances' <exchange>_messages_received_total rose, "
             "k2_consumer_duplicates_total rose, and `k2 query gaps`'s engine finds no trade id twice in the table.",
             bluegreen.measure_bg_dual, depends_on=("deploy-post.bg-green-deployed", *measured),
             thresholds=("bg_dual_min_s",)),
        Step("deploy-post.bg-cutover", "Cutover to green, blue stopped gracefully",
             "Prometheus shows blue's target going down while green stays up, and blue not back; a person confirms "
             "blue exited 0 on SIGTERM.", bluegreen.measure_bg_cutover, manual=bluegreen.CUTOVER,
             depends_on=("deploy-post.bg-green-deployed",)),
        Step("deploy-post.bg-green-validated", "Green handling all traffic (15 min)",
             "After the cut-over only green's <exchange>_messages_received_total rises, and `k2 query gaps`'s engine "
             "finds no trade id missing from the overlap's start on.", bluegreen.measure_bg_green_validated,
             depends_on=("deploy-post.bg-green-deployed", *measured), thresholds=("bg_green_only_min_s",)),
        _manual("deploy-post.bg-rollback", "Rollback procedure tested", BLUE_GREEN,
                "the rollback (start blue, stop green, verify blue's metrics) was rehearsed and takes < 2 minutes"),
    )


def build(options: Options) -> Checklist:
    """`deploy --pre` or `deploy --post`."""
    if options.phase == "pre":
        return build_pre(options)
    if options.phase == "post":
        return build_post(options)
    from k2cli.errors import ConfigError

    raise ConfigError("choose --pre or --post", setting="--pre/--post")

"""Alert rules and dashboard against the real thing.

- promtool checks the rule files and runs their unit tests (deploy/prometheus/tests), and every alert of a
  tested rule file has a test;
- every metric an alert expression or a dashboard panel names, with every label it matches or groups by,
  is exported by a running `k2 stream` (every registered exchange, against the simulator) or `k2 consume`;
- a private Prometheus, configured from the stack's own template (deploy/prometheus/prometheus.yml.tmpl),
  scrapes those processes and evaluates every rule without error; the memory rules' instance join picks
  exactly the stream of their exchange;
- `k2 soak report --prometheus` builds the 7-day report from that Prometheus;
- the stack's Prometheus (`k2 stack up`) has loaded the rules.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from k2cli.exchanges import registry
from tests.conftest import require, run_k2
from tests.integration.consume_support import delete_topic
from tests.integration.stream_support import create_topic, free_port, simulator

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
TESTS_DIR = ROOT / "deploy" / "prometheus" / "tests"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "k2.json"
TARGET_LABELS = {"job", "instance"}  # Prometheus adds these to every scraped series
SYNTHETIC = {"up": set(), "ALERTS": {"alertname", "alertstate", "severity"}}  # made by Prometheus itself
RATE = 50


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install the Debian `prometheus` package (k2 stack install)", pytrace=False)
    return path


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def alerts_in(path: Path) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "alert" in r]


def all_alerts() -> list[dict]:
    return [r for f in rule_files() for r in alerts_in(f)]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


# ---- PromQL: which metrics and labels an expression names (enough of PromQL for our rules and panels)
_FUNCS = {"sum", "min", "max", "avg", "count", "rate", "increase", "irate", "delta", "histogram_quantile", "time",
          "vector", "absent", "max_over_time", "min_over_time", "avg_over_time", "count_over_time", "topk",
          "bottomk", "quantile", "stddev", "abs", "clamp_min", "clamp_max", "scalar", "timestamp"}
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
             "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every vector selector in an expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    text = _GROUPING.sub(" ", text)
    out = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?", text):
        name, matchers = m.group(1), m.group(2) or ""
        after = text[m.end():].lstrip()
        if name in _KEYWORDS or (name in _FUNCS and after.startswith("(")):
            continue
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
        out.append((name, labels))
    return out


def grouping_labels(expr: str) -> set[str]:
    """Label names an expression groups or joins by."""
    return {label.strip() for _, labels in _GROUPING.findall(expr) for label in labels.split(",") if label.strip()}


# ---- promtool
def test_promtool_check_rules_accepts_every_rule_file():
    proc = subprocess.run([promtool(), "check", "rules", *map(str, rule_files())], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(rule_files())


def test_promtool_unit_tests_pass():
    tests = sorted(TESTS_DIR.glob("*.yml"))
    assert tests, "no promtool tests in deploy/prometheus/tests"
    proc = subprocess.run([promtool(), "test", "rules", *map(str, tests)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(tests) and "FAILED" not in proc.stdout


def test_every_alert_of_a_tested_rule_file_has_a_firing_and_a_quiet_case():
    cases_by_rule_file: dict[Path, list[dict]] = {}  # a rule file may be tested by several files (one generated)
    for test_file in sorted(TESTS_DIR.glob("*.yml")):
        spec = yaml.safe_load(test_file.read_text())
        cases = [c for t in spec["tests"] for c in t.get("alert_rule_test", [])]
        for rule_file in spec["rule_files"]:
            cases_by_rule_file.setdefault((test_file.parent / rule_file).resolve(), []).extend(cases)
    assert cases_by_rule_file
    for rule_file, cases in cases_by_rule_file.items():
        for alert in alerts_in(rule_file):
            mine = [c for c in cases if c["alertname"] == alert["alert"]]
            assert any(c.get("exp_alerts") for c in mine), f"{alert['alert']}: no test where it fires"
            assert any(not c.get("exp_alerts") for c in mine), f"{alert['alert']}: no test where it stays quiet"


def test_seed_alerts_exist_with_the_seed_thresholds():
    by_name = {a["alert"]: a for a in all_alerts()}
    for ex in ("Binance", "Kraken"):
        assert "400 * 1024 * 1024" in by_name[f"{ex}MemoryHigh"]["expr"]
        assert "> 0.8" in by_name[f"{ex}MemoryLeakDetected"]["expr"]
        for kind in ("NoMessages", "PongTimeouts"):
            assert f"{ex}{kind}" in by_name
    assert "> 10000" in by_name["K2ConsumerLagHigh"]["expr"]
    assert "K2ConsumerDeadLettersGrowing" in by_name and "K2CircuitBreakerOpen" in by_name


def test_selector_parser_reads_what_the_rules_use():
    assert selectors('sum by (job) (rate(a_total{x="1", y=~"b"}[5m])) > 400 * 1024 and on (instance) b') == \
        [("a_total", {"x", "y"}), ("b", set())]
    assert grouping_labels("sum by (job, instance) (x) and on (instance) y") == {"job", "instance"}
    assert selectors("histogram_quantile(0.99, sum by (le) (rate(h_bucket[10m]))) > 2") == [("h_bucket", set())]


# ---- live processes
def _registry_labels() -> dict[str, set[str]]:
    """Label names each family declares in the exporters' code (children may not exist yet in a short run)."""
    from k2cli.observe.consumer_metrics import ConsumerMetrics
    from k2cli.observe.metrics import StreamMetrics

    out: dict[str, set[str]] = {}
    registries = [*(StreamMetrics(name).registry for name in registry.names()), ConsumerMetrics().registry]
    for metrics_registry in registries:
        for collector, names in metrics_registry._collector_to_names.items():
            labels = set(getattr(collector, "_labelnames", ()))
            for name in names:
                out.setdefault(name, set()).update(labels | ({"le"} if name.endswith("_bucket") else set()))
    return out


def _scrape(port: int) -> tuple[set[str], dict[str, set[str]]]:
    from k2cli.soak.scrape import fetch

    m = fetch(f"http://127.0.0.1:{port}/metrics")
    labels = {name: {k for lbl, _ in rows for k in lbl} for name, rows in m.samples.items()}
    return m.names(), labels


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {url} did not answer within {timeout:g}s") from None
            time.sleep(0.25)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _query(prom: str, query: str) -> list[dict]:
    url = f"{prom}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Simulators and streams of every exchange, a consumer and a private Prometheus built from the stack's template."""
    require("kafka", "schema-registry")
    from k2cli.stack.config import stream_scrape_configs
    from k2cli.stack.templates import render

    tmp = tmp_path_factory.mktemp("alerts")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("K2_")}
    env.update({"K2_HOME": str(tmp / "k2home"), "K2_DATA_DIR": str(tmp / "data"), "K2_DLQ_DIR": str(tmp / "dlq"),
                "PYTHONUNBUFFERED": "1"})
    symbols = {d.name: d.default_symbols[0] for d in registry.all()}  # BTCUSDT, BTC/USD, BTC-USD
    run_id = uuid.uuid4().hex[:10]  # tmp.name repeats across sessions; a topic left by an earlier run must not be read
    topics = {ex: f"test.alerts.{ex}.{run_id}" for ex in symbols}
    for topic in topics.values():
        create_topic(topic)
    ports = {**{ex: free_port() for ex in symbols}, "consumer": free_port(), "prometheus": free_port()}
    procs: list[subprocess.Popen] = []
    logs = []
    with contextlib.ExitStack() as stack:
        urls = {ex: stack.enter_context(simulator(ex, ["--rate", str(RATE), "--symbols", symbol], env, tmp))
                for ex, symbol in symbols.items()}
        try:
            for ex, symbol in symbols.items():
                log = open(tmp / f"stream-{ex}.log", "w")  # noqa: SIM115 - closed below
                logs.append(log)
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "k2cli", "stream", ex, "--url", urls[ex], "--symbols", symbol, "--topic",
                     topics[ex], "--metrics-port", str(ports[ex]), "--ping-interval", "2"],
                    env=env, stdout=log, stderr=subprocess.STDOUT))
            log = open(tmp / "consumer.log", "w")  # noqa: SIM115 - closed below
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "k2cli", "consume", "--topics", ",".join(topics.values()), "--group",
                 f"test-alerts-{run_id}", "--metrics-port", str(ports["consumer"])], env=env, stdout=log,
                stderr=subprocess.STDOUT))
            template = (ROOT / "deploy" / "prometheus" / "prometheus.yml.tmpl").read_text()
            config = render(template, {
                "scrape_interval": "1s", "rule_files": f'  - "{RULES_DIR}/*.yml"',
                "stream_scrape_configs": stream_scrape_configs(tuple((ex, ports[ex]) for ex in symbols)),
                "consumer_metrics_port": ports["consumer"], "prometheus_port": ports["prometheus"]})
            (tmp / "prometheus.yml").write_text(config)
            prom_bin = shutil.which("prometheus")
            if prom_bin is None:
                pytest.fail("prometheus not found: install the Debian `prometheus` package", pytrace=False)
            prom_log = open(tmp / "prometheus.log", "w")  # noqa: SIM115 - closed below
            logs.append(prom_log)
            procs.append(subprocess.Popen(
                [prom_bin, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{ports['prometheus']}"], stdout=prom_log, stderr=subprocess.STDOUT))
            for (name, port), proc in zip(ports.items(), procs, strict=True):
                path = "/-/ready" if name == "prometheus" else "/metrics"
                _wait_http(f"http://127.0.0.1:{port}{path}", 90, proc, name)
            prom = f"http://127.0.0.1:{ports['prometheus']}"
            deadline = time.monotonic() + 90  # until every target is scraped and trades are flowing
            all_flowing = " and on () ".join(f"sum(rate({d.metric_prefix}_messages_received_total[10s])) > 0"
                                             for d in registry.all())
            while True:
                targets = _query(prom, "up == 1")
                flowing = _query(prom, all_flowing)
                if len(targets) >= len(ports) and flowing:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"Prometheus targets not all up with trades flowing: {targets}")
                time.sleep(1)
            yield {"ports": ports, "prometheus": prom, "env": env, "tmp": tmp, "started": time.time()}
        finally:
            for proc in reversed(procs):
                _stop(proc)
            for log in logs:
                log.close()
            for topic in topics.values():
                delete_topic(topic)


def test_every_metric_named_by_rules_and_dashboard_is_exported(pipeline):
    exported: set[str] = {"up", "ALERTS"}
    live_labels: dict[str, set[str]] = {}
    for name in (*registry.names(), "consumer"):
        names, labels = _scrape(pipeline["ports"][name])
        exported |= names
        for k, v in labels.items():
            live_labels.setdefault(k, set()).update(v)
    declared = _registry_labels()
    exprs = [(a["alert"], a["expr"]) for a in all_alerts()] + [("dashboard", e) for e in dashboard_exprs()]
    problems = []
    for where, expr in exprs:
        names_here = set()
        for name, labels in selectors(expr):
            names_here.add(name)
            if name not in exported:
                problems.append(f"{where}: {name} is not exported by the running stream or consumer")
                continue
            known = TARGET_LABELS | SYNTHETIC.get(name, set()) | live_labels.get(name, set()) | declared.get(name,
                                                                                                         set())
            for label in labels - known:
                problems.append(f"{where}: {name} has no label {label!r}")
        available = TARGET_LABELS | {lbl for n in names_here for lbl in
                                     live_labels.get(n, set()) | declared.get(n, set()) | SYNTHETIC.get(n, set())}
        for label in grouping_labels(expr) - available:
            problems.append(f"{where}: groups or joins by {label!r}, which none of its metrics carries")
    assert not problems, "\n".join(problems)
    assert len(exprs) > 60  # the check saw every rule and panel


def test_prometheus_evaluates_every_rule_without_error(pipeline):
    prom = pipeline["prometheus"]
    expected = {a["alert"] for a in all_alerts()}
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=10) as resp:
            groups = json.loads(resp.read())["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        evaluated = [r for r in rules if r.get("lastEvaluation", "").startswith("20")]
        if len(evaluated) == len(rules) == len(expected):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(evaluated)} of {len(rules)} rules evaluated; expected {len(expected)}")
        time.sleep(1)
    assert {r["name"] for r in rules} == expected
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad


def test_memory_joins_pick_exactly_the_stream_of_their_exchange(pipeline):
    prom = pipeline["prometheus"]
    assert len(_query(prom, "process_memory_rss_bytes")) == len(registry.all()) + 1  # every stream and the consumer
    for d in registry.all():
        rows = _query(prom, f"process_memory_rss_bytes and on (instance) {d.metric_prefix}_connection_status")
        assert [r["metric"]["job"] for r in rows] == [d.scrape_job]
        assert float(rows[0]["value"][1]) > 10 * 2**20
        assert _query(prom, f"memory_leak_detection_score and on (instance) {d.metric_prefix}_connection_status")
    rows = _query(prom, "process_memory_rss_bytes and on (instance) k2_consumer_assigned_partitions")
    assert [r["metric"]["job"] for r in rows] == ["k2-consumer"]


def test_weekly_report_from_prometheus(pipeline):
    prom = pipeline["prometheus"]
    wait = 40 - (time.time() - pipeline["started"])
    if wait > 0:
        time.sleep(wait)  # let the window fill with samples
    days = 30 / 86400
    # the seed's per-day figures, declared for this pipeline's schedule: a ping every 2 s, no rotation in 30 s
    env = dict(pipeline["env"], K2_THRESHOLDS="prod_pings_per_day=43200,prod_rotations_per_day=0")
    proc = run_k2(["soak", "report", "--prometheus", prom, "--days", f"{days:.8f}", "--exchange", "binance",
                   "--format", "json"], env=env)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    lines = {line["key"]: line for line in report["lines"]}
    assert {"memory", "leak", "rotations", "heartbeat", "uptime", "reconnects", "rate", "alerts"} <= set(lines)
    for key in ("memory", "uptime", "reconnects", "rate", "alerts"):
        assert lines[key]["status"] == "PASS", lines[key]
    assert 0.7 * RATE < report["figures"]["avg_rate_msg_s"] < 1.3 * RATE
    assert report["figures"]["pings"] > 5 and report["figures"]["unscheduled_reconnects"] == {}
    assert report["figures"]["rss_peak_mb"] > 10
    md = run_k2(["soak", "report", "--prometheus", prom, "--days", f"{days:.8f}", "--format", "markdown"], env=env)
    for heading in ("Production Validation Report", "**Date Range**", "## Summary", "## Metrics", "## Issues",
                    "## Recommendation", "Message rate:", "Zero critical alerts"):
        assert heading in md.stdout, heading


def test_weekly_report_of_a_window_without_data_is_not_judged(pipeline):
    from k2cli.settings import load_settings
    from k2cli.soak.weekly import build_weekly, render_markdown

    before = build_weekly(pipeline["prometheus"], "binance", 0.01, load_settings(), now=pipeline["started"] - 7200)
    assert before.exit_code == 3 and before.coverage_days == 0
    assert "No data" in before.lines[0].text and "NOT JUDGED" in render_markdown(before)


def test_stack_prometheus_loaded_the_rules():
    require("prometheus")
    with urllib.request.urlopen("http://localhost:9090/api/v1/rules", timeout=10) as resp:
        groups = json.loads(resp.read())["data"]["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    missing = {a["alert"] for a in all_alerts()} - loaded
    assert not missing, f"the stack's Prometheus has not loaded {sorted(missing)}; run `k2 stack up` to reload"

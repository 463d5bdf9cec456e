"""Where every checklist item of the operators' seed documents is checked: a step id, or a MANUAL step.

The seeds live in docs/seeds/; a unit test parses their `- [ ]` / `- [x]` items and fails when one is not
mapped here, and docs/validation-coverage.md is this module's `markdown()` (also tested).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlsplit

from k2cli.exchanges import registry

if TYPE_CHECKING:
    from k2cli.checks.model import Step

SEEDS = {
    "000": ("000_2652d2c68373a114.txt", "Consumer Validation Procedures"),
    "003": ("003_fbec648aa6143732.txt", "Phase 5 Validation Guide"),
}
_SEED = registry.default()  # the seeds' items name this exchange's URL, metrics, alerts and runbook
_ITEM = re.compile(r"^\s*- \[[ xX]\] (.*?)\s*$")


@dataclass(frozen=True)
class Item:
    """One checklist item of a seed: its seed, section heading, text, and the steps that check it."""

    seed: str
    section: str
    text: str
    steps: tuple[str, ...]


def seeds_dir() -> Path:
    """docs/seeds of the source tree."""
    return Path(__file__).resolve().parents[2] / "docs" / "seeds"


def parse_items(text: str) -> list[tuple[str, str]]:
    """(section, item text) of every `- [ ]`/`- [x]` line outside code blocks; bold markers removed."""
    section, fenced, out = "", False, []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if line.startswith("#"):
            section = line.strip("#").replace("✅", "").strip()
            continue
        match = _ITEM.match(line)
        if match:
            out.append((section, match.group(1).replace("**", "").strip()))
    return out


def _items(seed: str, section: str, *entries: tuple[str, str | tuple[str, ...]]) -> list[Item]:
    return [Item(seed, section, text, (steps,) if isinstance(steps, str) else steps) for text, steps in entries]


S2 = "Step 2: Run Consumer with Known Message Count"
S4 = "Step 4: Query Validation"
ITEMS: tuple[Item, ...] = tuple(
    # ------------------------------------------------------------ seed 000: Consumer Validation Procedures
    _items("000", S2,
           ("Messages consumed == Messages written (no loss)", "e2e.2-no-loss"),
           ("Errors == 0 (no unhandled exceptions)", "e2e.2-errors"),
           ("Sequence gaps tracked correctly", "e2e.2-sequence-gaps"),
           ("Duration and throughput within expected range", "e2e.2-throughput"))
    + _items("000", S4,
             ("Query returns expected number of records", "e2e.4-count"),
             ("Timestamp ordering correct", "e2e.4-order"),
             ("All required v2 schema fields present", "e2e.4-fields"),
             ("Data types match schema definition", "e2e.4-types"))
    + _items("000", "Pre-Deployment Checklist",
             ("All unit tests passing (80%+ coverage)", "deploy-pre.unit-tests"),
             ("All integration tests passing", "deploy-pre.integration-tests"),
             ("E2E validation completed successfully (5,000+ messages)", "deploy-pre.e2e"),
             ("No unhandled errors in logs", "deploy-pre.logs-clean"),
             ("DLQ functionality validated (injected error test)", ("deploy-pre.dlq-injected", "e2e.6-dlq-poison")),
             ("Performance benchmarks meet thresholds", "deploy-pre.performance"),
             ("Sequence tracking validated (gap detection working)", "deploy-pre.sequence-gaps"),
             ("Metrics recording correctly to Prometheus", "deploy-pre.metrics"),
             ("Graceful shutdown tested (SIGTERM handling)", "deploy-pre.sigterm"),
             ("Consumer lag monitoring configured", "deploy-pre.lag-monitoring"),
             ("Alerting rules configured (lag >10,000 messages)", "deploy-pre.lag-alert"),
             ("Runbook updated with any new failure modes", "deploy-pre.runbook"))
    + _items("000", "Post-Deployment Checklist",
             ("Consumer group healthy (no rebalancing errors)", "deploy-post.group-healthy"),
             ("Consumer lag <1,000 messages within 5 minutes", "deploy-post.lag"),
             ("Throughput meets production requirements (>100 msg/sec)", "deploy-post.throughput"),
             ("No DLQ entries (or all DLQ entries expected)", "deploy-post.dlq"),
             ("Iceberg snapshots increasing at expected rate", "deploy-post.snapshots"),
             ("Query engine returning fresh data (<5 min lag)", "deploy-post.freshness"),
             ("Prometheus metrics reporting correctly", "deploy-post.metrics"),
             ("Grafana dashboards showing expected behavior", "deploy-post.grafana"),
             ("No alerts firing", "deploy-post.alerts-firing"),
             ("Logs show no errors or warnings", "deploy-post.logs"))
    + _items("000", "Technical Debt Resolution Checklist",
             ("API Mismatches: All method signatures validated", "tech-debt.api-contract"),
             ("Serialization Issues: All data types tested (datetime, Decimal, UUID)", "tech-debt.serialization"),
             ("Error Handling: Transient vs permanent errors classified correctly", "tech-debt.error-classes"),
             ("Retry Logic: Exponential backoff implemented and tested", "tech-debt.retry-backoff"),
             ("DLQ Integration: Error context preserved, original message intact", "tech-debt.dlq-context"),
             ("Metrics Consistency: Labels match metric definitions", "tech-debt.metrics-labels"),
             ("Test Coverage: Regression tests added for all fixes", "tech-debt.regression-tests"),
             ("Documentation: TECHNICAL_DEBT.md updated with resolution", "tech-debt.docs"),
             ("Validation: E2E validation completed successfully", "tech-debt.e2e"))
    + _items("000", "Quick Validation",
             ("Connection successful", "streaming.connect"),
             ("10 valid trades per exchange", "streaming.trades"),
             ("100% v2 schema compliance", "streaming.v2-compliance"),
             ("Message rate: 0.1-100 trades/sec (depends on market activity)", "streaming.rate"))
    # ------------------------------------------------------------ seed 003: Phase 5 Validation Guide
    + _items("003", "Pre-Implementation Validation",
             ("Baseline Metrics Captured", "resilience.baseline"),
             ("Dependencies Installed", "prereqs.dependencies"),
             ("Test Infrastructure Ready", ("prereqs.broker", "prereqs.registry", "prereqs.prometheus",
                                            "prereqs.prometheus-k2")))
    + _items("003", "Step 01: SSL Certificate Verification",
             ("Unit tests pass (SSL context creation, certificate validation)", "resilience.unit-tests"),
             (f"Integration test: Connects to wss://{urlsplit(_SEED.default_url).hostname} with SSL enabled",
              ("streaming.connect", "resilience.tls-valid")),
             ("Config flag `ssl_verify` defaults to True", "resilience.tls-default"),
             ("Negative test: Connection rejected with invalid certificate", "resilience.tls-bad-cert"),
             ("Documentation updated (README.md, runbook)", "resilience.docs"))
    + _items("003", "Step 02: Connection Rotation Strategy",
             ("Unit tests pass (rotation loop, lifetime tracking)", "resilience.unit-tests"),
             ("Integration test: Connection rotates after 1h (short interval test)", "resilience.rotation"),
             (f"Metric visible: `{_SEED.metric_prefix}_connection_rotations_total`", "resilience.rotation-metrics"),
             (f"Metric visible: `{_SEED.metric_prefix}_connection_lifetime_seconds`", "resilience.rotation-metrics"),
             (f'Rotation logged: "{_SEED.metric_prefix}_connection_rotation_triggered"', "resilience.rotation-logged"),
             ("No data loss during rotation (message continuity validated)", "resilience.rotation-continuity"))
    + _items("003", "Step 03: Bounded Serializer Cache",
             ("Unit tests pass (LRU eviction, bounded cache)", "resilience.unit-tests"),
             ("Test: Create 15 serializers, verify 5 evicted (max_size=10)", "resilience.cache-eviction"),
             ("Metric visible: `serializer_cache_size`", "resilience.cache-metrics"),
             ("Metric visible: `serializer_cache_evictions_total`", "resilience.cache-metrics"),
             ("Config parameter: `serializer_cache_max_size` (default: 10)", "resilience.cache-config"),
             ("Memory stable with 100+ schema subjects", "resilience.cache-memory"))
    + _items("003", "Step 04: Memory Monitoring & Alerts",
             ("Unit tests pass (memory monitoring, leak detection)", "resilience.unit-tests"),
             ("Metric visible: `process_memory_rss_bytes`", "resilience.memory-metrics"),
             ("Metric visible: `process_memory_vms_bytes`", "resilience.memory-metrics"),
             ("Metric visible: `memory_leak_detection_score`", "resilience.memory-metrics"),
             (f"Alert configured: `{_SEED.alert('MemoryHigh')}` (>400MB)", "resilience.alert-memory"),
             (f"Alert configured: `{_SEED.alert('MemoryLeakDetected')}` (score >0.8)", "resilience.alert-memory"),
             ("psutil dependency installed", "prereqs.dependencies"))
    + _items("003", "12h Validation Test",
             ("Run for 12 hours", "resilience.soak-12h"),
             ("Memory growth <30MB (200MB → <230MB)", "resilience.soak-12h"),
             ("Connection rotations: 3 (every 4h)", "resilience.soak-12h"),
             ("Message rate >10 msg/sec sustained", "resilience.soak-12h"),
             ("Zero critical errors in logs", "resilience.soak-12h"))
    + _items("003", "Step 05: WebSocket Ping-Pong Heartbeat",
             ("Unit tests pass (ping loop, pong tracking)", "resilience.unit-tests"),
             ("Integration test: Ping sent every 3min, pong received within 10s", "resilience.heartbeat"),
             (f"Metric visible: `{_SEED.metric_prefix}_last_pong_timestamp_seconds`", "resilience.heartbeat-metrics"),
             (f"Metric visible: `{_SEED.metric_prefix}_pong_timeouts_total`", "resilience.heartbeat-metrics"),
             ("Config parameter: `ping_interval_seconds` (default: 180)", "resilience.heartbeat-config"),
             ("Negative test: Pong timeout triggers reconnect", "resilience.pong-timeout"))
    + _items("003", "Step 06: Health Check Timeout Tuning",
             ("Config default changed: 60s → 30s", "resilience.idle-config"),
             ("Docker Compose environment variable updated", "resilience.idle-compose"),
             ("Documentation updated (README.md, runbook)", "resilience.docs"),
             ("Integration test: Reconnect triggered after 30s of no messages", "resilience.idle-reconnect"))
    + _items("003", "Step 07: 24h Soak Test Implementation",
             (f"Test file created: `tests/soak/test_{_SEED.name}_24h_soak.py`", "resilience.soak-command"),
             ("Test runs for 24 hours successfully", "resilience.soak-24h"),
             ("Memory growth <50MB over 24h", "resilience.soak-24h"),
             ("Message rate >10 msg/sec average", "resilience.soak-24h"),
             ("Connection drops <10 over 24h", "resilience.soak-24h"),
             ("Memory profile JSON generated", "resilience.soak-24h"))
    + _items("003", "Step 08: Blue-Green Deployment",
             ("New image built: `k2-platform:v2.0-stable`", "deploy-post.bg-image"),
             ("Green container deployed alongside blue", "deploy-post.bg-green-deployed"),
             ("Both containers producing to Kafka (10 min dual operation)", "deploy-post.bg-dual"),
             ("Traffic cutover to green (blue stopped gracefully)", ("deploy-post.bg-cutover",
                                                                    "deploy-pre.stream-sigterm")),
             ("Green handling all traffic (15 min validation)", "deploy-post.bg-green-validated"),
             ("Rollback procedure tested (if needed)", "deploy-post.bg-rollback"))
    + _items("003", "Step 09: Production Validation (7 Days)",
             ("Day 1: Memory stable (200-250MB)", "deploy-post.memory"),
             ("Day 2: Connection rotations: 12 (6 per day)", "deploy-post.rotations"),
             ("Day 3: Ping-pong heartbeat: 960 pings (480 per day)", "deploy-post.heartbeat"),
             ("Day 4: Message rate sustained (>10 msg/sec)", "deploy-post.stream-rate"),
             ("Day 5: Zero unscheduled reconnections", "deploy-post.reconnects"),
             ("Day 6: No critical alerts triggered", "deploy-post.critical-alerts"),
             ("Day 7: Validation report generated", "deploy-post.weekly-report"))
    + _items("003", "Phase 5 Complete When:",
             ("All 9 steps complete (100%)", "deploy-post.phase5-complete"),
             ("All unit tests pass (100%)", "deploy-pre.unit-tests"),
             ("All integration tests pass (100%)", "deploy-pre.integration-tests"),
             ("24h soak test passes (<50MB memory growth)", "resilience.soak-24h"),
             ("7-day production validation complete", "deploy-post.weekly-signoff"),
             ("SSL verification enabled in production", "deploy-post.tls"),
             ("Memory stable at 200-250MB (baseline)", "deploy-post.memory"),
             ("Connection rotations: 6 per day (every 4h)", "deploy-post.rotations"),
             ("Ping-pong heartbeat: 480 pings per day (every 3min)", "deploy-post.heartbeat"),
             ("Message rate: >10 msg/sec sustained", "deploy-post.stream-rate"),
             ("Uptime: >99.9% (excluding scheduled rotations)", "deploy-post.uptime"),
             ("Alerts: Zero critical alerts over 7 days", "deploy-post.critical-alerts"),
             ("README.md updated with new config options", "deploy-pre.docs-config"),
             (f"{_SEED.title} streaming runbook updated", "deploy-pre.runbook"),
             ("Prometheus alert rules documented", "deploy-pre.docs-alerts"),
             ("7-day validation report completed", "deploy-post.weekly-signoff"))
)


def step_index() -> dict[str, tuple[str, Step]]:
    """step id -> (checklist name, Step) over every checklist and variant."""
    from k2cli.checks.checklists import every_checklist

    return {step.id: (checklist.name, step) for checklist in every_checklist() for step in checklist.steps}


class CoverageRow(TypedDict):
    """One seed item: where it comes from, its steps, their kind and any MANUAL reasons."""

    seed: str
    section: str
    item: str
    steps: list[str]
    kind: str
    manual: list[str]


def rows() -> list[CoverageRow]:
    """The coverage table: one row per seed item, with its steps, their kind and any MANUAL reason."""
    index = step_index()
    out: list[CoverageRow] = []
    for item in ITEMS:
        kinds: list[str] = []
        manual: list[str] = []
        for step_id in item.steps:
            step = index[step_id][1] if step_id in index else None
            kinds.append(getattr(step, "kind", "missing"))
            if step is not None and step.manual is not None:
                manual.append(f"{step_id}: {step.manual.reason}")
        kind = kinds[0] if len(set(kinds)) == 1 else " / ".join(sorted(set(kinds)))
        out.append({"seed": f"{item.seed} {SEEDS[item.seed][1]}", "section": item.section, "item": item.text,
                    "steps": list(item.steps), "kind": kind, "manual": manual})
    return out


def markdown() -> str:
    """docs/validation-coverage.md."""
    from k2cli.checks.checklists import every_checklist

    lines = [
        "# Validation coverage",
        "",
        "Every checklist item of the operators' procedures in [`docs/seeds/`](seeds/) and the `k2 validate` "
        "step that checks it. *auto* steps measure something through a real connection; *manual* steps cannot "
        "be automated, and their report says why and what a person must check; *check+manual* steps measure what "
        "they can first (and fail on what they find), then end MANUAL for what a person must still judge (the "
        "test steps end MANUAL only where k2 runs without its source tree). Generated by "
        "`k2 validate coverage --format markdown`; a unit test fails when this file, the seeds or the checklists "
        "drift apart.",
        "",
    ]
    current = None
    for row in rows():
        if row["seed"] != current:
            current = row["seed"]
            lines += ["", f"## Seed {current}", "", "| section | item | step(s) | kind |", "|---|---|---|---|"]
        steps = ", ".join(f"`{s}`" for s in row["steps"])
        item = str(row["item"]).replace("|", "\\|")
        lines.append(f"| {row['section']} | {item} | {steps} | {row['kind']} |")
    lines += ["", "## Manual and check+manual steps", "", "| step | kind | why a person is needed | what a person "
              "must check |", "|---|---|---|---|"]
    seen: set[str] = set()
    for checklist in every_checklist():
        for step in checklist.steps:
            if step.manual is not None and step.id not in seen:
                seen.add(step.id)
                reason = step.manual.reason.replace("|", "\\|")
                check = step.manual.check.replace("|", "\\|")
                lines.append(f"| `{step.id}` | {step.kind} | {reason} | {check} |")
    return "\n".join(lines).strip() + "\n"

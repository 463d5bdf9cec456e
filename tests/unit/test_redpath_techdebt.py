"""Red paths of `k2 validate tech-debt` steps that need no service, and the label comparison over plain values."""

from __future__ import annotations

from pathlib import Path

from k2cli.checks import promql_labels
from k2cli.checks.checklists import tech_debt
from k2cli.checks.model import Result, Status
from tests.unit.canned_prometheus import context_with
from tests.unit.test_redpath_deploy import e2e_report

ROOT = Path(__file__).resolve().parents[2]


def test_api_contract_fails_on_a_missing_flag_or_command(monkeypatch):
    monkeypatch.setattr(tech_debt, "CONTRACT", {("consume",): ("--topics", "--no-such-flag"), ("nosuch",): ()})
    red = tech_debt.measure_api_contract(context_with())
    assert red.status is Status.FAIL and red.measured == 0
    assert "k2 consume: lacks --no-such-flag" in red.evidence and "k2 nosuch: missing" in red.evidence


def test_tech_debt_doc_fails_without_one_and_is_never_a_pass(monkeypatch, tmp_path):
    assert tech_debt.measure_tech_debt_doc(context_with()).status is Status.MANUAL
    monkeypatch.setattr(tech_debt, "source_root", lambda: tmp_path)
    red = tech_debt.measure_tech_debt_doc(context_with())
    assert red.status is Status.FAIL and "no TECHNICAL_DEBT.md" in red.summary


def test_tech_debt_e2e_fails_with_the_nested_run():
    red = tech_debt.measure_e2e(context_with(e2e_report=e2e_report({"e2e.3-records": Result.failed("1 differs")})))
    assert red.status is Status.FAIL and "e2e.3-records: FAIL 1 differs" in red.evidence


def test_label_uses_are_compared_with_the_families_they_read():
    labels = {"binance_connection_rotations_total": {"reason"}, "k2_stream_frame_errors_total": {"exchange",
                                                                                                 "error_type"}}
    rename = {"kraken_connection_rotations_total": "binance_connection_rotations_total"}
    uses = [promql_labels.parse('sum by (job, reason) (increase(kraken_connection_rotations_total[1h]))', "ok"),
            promql_labels.parse('sum by (symbol) (increase(binance_connection_rotations_total[1h])) > 0', "bad #1"),
            promql_labels.parse('k2_stream_frame_errors_total{exchnage="binance"} > 0', "bad #2"),
            promql_labels.parse('sum by (topic) (rate(k2_consumer_never_exported_total[5m]))', "unknown")]
    problems, judged = promql_labels.problems(uses, labels, rename)
    assert judged == 3
    assert problems == [
        "bad #1: no family it reads has label 'symbol' (sum by (symbol) (increase(binance_connection_rotations_total"
        "[1h])) > 0)",
        "bad #2: k2_stream_frame_errors_total has no label 'exchnage' (k2_stream_frame_errors_total{exchnage=\"binance"
        "\"} > 0)"]


def test_every_expression_of_the_shipped_rules_and_dashboard_is_judged_and_clean():
    files = sorted(f for pattern in tech_debt.DEFINITIONS for f in ROOT.glob(pattern))
    uses = promql_labels.definitions(files, ROOT)
    labels = tech_debt.declared_labels("binance")
    rename = {f"{other}_{n[len('binance_'):]}": n for n in labels if n.startswith("binance_")
              for other in ("kraken", "coinbase")}
    assert promql_labels.problems(uses, labels, rename) == ([], len(uses)) and len(uses) > 50


def test_rules_yaml_exprs_plain_quoted_and_block():
    text = 'groups:\n  - rules:\n      - expr: up == 0\n      - expr: "a > 1"\n      - expr: |\n          sum(b)\n' \
           '          > 2\n        for: 1m\n'
    assert list(promql_labels.yaml_exprs(text)) == ["up == 0", "a > 1", "sum(b) > 2"]

"""Red paths of the deploy-pre and tech-debt steps that need the real stack: each step's own fault, injected into
the k2 process it starts (tests/integration/childfault) or into k2 in this process, makes its measure FAIL."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from k2cli.checks.checklists import deploy, tech_debt
from k2cli.checks.context import Context
from k2cli.checks.model import Status
from k2cli.settings import load_settings
from tests.conftest import require

pytestmark = pytest.mark.integration

CHILD_FAULTS = Path(__file__).resolve().parent / "childfault"


@pytest.fixture
def context(k2_env, monkeypatch) -> Iterator[Callable[[str | None], Context]]:
    """A checklist context on the test's own K2_* environment; `fault:command` is injected into that k2 command."""
    made: list[Context] = []

    def make(fault: str | None = None) -> Context:
        for key in [k for k in os.environ if k.startswith("K2_")]:
            monkeypatch.delenv(key)
        for key, value in k2_env.items():
            monkeypatch.setenv(key, value)
        if fault:
            monkeypatch.setenv("K2_TEST_CHILD_FAULT", fault)
            monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(CHILD_FAULTS),
                                                                         os.environ.get("PYTHONPATH")) if p))
        made.append(Context(load_settings()))
        return made[-1]

    yield make
    for ctx in made:
        ctx.close()


def test_consumer_that_ignores_sigterm_fails(context, monkeypatch):
    require("kafka", "schema-registry")
    monkeypatch.setattr(deploy, "SIGTERM_EXIT_S", 5.0)
    result = deploy.measure_consumer_sigterm(context("ignore-sigterm:consume"))
    assert result.status is Status.FAIL and "did not exit within 5 s of SIGTERM" in result.summary, result


def test_stream_that_ignores_sigterm_fails(context, monkeypatch):
    require("kafka", "schema-registry")
    monkeypatch.setattr(deploy, "SIGTERM_EXIT_S", 5.0)
    result = deploy.measure_stream_sigterm(context("ignore-sigterm:stream"))
    assert result.status is Status.FAIL and "`k2 stream` did not exit within 5 s" in result.summary, result


def test_consumer_blind_to_sequence_gaps_fails(context):
    require("kafka", "schema-registry")
    result = deploy.measure_gap_detection(context("no-gap-detection:consume"))
    assert result.status is Status.FAIL and result.measured == 0, result
    assert "the consumer reported 0 gaps for 3 injected" in result.summary


def test_serialization_fails_when_json_turns_decimals_into_floats(context, monkeypatch):
    require("kafka", "schema-registry")
    import k2cli.jsonutil

    def float_dumps(obj, **_):
        return json.dumps(obj, default=lambda o: float(o) if isinstance(o, Decimal) else str(o))

    monkeypatch.setattr(k2cli.jsonutil, "dumps", float_dumps)
    result = tech_debt.measure_serialization(context())
    assert result.status is Status.FAIL and result.summary.startswith("JSON encoder:"), result
    assert "16500.12345678" in result.summary


def test_error_classes_fail_when_a_permanent_error_is_called_transient(context, monkeypatch):
    require("schema-registry")
    from k2cli.errors import ServiceUnavailable
    from k2cli.kafka.serde import AvroDeserializer, DecodeError

    decode = AvroDeserializer.decode

    def transient_truncation(self, value):
        try:
            return decode(self, value)
        except DecodeError as exc:
            if exc.error_type == "truncated":
                raise ServiceUnavailable("registry? retry") from exc
            raise

    monkeypatch.setattr(AvroDeserializer, "decode", transient_truncation)
    result = tech_debt.measure_error_classes(context())
    assert result.status is Status.FAIL and result.summary == "empty value: classified transient: registry? retry"


def test_backoff_fails_when_the_stream_ignores_its_backoff(context):
    require("kafka", "schema-registry")
    result = tech_debt.measure_backoff(context("slow-backoff:stream"))
    assert result.status is Status.FAIL, result
    assert "retry 1:" in result.summary or "retries logged" in result.summary


def test_dlq_context_fails_when_the_original_bytes_are_lost(context):
    require("kafka", "schema-registry")
    result = tech_debt.measure_dlq_context(context("dlq-drops-value:consume"))
    assert result.status is Status.FAIL and result.summary == "the DLQ entry lacks: original bytes", result


def test_metric_labels_fail_on_a_rule_grouping_by_a_label_the_family_lacks(context, monkeypatch, tmp_path):
    require("kafka", "schema-registry")
    rules = tmp_path / "deploy" / "prometheus" / "rules"
    rules.mkdir(parents=True)
    (rules / "bad.yml").write_text("groups:\n  - name: bad\n    rules:\n      - alert: RotationsBySymbol\n"
                                   "        expr: sum by (symbol) (increase(kraken_connection_rotations_total[1h]))"
                                   " > 10\n")
    monkeypatch.setattr(tech_debt, "source_root", lambda: tmp_path)
    result = tech_debt.measure_metric_labels(context())
    assert result.status is Status.FAIL and result.measured == 1, result
    assert result.summary.startswith("deploy/prometheus/rules/bad.yml #1: no family it reads has label 'symbol'")

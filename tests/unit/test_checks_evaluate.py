"""Pure evaluation: operators, judging against thresholds, verdicts and exit codes."""

import math

import pytest

from k2cli.checks import evaluate
from k2cli.checks.model import Status
from k2cli.verdict import exit_code, worst


@pytest.mark.parametrize(("measured", "op", "limit", "expected"), [
    (4.9, "<", 5, True), (5, "<", 5, False), (5, "<=", 5, True), (101, ">", 100, True), (100, ">", 100, False),
    (100, ">=", 100, True), (0, "==", 0, True), (1, "==", 0, False), (1, "!=", 0, True),
])
def test_compare_operators(measured, op, limit, expected):
    assert evaluate.compare(measured, op, limit) is expected


def test_compare_missing_or_nan_measurement_never_holds():
    assert evaluate.compare(None, "<", 5) is False
    assert evaluate.compare(math.nan, "<", 5) is False
    assert evaluate.compare(True, ">=", 0) is False  # a bool is not a measurement


def test_compare_rejects_unknown_operator():
    with pytest.raises(ValueError, match="unknown operator"):
        evaluate.compare(1, "=>", 0)


def test_judge_fail_warn_pass():
    assert evaluate.judge(150, ">", 100) is Status.PASS
    assert evaluate.judge(90, ">", 100) is Status.FAIL
    assert evaluate.judge(150, ">", 100, warn_limit=200) is Status.WARN
    assert evaluate.judge(250, ">", 100, warn_limit=200) is Status.PASS
    assert evaluate.judge(None, "<", 1) is Status.FAIL


def test_describe_and_numbers():
    assert evaluate.describe("<", 5, "s") == "< 5 s"
    assert evaluate.describe(">=", 99.9, "%") == ">= 99.9 %"
    assert evaluate.describe("==", 0.8) == "== 0.8"
    assert evaluate.fmt_number(1234.5678) == "1235"
    assert evaluate.fmt_number(0.000123) == "0.000123"


@pytest.mark.parametrize(("statuses", "expected", "code"), [
    ([Status.PASS, Status.PASS], Status.PASS, 0),
    ([Status.PASS, Status.WARN, Status.MANUAL], Status.WARN, 1),
    ([Status.WARN, Status.FAIL, Status.SKIP], Status.FAIL, 2),
    ([Status.PASS, Status.ERROR, Status.SKIP], Status.ERROR, 3),
    ([Status.ERROR, Status.FAIL], Status.FAIL, 2),  # a measured failure outranks "could not run"
    ([Status.MANUAL, Status.PASS], Status.PASS, 0),
    ([], Status.PASS, 0),
])
def test_verdict_and_exit_code(statuses, expected, code):
    overall = worst(statuses)
    assert overall is expected
    assert exit_code(overall) == code


def test_worst_and_counts():
    assert worst([Status.PASS, Status.WARN]) is Status.WARN
    assert worst([]) is Status.PASS
    tally = evaluate.counts([Status.PASS, Status.PASS, Status.MANUAL])
    assert tally == {"PASS": 2, "WARN": 0, "FAIL": 0, "SKIP": 0, "MANUAL": 1, "ERROR": 0}


def test_percentile_interpolates():
    values = list(range(1, 101))
    assert evaluate.percentile(values, 50) == pytest.approx(50.5)
    assert evaluate.percentile(values, 99) == pytest.approx(99.01)
    assert evaluate.percentile([7], 95) == 7
    assert math.isnan(evaluate.percentile([], 50))

"""The pure parts of scripts/mutation.py: finding targets, writing mutants, mapping tests, scoring."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k2_mutation_script", ROOT / "scripts" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


mutation = _load()

CHECKS = textwrap.dedent('''
    from k2cli.checks.model import Result, Status, Step


    def measure_loss(ctx):
        """Nothing lost."""
        lost = ctx.lost
        if lost:
            return Result.failed(f"{lost} lost")
        return Result.passed("none lost")


    def judge(measured, limit):
        return Status.PASS if measured < limit else Status.FAIL


    def build():
        return (Step("x.loss", "t", "o", measure_loss), Step("x.mirror", "t", "o", lambda ctx: judge(ctx, 1)))
''')


def _run(source: str, name: str, *args: object) -> object:
    space: dict[str, object] = {}
    exec(compile(source, "<mutant>", "exec"), space)  # the mutant is made from this test's own text
    function = space[name]
    assert callable(function)
    return function(*args)


class _Ctx:
    lost = 3


def test_a_result_mutant_returns_pass_whatever_it_measures():
    target = mutation.Target("k2cli/checks/checklists/x.py", "measure_loss", "result")
    assert _run(CHECKS, "measure_loss", _Ctx()).status.value == "FAIL"
    mutant = mutation.mutate(CHECKS, target)
    result = _run(mutant, "measure_loss", _Ctx())
    assert result.status.value == "PASS" and result.summary == "mutant"
    assert '"""Nothing lost."""' in mutant and "lost = ctx.lost" not in mutant
    assert "def build():" in mutant  # the rest of the module is untouched


def test_a_status_mutant_returns_pass():
    mutant = mutation.mutate(CHECKS, mutation.Target("x.py", "judge", "status"))
    assert _run(CHECKS, "judge", 5, 1).value == "FAIL"
    assert _run(mutant, "judge", 5, 1).value == "PASS"


def test_wrapped_mutants_keep_what_the_original_says_but_its_status():
    source = textwrap.dedent('''
        import dataclasses
        from k2cli.verdict import Status


        @dataclasses.dataclass
        class Line:
            key: str
            status: Status


        class Report:
            def __init__(self):
                self.lines = [Line("before", Status.FAIL)]


        def _rate(report, avg):
            report.lines.append(Line("rate", Status.PASS if avg > 10 else Status.FAIL))
            return avg


        def _drops(drops):
            return [Line("drops", Status.FAIL if drops else Status.PASS)]
    ''')
    lines = mutation.mutate(source, mutation.Target("w.py", "_rate", "lines"))
    space: dict[str, object] = {}
    exec(compile(lines, "<mutant>", "exec"), space)
    report = space["Report"]()
    assert space["_rate"](report, 1) == 1
    assert [(x.key, x.status.value) for x in report.lines] == [("before", "FAIL"), ("rate", "PASS")]
    criteria = mutation.mutate(source, mutation.Target("w.py", "_drops", "criterion"))
    assert [x.status.value for x in _run(criteria, "_drops", 4)] == ["PASS"]


def test_a_function_the_module_does_not_have_is_an_error():
    with pytest.raises(KeyError):
        mutation.mutate(CHECKS, mutation.Target("x.py", "measure_gone", "result"))


def test_literal_step_ids_include_functions_named_inside_a_lambda():
    found = mutation.literal_step_ids(CHECKS)
    assert found["measure_loss"] == {"x.loss"}
    assert found["judge"] == {"x.mirror"}


def test_covering_tests_name_a_word_or_use_a_constant_naming_it_else_the_whole_module():
    text = textwrap.dedent('''
        import pytest


        def helper():
            return 1


        @pytest.mark.parametrize("step", ["e2e.2-no-loss"])
        def test_red(step):
            assert step


        MEASURED = ["e2e.4-count", "e2e.4-order"]


        def test_all(report):
            assert all(report[s] for s in MEASURED)


        class TestMore:
            def test_other(self):
                assert "e2e.3-records"


        def test_unrelated():
            assert "e2e.2-no-loss-extra" and "xe2e.2-no-loss"
    ''')
    module = mutation.TestModule.parse("tests/unit/test_x.py", text)
    assert module.covering(["e2e.2-no-loss"]) == {"tests/unit/test_x.py::test_red"}
    assert module.covering(["e2e.3-records"]) == {"tests/unit/test_x.py::TestMore::test_other"}
    assert module.covering(["helper"]) == {"tests/unit/test_x.py"}
    assert module.covering(["e2e.4-order"]) == {"tests/unit/test_x.py::test_all"}  # through the constant
    assert module.covering(["measure_nothing"]) == set()


def test_score_counts_timeouts_as_killed_and_leaves_equivalents_out():
    def mutant(outcome: str) -> object:
        m = mutation.Mutant(mutation.Target("x.py", f"f_{outcome}", "result"))
        m.outcome = outcome
        return m

    tally = mutation.score([mutant(o) for o in ("killed", "killed", "timeout", "survived", "no-tests", "equivalent")])
    assert (tally["score"], tally["total"], tally["equivalent"]) == (3, 5, 1)


def test_only_names_one_mutant_by_id_or_unique_suffix():
    targets = [mutation.Target("k2cli/checks/checklists/e2e.py", "measure_baseline", "result"),
               mutation.Target("k2cli/checks/checklists/resilience.py", "measure_baseline", "result"),
               mutation.Target("k2cli/checks/checklists/e2e.py", "measure_no_loss", "result")]
    assert [t.id for t in mutation.select(targets, "measure_no_loss")] == ["checks.checklists.e2e:measure_no_loss"]
    assert mutation.select(targets, "e2e:measure_baseline")[0].path.endswith("e2e.py")
    with pytest.raises(LookupError, match="2 mutants"):
        mutation.select(targets, "measure_baseline")


def test_every_measure_function_of_the_checklists_is_a_target():
    targets = mutation.discover(ROOT)
    ids = {t.id for t in targets}
    assert "checks.checklists.e2e:measure_no_loss" in ids and "checks.evaluate:judge" in ids
    assert "soak.criteria:_rate" in ids and "soak.weekly:_rate" in ids
    for target in targets:  # every mutant of the real tree compiles
        mutation.mutate((ROOT / target.path).read_text(), target)


def test_equivalent_mutants_come_from_the_file_with_their_reason(tmp_path):
    path = tmp_path / "eq.toml"
    path.write_text('[equivalent]\n"checks.x:measure_y" = "the step only prints"\n')
    assert mutation.load_equivalent(path) == {"checks.x:measure_y": "the step only prints"}
    assert mutation.load_equivalent(tmp_path / "missing.toml") == {}


def test_the_reason_is_the_first_assertion_line_after_the_summary():
    out = "....F\nE   AssertionError: step FAIL\nE   more\n==== 1 failed, 4 passed in 2.0s ====\n"
    assert mutation.reason_of(out) == "1 failed, 4 passed in 2.0s: AssertionError: step FAIL"
    assert mutation.reason_of("..\n=== 2 passed in 0.1s ===\n") == "2 passed in 0.1s"


def test_a_method_is_mutated_in_place_with_its_indentation():
    source = textwrap.dedent('''
        class Context:
            def holds(self, measured):
                """Whether it holds."""
                return measured < 5

            def other(self):
                return 1
    ''')
    mutant = mutation.mutate(source, mutation.Target("c.py", "Context.holds", "true"))
    space: dict[str, object] = {}
    exec(compile(mutant, "<mutant>", "exec"), space)
    ctx = space["Context"]()
    assert ctx.holds(10) is True and ctx.other() == 1
    assert mutation.tokens(mutation.Target("k2cli/checks/context.py", "Context.holds", "true"), []) == [
        ".holds(", "Context", "k2cli.checks.context", "from k2cli.checks import context", "k2cli.checks", "k2cli.soak"]

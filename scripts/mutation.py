"""Mutation testing of the checks: each measure_* step and each judge replaced by a constant PASS, one at a time.

Every mutant is written into a private copy of the tree under /tmp (the working tree is never edited), and the tests
that cover it run against that copy: a failing test kills the mutant, a green run lets it survive. The tests that
cover a mutant are found by meaning: the test functions (or, for a mention outside any test function, the whole
test module) that name the step ids the function serves, the function itself, or (for judges) its module.
Usage: bash scripts/mutation.sh [--integration] [--only NAME] [--json] [--list]
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

Kind = Literal["result", "status", "true", "criterion", "lines"]
Outcome = Literal["killed", "survived", "no-tests", "timeout", "equivalent"]

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = Path("scripts/mutation_equivalent.toml")
CHECKLISTS = "k2cli/checks/checklists"
# judges that are not measure_* functions: (file, function, kind)
JUDGES: tuple[tuple[str, str, Kind], ...] = (
    ("k2cli/checks/evaluate.py", "judge", "status"),
    ("k2cli/checks/evaluate.py", "compare", "true"),
    ("k2cli/checks/context.py", "Context.check", "result"),
    ("k2cli/checks/context.py", "Context.holds", "true"),
    ("k2cli/verdict.py", "worst", "status"),
    ("k2cli/checks/checklists/deploy.py", "mirror", "result"),
    ("k2cli/checks/checklists/deploy.py", "integration_verdict", "result"),
)
# the comparisons every step and criterion goes through: covered by any test of the checks or the soak
SHARED = {"k2cli/checks/evaluate.py", "k2cli/checks/context.py", "k2cli/verdict.py"}
SHARED_TOKENS = ("k2cli.checks", "k2cli.soak")
SOAK_CRITERIA = "k2cli/soak/criteria.py"  # functions returning Criterion or list[Criterion]
SOAK_WEEKLY = "k2cli/soak/weekly.py"  # functions appending Lines to a Weekly report
UNIT_DIRS = ("tests/unit",)
SELF_TEST = "test_mutation_script.py"  # names steps and functions as sample text: covers none of them
INTEGRATION_DIRS = ("tests/integration",)


@dataclasses.dataclass(frozen=True)
class Target:
    """One function to mutate: where it is, and what its constant PASS looks like."""

    path: str  # relative to the repository root
    name: str
    kind: Kind

    @property
    def module(self) -> str:
        """The dotted module name, e.g. k2cli.checks.checklists.e2e."""
        return self.path.removesuffix(".py").replace("/", ".")

    @property
    def id(self) -> str:
        """The mutant's name: module without the package prefix, a colon, the function."""
        return f"{self.module.removeprefix('k2cli.')}:{self.name}"


@dataclasses.dataclass
class Mutant:
    """A target with the tests that cover it and, once run, its outcome."""

    target: Target
    steps: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    outcome: Outcome | None = None
    seconds: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        """The mutant for the JSON report."""
        return {"id": self.target.id, "kind": self.target.kind, "steps": list(self.steps), "tests": list(self.tests),
                "outcome": self.outcome, "seconds": round(self.seconds, 1), "reason": self.reason}


# ------------------------------------------------------------------ discovery


def _functions(source: str) -> dict[str, ast.FunctionDef]:
    """Top-level functions by name, and methods of top-level classes as `Class.method`."""
    found: dict[str, ast.FunctionDef] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            found.update({f"{node.name}.{m.name}": m for m in node.body if isinstance(m, ast.FunctionDef)})
    return found


def _annotation(node: ast.FunctionDef) -> str:
    return ast.unparse(node.returns) if node.returns is not None else ""


def _judges_lines(node: ast.FunctionDef) -> bool:
    """Whether the function makes report Lines with a Status (a judge, not a collector of lines)."""
    return any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "Line"
               and any("Status." in ast.unparse(a) for a in c.args) for c in ast.walk(node))


def discover(root: Path) -> list[Target]:
    """Every target: measure_* of the checklists, the listed judges, the soak criteria and weekly report lines."""
    targets: list[Target] = []
    for path in sorted((root / CHECKLISTS).glob("*.py")):
        rel = path.relative_to(root).as_posix()
        targets += [Target(rel, name, "result") for name in _functions(path.read_text()) if name.startswith("measure_")]
    targets += [Target(p, n, k) for p, n, k in JUDGES if n in _functions((root / p).read_text())]
    for name, node in _functions((root / SOAK_CRITERIA).read_text()).items():
        if _annotation(node) in ("Criterion", "list[Criterion]"):
            targets.append(Target(SOAK_CRITERIA, name, "criterion"))
    for name, node in _functions((root / SOAK_WEEKLY).read_text()).items():
        if any(a.annotation is not None and ast.unparse(a.annotation) == "Weekly" for a in node.args.args) \
                and _judges_lines(node):
            targets.append(Target(SOAK_WEEKLY, name, "lines"))
    return targets


# ------------------------------------------------------------------ mutant source

_BODIES: dict[Kind, str] = {
    "result": 'from k2cli.checks.model import Result as _K2MutResult\nreturn _K2MutResult.passed("mutant")',
    "status": "from k2cli.verdict import Status as _K2MutStatus\nreturn _K2MutStatus.PASS",
    "true": "return True",
}
_WRAPPERS: dict[Kind, str] = {
    "criterion": '''def {name}(*args, **kwargs):
    """Mutant: the original's criteria, every one PASS."""
    import dataclasses
    from k2cli.verdict import Status
    out = {orig}(*args, **kwargs)
    if isinstance(out, list):
        return [dataclasses.replace(c, status=Status.PASS) for c in out]
    return dataclasses.replace(out, status=Status.PASS)
''',
    "lines": '''def {name}(*args, **kwargs):
    """Mutant: the original's report lines, every one PASS."""
    import dataclasses
    from k2cli.verdict import Status
    report = next(a for a in (*args, *kwargs.values()) if hasattr(a, "lines"))
    before = len(report.lines)
    out = {orig}(*args, **kwargs)
    report.lines[before:] = [dataclasses.replace(x, status=Status.PASS) for x in report.lines[before:]]
    return out
''',
}


def mutate(source: str, target: Target) -> str:
    """The module's source with the target's body replaced by a constant PASS (or wrapped to force PASS)."""
    node = _functions(source).get(target.name)
    if node is None:
        raise KeyError(f"{target.path} has no function {target.name}")
    lines = source.splitlines(keepends=True)
    end = node.end_lineno or node.lineno
    if target.kind in _WRAPPERS:
        if "." in target.name:
            raise ValueError(f"{target.id}: only top-level functions can be wrapped")
        orig = f"_k2mut_orig_{target.name}"
        header = node.lineno - 1
        lines[header] = lines[header].replace(f"def {target.name}(", f"def {orig}(", 1)
        wrapper = _WRAPPERS[target.kind].format(name=target.name, orig=orig)
        out = "".join(lines[:end]) + "\n\n" + wrapper + "".join(lines[end:])
    else:
        body = node.body
        first = body[1] if len(body) > 1 and _is_docstring(body[0]) else body[0]
        if first.lineno == node.lineno:
            raise ValueError(f"{target.id}: a one-line function cannot be mutated")
        indent = " " * first.col_offset
        new = "".join(f"{indent}{line}\n" for line in _BODIES[target.kind].splitlines())
        out = "".join(lines[:first.lineno - 1]) + new + "".join(lines[end:])
    ast.parse(out)  # a mutant that does not compile is a bug of this script, not a kill
    return out


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


# ------------------------------------------------------------------ which steps, which tests


def literal_step_ids(source: str) -> dict[str, set[str]]:
    """Function name -> ids of the Step(...) calls with a literal id that mention it (lambdas included)."""
    found: dict[str, set[str]] = {}
    for call in ast.walk(ast.parse(source)):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Step"):
            continue
        if not (call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
            continue
        for sub in (*call.args[1:], *(k.value for k in call.keywords)):
            for name in ast.walk(sub):
                ident = name.id if isinstance(name, ast.Name) else name.attr if isinstance(name, ast.Attribute) else ""
                if ident:
                    found.setdefault(ident, set()).add(call.args[0].value)
    return found


def runtime_step_ids() -> dict[tuple[str, str], set[str]]:
    """(module, function) -> ids of the steps whose run is that function, in every checklist variant."""
    from k2cli.checks.checklists import every_checklist

    found: dict[tuple[str, str], set[str]] = {}
    for checklist in every_checklist():
        for step in checklist.steps:
            run = step.run.func if isinstance(step.run, functools.partial) else step.run
            if run is not None:
                key = (getattr(run, "__module__", ""), getattr(run, "__qualname__", ""))
                found.setdefault(key, set()).add(step.id)
    return found


def step_ids(root: Path, targets: Iterable[Target], runtime: dict[tuple[str, str], set[str]]) -> dict[str, set[str]]:
    """Target id -> the step ids its function serves (directly, or named inside a step's run)."""
    literal = {p: literal_step_ids((root / p).read_text()) for p in {t.path for t in targets}}
    return {t.id: runtime.get((t.module, t.name), set()) | literal[t.path].get(t.name, set()) for t in targets}


def tokens(target: Target, steps: Iterable[str]) -> list[str]:
    """What a covering test names: the step ids, the function (a method: its call and class), and for a judge its
    module."""
    cls, _, method = target.name.rpartition(".")
    out = sorted(steps) + ([f".{method}(", cls] if cls else [target.name])
    if not target.name.startswith("measure_"):
        package, _, leaf = target.module.rpartition(".")
        out += [target.module, f"from {package} import {leaf}"]
    return out + list(SHARED_TOKENS) if target.path in SHARED else out


@dataclasses.dataclass(frozen=True)
class Span:
    """Lines of a test function (decorators included) or of a module-level assignment, and the names involved."""

    first: int
    last: int
    node_id: str  # the pytest node id of a test; "" for an assignment
    names: frozenset[str]  # the names a test uses, or the names an assignment binds


def _span(node: ast.stmt, node_id: str, names: Iterable[str]) -> Span:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return Span(first, node.end_lineno or node.lineno, node_id, frozenset(names))


@dataclasses.dataclass(frozen=True)
class TestModule:
    """A test file's text, its test functions and its module-level assignments."""

    path: str
    text: str
    tests: tuple[Span, ...]
    constants: tuple[Span, ...]

    @classmethod
    def parse(cls, path: str, text: str) -> TestModule:
        """The module's test functions (methods of Test* classes included) and module-level assignments."""
        tests: list[Span] = []
        constants: list[Span] = []
        for node in ast.parse(text).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                constants.append(_span(node, "", (n.id for t in targets for n in ast.walk(t)
                                                  if isinstance(n, ast.Name))))
                continue
            nodes = [(node, f"{path}::{getattr(node, 'name', '')}")]
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                nodes = [(m, f"{path}::{node.name}::{getattr(m, 'name', '')}") for m in node.body]
            for fn, node_id in nodes:
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and fn.name.startswith("test"):
                    tests.append(_span(fn, node_id, (n.id for n in ast.walk(fn) if isinstance(n, ast.Name))))
        return cls(path, text, tuple(tests), tuple(constants))

    def covering(self, words: Sequence[str]) -> set[str]:
        """Node ids of the tests naming any word, or using a module-level constant that names one; the whole
        module when a word is named anywhere else outside a test (a helper, a fixture, an import)."""
        pattern = re.compile("|".join(rf"(?<![\w-]){re.escape(w)}(?![\w-])" for w in words))
        hits: set[str] = set()
        for number, line in enumerate(self.text.splitlines(), 1):
            if not pattern.search(line):
                continue
            inside = {t.node_id for t in self.tests if t.first <= number <= t.last}
            if not inside:
                bound = {name for c in self.constants if c.first <= number <= c.last for name in c.names}
                inside = {t.node_id for t in self.tests if t.names & bound}
            if not inside:
                return {self.path}
            hits.update(inside)
        return hits


def load_tests(root: Path, dirs: Iterable[str]) -> list[TestModule]:
    """Every test_*.py module under the directories."""
    return [TestModule.parse(p.relative_to(root).as_posix(), p.read_text())
            for d in dirs for p in sorted((root / d).rglob("test_*.py")) if p.name != SELF_TEST]


def covering_tests(modules: Iterable[TestModule], words: Sequence[str]) -> tuple[str, ...]:
    """The pytest node ids that cover a mutant, whole modules first."""
    found: set[str] = set()
    for module in modules:
        found |= module.covering(words)
    return tuple(sorted(found, key=lambda n: ("::" in n, n)))


def load_equivalent(path: Path) -> dict[str, str]:
    """Mutant id -> why it is equivalent (no test can tell it from the original), from a small TOML file."""
    if not path.exists():
        return {}
    table = tomllib.loads(path.read_text()).get("equivalent", {})
    return {str(k): str(v) for k, v in table.items()}


def score(mutants: Iterable[Mutant]) -> dict[str, int]:
    """Counts by outcome; `total` leaves out the equivalent mutants, and timeouts count as killed."""
    tally = {o: 0 for o in ("killed", "timeout", "survived", "no-tests", "equivalent")}
    for m in mutants:
        if m.outcome is not None:
            tally[m.outcome] += 1
    tally["total"] = tally["killed"] + tally["timeout"] + tally["survived"] + tally["no-tests"]
    tally["score"] = tally["killed"] + tally["timeout"]
    return tally


def select(targets: Sequence[Target], only: str | None) -> list[Target]:
    """The targets named by --only (a full id, `module:function` suffix or a bare function name), else all."""
    if only is None:
        return list(targets)
    chosen = [t for t in targets if t.id == only or t.id.endswith(f".{only}") or t.id.endswith(f":{only}")]
    if len(chosen) != 1:
        names = ", ".join(t.id for t in chosen) or "none"
        raise LookupError(f"--only {only!r} names {len(chosen)} mutants ({names}); use one of the ids of --list")
    return chosen


# ------------------------------------------------------------------ running


def copy_tree(root: Path, dest: Path) -> None:
    """The files git knows (tracked, and untracked but not ignored) copied to dest: a tree to mutate."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = root / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run_tests(tree: Path, tests: Sequence[str], timeout: float) -> tuple[str, float, str]:
    """Run pytest on the copy (its k2cli first on the path), stopping at the first failure: passed, failed,
    timeout or none (nothing collected); the seconds it took and its output."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONPYCACHEPREFIX": str(tree / ".pycache")}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return "timeout", time.monotonic() - started, out
    finally:
        if proc.poll() is None:  # interrupted: take the test run (and what it started) down with us
            os.killpg(proc.pid, signal.SIGKILL)
    seconds = time.monotonic() - started
    return {0: "passed", 5: "none"}.get(proc.returncode, "failed"), seconds, out


def reason_of(output: str) -> str:
    """What pytest says killed a mutant (the first `E` line) after its summary line, cut to 300 characters."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else ""
    error = next((line[1:].strip() for line in lines if line.startswith("E ")), "")
    return f"{summary}: {error}"[:300] if error else summary


_OUTCOMES: dict[str, Outcome] = {"failed": "killed", "passed": "survived", "timeout": "timeout", "none": "no-tests"}
_STAMPS = itertools.count(int(time.time()) + 10, 10)


def _write(path: Path, text: str) -> None:
    """Write a module of the copy with an mtime of its own: Python must never reuse the .pyc of another version."""
    path.write_text(text)
    stamp = next(_STAMPS)
    os.utime(path, (stamp, stamp))


def run_mutant(tree: Path, mutant: Mutant, timeout: float) -> None:
    """Write the mutant into the copy, run its tests, restore the original; fills in the outcome."""
    if not mutant.tests:
        mutant.outcome, mutant.reason = "no-tests", "no test names its steps or function"
        return
    path = tree / mutant.target.path
    original = path.read_text()
    _write(path, mutate(original, mutant.target))
    try:
        verdict, mutant.seconds, out = run_tests(tree, mutant.tests, timeout)
    finally:
        _write(path, original)
    mutant.outcome = _OUTCOMES[verdict]
    mutant.reason = reason_of(out)


def plan(root: Path, targets: Sequence[Target], dirs: Sequence[str], equivalent: dict[str, str]) -> list[Mutant]:
    """A mutant per target with its steps and covering tests (equivalent ones marked, not run)."""
    modules = load_tests(root, dirs)
    steps = step_ids(root, targets, runtime_step_ids())
    mutants = []
    for target in targets:
        ids = steps[target.id]
        mutant = Mutant(target, tuple(sorted(ids)), covering_tests(modules, tokens(target, ids)))
        if target.id in equivalent:
            mutant.outcome, mutant.reason = "equivalent", equivalent[target.id]
        mutants.append(mutant)
    return mutants


def table(mutants: Sequence[Mutant]) -> str:
    """The results as a fixed-width table."""
    rows = [("mutant", "kind", "steps", "tests", "outcome", "s")]
    for m in mutants:
        rows.append((m.target.id, m.target.kind, str(len(m.steps)), str(len(m.tests)), m.outcome or "-",
                     f"{m.seconds:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def summary(mutants: Sequence[Mutant]) -> str:
    """The score, then the survivors and the equivalent mutants with their reasons."""
    tally = score(mutants)
    out = [f"score: {tally['score']}/{tally['total']} killed ({tally['timeout']} by timeout); "
           f"{tally['survived']} survived, {tally['no-tests']} without a covering test; "
           f"{tally['equivalent']} declared equivalent (not counted)"]
    survivors = [m for m in mutants if m.outcome in ("survived", "no-tests")]
    if survivors:
        out.append("survivors:")
        out += [f"  {m.target.id} ({m.outcome}; steps {', '.join(m.steps) or '-'})" for m in survivors]
    equivalent = [m for m in mutants if m.outcome == "equivalent"]
    if equivalent:
        out.append(f"equivalent (from {EQUIVALENT_FILE}):")
        out += [f"  {m.target.id}: {m.reason}" for m in equivalent]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="scripts/mutation.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--integration", action="store_true", help="also run the covering tests/integration tests")
    parser.add_argument("--only", metavar="NAME", help="one mutant (id from --list, or its function name)")
    parser.add_argument("--json", action="store_true", help="the results as JSON on stdout")
    parser.add_argument("--list", action="store_true", help="list the mutants and their covering tests; run none")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant's test run (default 900)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the covering tests")
    return parser.parse_args(argv)


def execute(args: argparse.Namespace, mutants: list[Mutant]) -> int:
    """Baseline, then every mutant in a private copy of the tree; the exit status."""
    to_run = [m for m in mutants if m.outcome is None]
    with tempfile.TemporaryDirectory(prefix="k2-mutation-") as tmp:
        tree = Path(tmp)
        copy_tree(ROOT, tree)
        union = sorted({t for m in to_run for t in m.tests})
        if union and not args.no_baseline:
            verdict, seconds, out = run_tests(tree, union, args.timeout * 2)
            if verdict != "passed":
                print(out[-3000:], file=sys.stderr)
                print(f"mutation: the covering tests do not pass unmutated ({verdict}, {seconds:.0f} s); "
                      "fix them first", file=sys.stderr)
                return 3
            _progress(args, f"baseline: {len(union)} test ids pass unmutated ({seconds:.0f} s)")
        for number, mutant in enumerate(to_run, 1):
            run_mutant(tree, mutant, args.timeout)
            _progress(args, f"[{number}/{len(to_run)}] {mutant.target.id}: {mutant.outcome} ({mutant.seconds:.0f} s)")
    return 1 if any(m.outcome in ("survived", "no-tests") for m in mutants) else 0


def _progress(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mutants; 0 when every one is killed (or declared equivalent), 1 otherwise, 2 usage, 3 no baseline."""
    args = parse_args(argv)
    # a SIGTERM unwinds like ^C: the running test run is killed and the copy of the tree removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.path.insert(0, str(ROOT))
    try:
        targets = select(discover(ROOT), args.only)
    except LookupError as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 2
    dirs = UNIT_DIRS + (INTEGRATION_DIRS if args.integration else ())
    mutants = plan(ROOT, targets, dirs, load_equivalent(ROOT / EQUIVALENT_FILE))
    if args.list:
        for m in mutants:
            print(f"{m.target.id} [{m.target.kind}] steps: {', '.join(m.steps) or '-'}")
            print("".join(f"    {t}\n" for t in m.tests) or "    (no covering test)\n", end="")
        return 0
    status = execute(args, mutants)
    if status == 3:
        return status
    if args.json:
        print(json.dumps({"mode": "integration" if args.integration else "unit", **score(mutants),
                          "mutants": [m.to_dict() for m in mutants]}, indent=2))
    else:
        print(table(mutants))
        print(summary(mutants))
    return status


if __name__ == "__main__":
    sys.exit(main())

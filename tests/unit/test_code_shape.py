"""Code shape: no class over 250 lines and no function over 60 anywhere in k2cli (the project's standard)."""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "k2cli"
CLASS_MAX = 250
FUNCTION_MAX = 60

# "path::qualified.name" -> why it may stay long. Each entry needs a reason; an entry that no longer breaks
# the limit fails the stale-entry test, so remove it once the definition is split.
ALLOWED: dict[str, str] = {}

Definition = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def _definitions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, Definition]]:
    """Every class and function under node (methods and nested ones too), with its dotted qualified name."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, Definition):
            name = f"{prefix}{child.name}"
            yield name, child
            yield from _definitions(child, f"{name}.")
        else:
            yield from _definitions(child, prefix)


def oversized(source: str, path: str) -> list[tuple[str, str]]:
    """(allow-list key, one line saying what to split) for every definition in source over its limit."""
    found = []
    for name, node in _definitions(ast.parse(source, filename=path)):
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        kind, limit = ("class", CLASS_MAX) if isinstance(node, ast.ClassDef) else ("function", FUNCTION_MAX)
        if lines > limit:
            found.append((f"{path}::{name}", f"{path}:{node.lineno}: {kind} {name} is {lines} lines (limit {limit})"))
    return found


def _package_findings() -> list[tuple[str, str]]:
    return [finding for module in sorted(PACKAGE.rglob("*.py"))
            for finding in oversized(module.read_text(), module.relative_to(ROOT).as_posix())]


def test_no_class_or_function_over_the_limits():
    over = [line for key, line in _package_findings() if key not in ALLOWED]
    assert not over, (
        f"{len(over)} definition(s) in k2cli are longer than the project allows (class <= {CLASS_MAX} lines, "
        f"function <= {FUNCTION_MAX} lines). Split each into well-named parts with one job each (helper functions, "
        "or a class of its own for a separate concern); do not raise the limits:\n  " + "\n  ".join(over))


def test_allow_list_has_no_stale_entries():
    still_long = {key for key, _ in _package_findings()}
    stale = sorted(key for key in ALLOWED if key not in still_long)
    assert not stale, "ALLOWED in tests/unit/test_code_shape.py names definitions that are no longer over the " \
                      "limits (or no longer exist); remove these entries:\n  " + "\n  ".join(stale)


def _function(name: str, lines: int, indent: str = "", tail: str = "") -> list[str]:
    """Source lines of a function `lines` long (def line included), plus any tail lines inside it."""
    return [f"{indent}def {name}():", *(f"{indent}    x{i} = {i}" for i in range(lines - 1)), *tail.splitlines()]


def test_the_check_counts_lines_and_names_methods_and_nested_functions():
    limit = FUNCTION_MAX
    source = [*_function("fits", limit), *_function("too_long", limit + 1),
              "class Box:", *_function("method", limit + 1, indent="    "),
              "def outer():", *_function("inner", limit + 1, indent="    ", tail="    return inner")]
    def_line = {line.strip()[4:-3]: number for number, line in enumerate(source, start=1) if "def " in line}
    found = [line for _, line in oversized("\n".join(source), "m.py")]
    assert found == [f"m.py:{def_line['too_long']}: function too_long is {limit + 1} lines (limit {limit})",
                     f"m.py:{def_line['method']}: function Box.method is {limit + 1} lines (limit {limit})",
                     f"m.py:{def_line['outer']}: function outer is {limit + 3} lines (limit {limit})",
                     f"m.py:{def_line['inner']}: function outer.inner is {limit + 1} lines (limit {limit})"]


def test_the_check_reads_the_whole_package():
    scanned = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    assert {"soak/runner.py", "consume/engine.py", "checks/checklists/deploy.py", "cli/consume.py"} <= scanned

"""Which label names the operators' PromQL (alert rules, dashboard panels) uses on which metric families."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# labels Prometheus adds or PromQL makes, never exported by k2 itself
TARGET_LABELS = frozenset({"job", "instance", "le", "quantile", "__name__", "alertname", "alertstate", "severity"})
FUNCTIONS = frozenset({
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "changes", "resets", "abs", "ceil",
    "floor", "round", "clamp", "clamp_min", "clamp_max", "exp", "ln", "log2", "log10", "sqrt", "absent",
    "absent_over_time", "histogram_quantile", "label_replace", "label_join", "scalar", "vector", "time", "timestamp",
    "sort", "sort_desc", "sgn", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "last_over_time", "quantile_over_time", "stddev_over_time", "present_over_time",
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf",
    "nan"})
SUFFIXES = ("_bucket", "_sum", "_count", "_created")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_IDENT = re.compile(r"(?<![a-zA-Z0-9_:$.])[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class Use:
    """Label names one expression uses: on a named family (selector) or on the whole expression (grouping)."""

    where: str  # file and position, for evidence
    expr: str
    families: tuple[str, ...]  # every metric name the expression reads
    selected: tuple[tuple[str, str], ...]  # (family, label) from name{label=...}
    grouped: tuple[str, ...]  # labels of by/without/on/ignoring/group_left/group_right


def family(sample: str) -> str:
    """The family of a sample name (histogram series without their suffix)."""
    for suffix in SUFFIXES:
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


def parse(expr: str, where: str = "") -> Use:
    """The label names one PromQL expression uses, and the metric names it reads."""
    text = _STRING.sub('""', expr)
    grouped = [label.strip() for body in _GROUPING.findall(text) for label in body.split(",") if label.strip()]
    text = _GROUPING.sub(" ", text)
    selected = []
    for name, body in _SELECTOR.findall(text):
        selected += [(family(name), label) for label in _MATCHER.findall(body) if name]
    bare = re.sub(r"\[[^\]]*\]", " ", _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text))
    names = {family(t) for t in _IDENT.findall(bare) if t.lower() not in FUNCTIONS and not t.startswith("__")}
    return Use(where, expr, tuple(sorted(names)), tuple(selected), tuple(grouped))


def _exprs(data: Any) -> Iterator[str]:
    """Every string under an "expr" key of a JSON or YAML document."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(data, list):
        for value in data:
            yield from _exprs(value)


def yaml_exprs(text: str) -> Iterator[str]:
    """The `expr:` values of a Prometheus rules file (plain, quoted or block scalars; k2 has no YAML parser)."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        match = re.match(r"^\s*(?:-\s*)?expr:\s*(.*)$", line)
        if not match:
            continue
        value = match.group(1).strip()
        if value[:1] in ("|", ">"):
            indent = line.index("expr:")  # the block is what is indented deeper than its key
            block = []
            for follow in lines[n + 1:]:
                if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                    break
                block.append(follow.strip())
            value = " ".join(block)
        elif value[:1] in ("'", '"') and value[-1:] == value[:1]:
            value = value[1:-1]
        yield value


def definitions(files: list[Path], root: Path) -> list[Use]:
    """The label uses of every expression in alert-rule YAML and Grafana dashboard JSON files."""
    uses = []
    for path in files:
        text = path.read_text()
        exprs = _exprs(json.loads(text)) if path.suffix == ".json" else yaml_exprs(text)
        uses += [parse(e, f"{path.relative_to(root)} #{n}") for n, e in enumerate(exprs, 1)]
    return uses


def problems(uses: list[Use], labels: dict[str, set[str]], rename: dict[str, str]) -> tuple[list[str], int]:
    """Labels an expression uses that the family it reads does not have; and how many expressions were judged.

    `labels` maps every family the running process exports to its label names; `rename` maps a family name of
    another exchange to this one's. An expression that also reads a family not in `labels` is not judged."""
    found, judged = [], 0
    for use in uses:
        families = [rename.get(f, f) for f in use.families]
        if not families or any(f not in labels for f in families):
            continue
        judged += 1
        known = set().union(*(labels[f] for f in families)) | TARGET_LABELS
        for fam, label in use.selected:
            fam = rename.get(fam, fam)
            if label not in labels[fam] | TARGET_LABELS:
                found.append(f"{use.where}: {fam} has no label {label!r} ({use.expr.strip()[:120]})")
        found += [f"{use.where}: no family it reads has label {label!r} ({use.expr.strip()[:120]})"
                  for label in use.grouped if label not in known]
    return found, judged

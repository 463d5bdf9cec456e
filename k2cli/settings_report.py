"""`k2 config show`'s engine: every setting in force with where it came from (secrets redacted), and warnings
about K2_* variables and threshold names that nothing in k2 reads."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2cli.redaction import redact_value
from k2cli.settings import Settings, Source, env_name, setting_names

# K2_* variables read outside the settings object: name -> who reads it
OTHER_VARIABLES: dict[str, str] = {
    "K2_CONFIG": "the k2.toml to read (like --config)",
    "K2_CACHE_DIR": "k2 stack install: the download cache",
    "K2_DEPLOY_DIR": "k2 stack: the repository's deploy directory",
    "K2_JAVA_HOME": "k2 stack: the Java runtime",
    "K2_INSTALL_COMPOSE_PLUGIN": "scripts/install.sh",
    "K2_PYTEST_RUNNER": "scripts/test.sh",
    "K2_PYTHON": "scripts/mutation.sh",
    "K2_FAULTS_REPORT": "the fault-injection suite",
    "K2_FAULTS_SOFT_DISK": "the fault-injection suite",
    "K2_TEST_CHILD_FAULT": "the test suite's child-process faults",
}
OTHER_PREFIXES: tuple[str, ...] = ("K2_STACK_",)  # `k2 stack`'s own knobs (k2cli/stack/config.py)

# settings whose empty default stands for a derived value: name -> the Settings property in force
DERIVED = {"data_dir": "resolved_data_dir", "iceberg_catalog_uri": "catalog_uri", "iceberg_warehouse": "warehouse",
           "dlq_dir": "dlq_path"}


@dataclass(frozen=True)
class Row:
    """One setting as `k2 config show` prints it."""

    name: str
    variable: str
    value: Any  # redacted, JSON-ready
    source: Source

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "variable": self.variable, "value": self.value, "source": self.source}


def _plain(value: Any) -> Any:
    """A value as JSON carries it: paths as text, tuples as lists, tables as objects."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def rows(settings: Settings, sources: Mapping[str, Source]) -> list[Row]:
    """Every setting in reference order with its value in force (secrets ***) and its source."""
    found = []
    for name in setting_names():
        value = getattr(settings, name)
        if name in DERIVED and str(value) in ("", "."):
            value = getattr(settings, DERIVED[name])
        variable = "K2_CONFIG" if name == "config_file" else env_name(name)
        found.append(Row(name, variable, _plain(redact_value(name, value)), sources.get(name, "default")))
    return found


def text_value(value: Any) -> str:
    """A value as one line of text: lists comma-separated, tables as name=value pairs."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _guess(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning for each K2_* variable that is neither a setting nor read elsewhere in k2."""
    settings = [env_name(n) for n in setting_names() if n != "config_file"]
    known = set(settings) | set(OTHER_VARIABLES)
    return [f"{var} is not a k2 setting and nothing in k2 reads it{_guess(var, [*settings, *OTHER_VARIABLES])}"
            for var in sorted(environ) if var.startswith("K2_") and var not in known
            and not var.startswith(OTHER_PREFIXES)]


def unknown_thresholds(thresholds: Mapping[str, float]) -> list[str]:
    """One warning for each [thresholds] / K2_THRESHOLDS name no checklist or soak criterion has."""
    from k2cli.checks.thresholds import THRESHOLDS
    from k2cli.soak.criteria import THRESHOLDS as SOAK_THRESHOLDS

    names = sorted({*THRESHOLDS, *SOAK_THRESHOLDS})
    return [f"threshold {name!r} (k2.toml [thresholds] or K2_THRESHOLDS) is not one k2 knows{_guess(name, names)}"
            for name in sorted(thresholds) if name not in names]


def report(settings: Settings, sources: Mapping[str, Source], environ: Mapping[str, str]) -> dict[str, Any]:
    """The document of `k2 config show --format json`: the settings and the warnings."""
    warnings = unknown_variables(environ) + unknown_thresholds(settings.thresholds)
    return {"config_file": settings.config_file or None,
            "settings": [r.to_dict() for r in rows(settings, sources)], "warnings": warnings}

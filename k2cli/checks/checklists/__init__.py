"""The catalogue of checklists `k2 validate` can run."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from k2cli.checks.context import Options
from k2cli.checks.model import Checklist
from k2cli.errors import ConfigError


@dataclass(frozen=True)
class ChecklistSpec:
    """A checklist name, its one-line summary, and the module whose build(options) makes it."""

    name: str
    summary: str
    module: str
    variants: tuple[Options, ...] = (Options(),)  # the option sets `k2 validate list` shows

    def build(self, options: Options) -> Checklist:
        """The checklist for these options."""
        builder: Callable[[Options], Checklist] = importlib.import_module(self.module).build
        return builder(options)


CHECKLISTS: dict[str, ChecklistSpec] = {spec.name: spec for spec in (
    ChecklistSpec("prereqs", "Every service healthy: broker, topics, registry, catalog, warehouse, Prometheus.",
                  "k2cli.checks.checklists.prereqs"),
    ChecklistSpec("e2e", "Consumer E2E steps 1-6: baseline, consumer run, snapshots, query, metrics, DLQ.",
                  "k2cli.checks.checklists.e2e"),
    ChecklistSpec("streaming", "Connect, first trade, 10 valid v2 trades, rate and latency for one exchange.",
                  "k2cli.checks.checklists.streaming"),
    ChecklistSpec("resilience", "Phase 5 P0/P1: TLS, rotation, heartbeat, bounded cache, memory metrics, alerts.",
                  "k2cli.checks.checklists.resilience"),
    ChecklistSpec("deploy", "Pre-deployment (--pre) or post-deployment (--post) checklist.",
                  "k2cli.checks.checklists.deploy", (Options(phase="pre"), Options(phase="post"))),
    ChecklistSpec("tech-debt", "Technical debt resolution checklist.", "k2cli.checks.checklists.tech_debt"),
)}


def spec(name: str) -> ChecklistSpec:
    """The checklist spec with this name, or a ConfigError listing the names."""
    try:
        return CHECKLISTS[name]
    except KeyError:
        raise ConfigError(f"unknown checklist {name!r}; choose one of {', '.join(CHECKLISTS)}",
                          setting="checklist") from None


def build(name: str, options: Options) -> Checklist:
    """Build a checklist by name."""
    return spec(name).build(options)


def every_checklist() -> list[Checklist]:
    """Every checklist in every listed variant (deploy: pre and post)."""
    return [s.build(variant) for s in CHECKLISTS.values() for variant in s.variants]

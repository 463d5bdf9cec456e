"""Prometheus answers given as plain values, for judging a step's logic without a Prometheus."""

from __future__ import annotations

from typing import Any

from k2cli.checks.context import Context
from k2cli.settings import Settings


class CannedPrometheus:
    """Answers each expression by the first key it contains (values, queries, series); no key: no data."""

    url = "http://canned"

    def __init__(self, values: dict[str, float] | None = None, queries: dict[str, list] | None = None,
                 series: dict[str, list] | None = None, targets: list | None = None, rules: list | None = None,
                 alerts: list | None = None) -> None:
        self._values, self._queries, self._series = values or {}, queries or {}, series or {}
        self._targets, self._rules, self._alerts = targets or [], rules or [], alerts or []
        self.asked: list[str] = []

    @staticmethod
    def _pick(table: dict[str, Any], expr: str, default: Any) -> Any:
        return next((v for k, v in table.items() if k in expr), default)

    def value(self, expr: str, at: float | None = None) -> float | None:
        self.asked.append(expr)
        return self._pick(self._values, expr, None)

    def query(self, expr: str, at: float | None = None) -> list:
        self.asked.append(expr)
        return self._pick(self._queries, expr, [])

    def series(self, expr: str, start: float, end: float, step: float) -> list:
        self.asked.append(expr)
        return self._pick(self._series, expr, [])

    def targets(self) -> list:
        return self._targets

    def rules(self) -> list:
        return self._rules

    def alerts(self) -> list:
        return self._alerts

    def close(self) -> None:
        """Nothing to close."""


def context_with(prom: CannedPrometheus | None = None, settings: Settings | None = None, **state: Any) -> Context:
    """A checklist context whose Prometheus (and any other state) is given."""
    ctx = Context(settings or Settings())
    if prom is not None:
        ctx.state["prometheus"] = prom
    ctx.state.update(state)
    return ctx


def target(job: str, health: str = "up") -> dict[str, Any]:
    """An active scrape target as /api/v1/targets lists it."""
    return {"labels": {"job": job}, "health": health, "lastScrape": "now", "scrapeUrl": f"http://x/{job}"}

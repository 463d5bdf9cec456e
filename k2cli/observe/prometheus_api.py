"""A small client for the Prometheus HTTP API (instant and range queries, targets, rules, alerts)."""

from __future__ import annotations

import math
from typing import Any

import httpx

from k2cli.errors import ServiceUnavailable

SETTING = "K2_PROMETHEUS_URL"
Points = list[tuple[float, float]]


class PrometheusError(ServiceUnavailable):
    """Prometheus answered, but not with data (bad query, HTTP error)."""


class Prometheus:
    """Read-only access to one Prometheus server."""

    def __init__(self, url: str, timeout: float = 5.0, setting: str = SETTING) -> None:
        self.url = url.rstrip("/")
        self.setting = setting  # what an error names: the setting or flag the URL came from
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def _get(self, path: str, **params: Any) -> Any:
        try:
            resp = self._http.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"Prometheus unreachable at {self.url}: {exc.__class__.__name__}",
                                     setting=self.setting) from None
        try:
            body = resp.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.url}{path} answered HTTP {resp.status_code} without JSON",
                                  setting=self.setting) from None
        if resp.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"Prometheus {path} failed: {body.get('error') or resp.status_code}",
                                  setting=self.setting)
        return body["data"]

    def ready(self) -> tuple[bool, str]:
        """Whether /-/ready answers 200, and its text."""
        try:
            resp = self._http.get("/-/ready")
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"Prometheus unreachable at {self.url}: {exc.__class__.__name__}",
                                     setting=self.setting) from None
        return resp.status_code == 200, resp.text.strip()[:200]

    def version(self) -> str:
        """The server version."""
        return str(self._get("/api/v1/status/buildinfo").get("version", "?"))

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series; scalars come back as one unlabelled series."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", **params)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return [({}, float(result[1]))]
        if kind != "vector":
            raise PrometheusError(f"query {expr!r} returned a {kind}, expected an instant vector", setting=self.setting)
        return [(series.get("metric", {}), float(series["value"][1])) for series in result]

    def samples(self, selector: str, window_s: int, at: float) -> list[tuple[dict[str, str], Points]]:
        """The raw samples of a selector over the window ending at `at`: (labels, [(time, value)]) per series."""
        data = self._get("/api/v1/query", query=f"{selector}[{int(window_s)}s]", time=f"{at:.3f}")
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"{selector} did not return a range of samples", setting=self.setting)
        return [(series.get("metric", {}), [(float(t), float(v)) for t, v in series.get("values", [])])
                for series in data.get("result", [])]

    def series(self, expr: str, start: float, end: float, step: float) -> Points:
        """(time, value) points of a range query's first series (empty when it returns none)."""
        data = self._get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:.3f}")
        result = data.get("result", [])
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of a query that should return at most one series (None when empty or NaN)."""
        series = self.query(expr, at)
        if not series:
            return None
        value = series[0][1]
        return None if math.isnan(value) else value

    def targets(self) -> list[dict[str, Any]]:
        """Every active scrape target."""
        return list(self._get("/api/v1/targets", state="active").get("activeTargets", []))

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule, with its group name under 'group'."""
        groups = self._get("/api/v1/rules").get("groups", [])
        return [{**rule, "group": group.get("name", "")} for group in groups for rule in group.get("rules", [])]

    def alerts(self) -> list[dict[str, Any]]:
        """Every pending or firing alert."""
        return list(self._get("/api/v1/alerts").get("alerts", []))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

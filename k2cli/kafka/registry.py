"""A small client for the Confluent Schema Registry REST API."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from k2cli.errors import K2Error, ServiceUnavailable

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SETTING = "K2_SCHEMA_REGISTRY_URL"


class UnknownSchemaId(K2Error):
    """The registry has no schema with this id (a permanent error for the record that names it)."""


class RegistryError(K2Error):
    """The registry answered with an error."""


class RegistryClient:
    """Register schemas and fetch them by id, caching what it has seen (ids are immutable)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE})
        self._by_id: dict[int, dict[str, Any]] = {}
        self._registered: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"Schema Registry unreachable at {self.url}: {exc.__class__.__name__}",
                                     setting=SETTING) from None

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register a schema under a subject (idempotent) and return its id."""
        text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
        key = (subject, text)
        with self._lock:
            if key in self._registered:
                return self._registered[key]
        resp = self._request("POST", f"/subjects/{subject}/versions", json={"schema": text})
        if resp.status_code >= 500:
            raise ServiceUnavailable(f"Schema Registry at {self.url} failed: HTTP {resp.status_code}",
                                     setting=SETTING)
        if resp.status_code != 200:
            raise RegistryError(f"registering {subject} failed: HTTP {resp.status_code} {resp.text[:200]}",
                                setting=SETTING)
        schema_id = int(resp.json()["id"])
        with self._lock:
            self._registered[key] = schema_id
            self._by_id[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        """The schema with this id; raises UnknownSchemaId when the registry has none."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        resp = self._request("GET", f"/schemas/ids/{schema_id}")
        if resp.status_code == 404:
            raise UnknownSchemaId(f"schema id {schema_id} is not in the registry")
        if resp.status_code >= 500:
            raise ServiceUnavailable(f"Schema Registry at {self.url} failed: HTTP {resp.status_code}",
                                     setting=SETTING)
        if resp.status_code != 200:
            raise RegistryError(f"fetching schema {schema_id} failed: HTTP {resp.status_code}", setting=SETTING)
        schema = json.loads(resp.json()["schema"])
        with self._lock:
            self._by_id[schema_id] = schema
        return schema

    def subjects(self) -> list[str]:
        """Every subject the registry knows."""
        resp = self._request("GET", "/subjects")
        if resp.status_code != 200:
            raise RegistryError(f"listing subjects failed: HTTP {resp.status_code}", setting=SETTING)
        return list(resp.json())

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

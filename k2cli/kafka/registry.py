"""A small client for the Confluent Schema Registry REST API.

Every call classifies failures the same way: no answer or HTTP 5xx is RegistryUnavailable (a
ServiceUnavailable: try again later); an answer that is not the registry API's own (a 404 without the
registry's error_code: a wrong path in the URL) is RegistryMisconfigured (exit 2, the same line whatever the
call); a refused credential (HTTP 401/403) or an untrusted certificate is RegistryRefused (exit 2, naming the setting
to fix, never retried); any other unexpected answer is RegistryError. All but RegistryRefused carry the HTTP status (0
when nothing answered). Credentials and the CA come from a RegistryAccess (k2cli/kafka/registry_access.py)."""

from __future__ import annotations

import json
import ssl
import threading
from typing import Any, NoReturn

import httpx

from k2cli.errors import K2Error, ServiceUnavailable
from k2cli.kafka.registry_access import CA_SETTING, RegistryAccess

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SETTING = "K2_SCHEMA_REGISTRY_URL"


class UnknownSchemaId(K2Error):
    """The registry has no schema with this id (a permanent error for the record that names it)."""


SUBJECTS_PAGE = 1000


class RegistryError(K2Error):
    """The registry answered with an error; `status` is its HTTP status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, setting=SETTING)
        self.status = status


class RegistryMisconfigured(RegistryError):
    """The URL answers, but not as a Schema Registry API (a wrong path): an operator's setting to fix."""

    exit_code = 2


class RegistryUnavailable(ServiceUnavailable):
    """The registry did not answer (`status` 0) or failed (HTTP 5xx)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, setting=SETTING)
        self.status = status


class RegistryRefused(K2Error):
    """The registry refused k2's credential (HTTP 401/403) or presented a certificate k2 does not trust: an
    operator's setting to fix, never retried."""

    exit_code = 2


def _tls_context(access: RegistryAccess) -> ssl.SSLContext | bool:
    """What httpx verifies an https registry with: the CA bundle at K2_SCHEMA_REGISTRY_CA_LOCATION, else certifi."""
    if not access.ca_location or not access.url.startswith("https:"):
        return True
    try:
        return ssl.create_default_context(cafile=access.ca_location)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
        raise RegistryRefused(f"cannot read the Schema Registry CA bundle {access.ca_location!r}: {reason}",
                              setting=CA_SETTING) from None


def _untrusted(exc: BaseException) -> str | None:
    """The certificate-verification failure behind an HTTP error, if that is what it is."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return link.verify_message or "certificate verify failed"
    return "certificate verify failed" if any("CERTIFICATE_VERIFY_FAILED" in str(link) for link in chain) else None


class RegistryClient:
    """Register schemas and fetch them by id, caching what it has seen (ids are immutable); list, inspect and
    delete subjects. Takes a RegistryAccess (a bare URL may carry user-info)."""

    def __init__(self, access: RegistryAccess | str, timeout: float = 5.0) -> None:
        self.access = access if isinstance(access, RegistryAccess) else RegistryAccess.of(access)
        self.url = self.access.url
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=_tls_context(self.access),
                                  headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE,
                                           **self.access.headers()})
        self._by_id: dict[int, dict[str, Any]] = {}
        self._registered: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, timeout: float = 5.0) -> RegistryClient:
        """A client for the registry the K2_SCHEMA_REGISTRY_* settings name, with their credentials and CA."""
        return cls(RegistryAccess.from_settings(settings), timeout)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            reason = _untrusted(exc)
            if reason is not None:
                raise RegistryRefused(f"Schema Registry at {self.url} presented a certificate k2 does not trust "
                                      f"({reason}); set {CA_SETTING} to its CA bundle", setting=CA_SETTING) from None
            raise RegistryUnavailable(f"Schema Registry unreachable at {self.url}: {exc.__class__.__name__}",
                                      status=0) from None
        if resp.status_code in (401, 403):
            self._refused(resp.status_code)
        return resp

    def _refused(self, status: int) -> NoReturn:
        """Raise RegistryRefused for HTTP 401/403, naming the credential setting to fix."""
        access = self.access
        if access.credential == "none":
            raise RegistryRefused(f"Schema Registry at {self.url} requires credentials (HTTP {status}): set "
                                  "K2_SCHEMA_REGISTRY_BASIC_AUTH or K2_SCHEMA_REGISTRY_BEARER_TOKEN",
                                  setting=access.credential_setting)
        what = "bearer token" if access.credential == "bearer" else "user name or password"
        raise RegistryRefused(f"Schema Registry at {self.url} refused k2's {what} (HTTP {status}): check "
                              f"{access.credential_setting}", setting=access.credential_setting)

    def check(self) -> None:
        """Fail at once unless the URL leads to a Schema Registry API (GET /config answers as one)."""
        resp = self._request("GET", "/config")
        if resp.status_code != 200 or not isinstance(_json(resp), dict):
            self._fail(resp, "reading the global configuration")

    def _not_the_api(self, resp: httpx.Response) -> bool:
        """A 404/405 without the registry's error_code: something else answered at this path."""
        body = _json(resp)
        return resp.status_code in (404, 405) and not (isinstance(body, dict) and "error_code" in body)

    def _fail(self, resp: httpx.Response, doing: str, detail: bool = False) -> NoReturn:
        """Raise for an unexpected answer: RegistryUnavailable on 5xx, RegistryMisconfigured when the answer is not
        the registry API's, else RegistryError."""
        status = resp.status_code
        if status >= 500:
            raise RegistryUnavailable(f"Schema Registry at {self.url} failed: HTTP {status}", status=status)
        if self._not_the_api(resp) or (status == 200 and _json(resp) is None):
            raise RegistryMisconfigured(f"{self.url} is not a Schema Registry API (HTTP {status}; check the URL's "
                                        "path)", status=status)
        raise RegistryError(f"{doing} failed: HTTP {status}" + (f" {resp.text[:200]}" if detail else ""),
                            status=status)

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register a schema under a subject (idempotent) and return its id."""
        text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
        key = (subject, text)
        with self._lock:
            if key in self._registered:
                return self._registered[key]
        resp = self._request("POST", f"/subjects/{subject}/versions", json={"schema": text})
        if resp.status_code != 200:
            self._fail(resp, f"registering {subject}", detail=True)
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
        if resp.status_code == 404 and not self._not_the_api(resp):
            raise UnknownSchemaId(f"schema id {schema_id} is not in the registry")
        if resp.status_code != 200:
            self._fail(resp, f"fetching schema {schema_id}")
        schema: dict[str, Any] = json.loads(resp.json()["schema"])
        with self._lock:
            self._by_id[schema_id] = schema
        return schema

    def subjects(self) -> list[str]:
        """Every subject the registry knows, page by page (Apicurio's API answers 1,000 at a time by default)."""
        out: list[str] = []
        seen: set[str] = set()
        while True:
            resp = self._request("GET", "/subjects", params={"offset": len(out), "limit": SUBJECTS_PAGE})
            if resp.status_code != 200:
                self._fail(resp, "listing subjects")
            answered = list(resp.json())
            page = [s for s in answered if s not in seen]  # a registry that ignores paging repeats itself
            out.extend(page)
            seen.update(page)
            if len(answered) < SUBJECTS_PAGE or not page:
                return out

    def latest(self, subject: str) -> dict[str, Any] | None:
        """The latest version of a subject (subject, version, id, schema text), or None when it is not registered."""
        resp = self._request("GET", f"/subjects/{subject}/versions/latest")
        if resp.status_code == 404 and not self._not_the_api(resp):
            return None
        if resp.status_code != 200:
            self._fail(resp, f"fetching the latest version of {subject}")
        body = _json(resp)
        if not isinstance(body, dict):
            raise RegistryError(f"fetching the latest version of {subject}: the answer is not a JSON object",
                                status=resp.status_code)
        return body

    def compatibility(self) -> str | None:
        """The global compatibility level (None when the answer does not name one)."""
        resp = self._request("GET", "/config")
        if resp.status_code != 200:
            self._fail(resp, "reading the global compatibility level")
        body = _json(resp)
        level = body.get("compatibilityLevel") if isinstance(body, dict) else None
        return str(level) if level else None

    def delete_subject(self, subject: str, *, permanent: bool = False) -> None:
        """Delete a subject: soft, or permanently (the registry wants a soft delete first)."""
        params = {"permanent": "true"} if permanent else None
        resp = self._request("DELETE", f"/subjects/{subject}", params=params)
        if resp.status_code != 200:
            self._fail(resp, f"deleting {subject}")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None

"""Secrets never leave k2: which settings are secrets (by name), and one `redact` for every text k2 writes.

A setting is a secret by its name, never by a list: its name (any case, `.` and `-` read as `_`) contains
`password`, `passwd`, `secret`, `token`, `credential` or `basic_auth`, ends in `_key` (`s3_secret_key`,
`s3_access_key`, `<exchange>_rest_api_key`) or is a private key's text (`ssl.key.pem`) — unless it names a place
or an address (`_location`, `_file`, `_path`, `_dir`, `_url`, `_uri`, `_endpoint`: `kafka_ssl_key_location` is
a path, shown as it is; a URL is shown with its own secrets hidden).

`redact` hides, in any text: the password of a URL's user-info (`scheme://user:***@host`), the value of a
secret-named assignment or query parameter (`sasl.password=***`, `?token=***`, `&sig=***`), bearer and
basic Authorization credentials, and every secret value registered from the settings in force (so a
password a library prints in its own message is hidden too).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO, cast

MASK = "***"
MIN_SCRUBBED = 6  # shorter values are not scrubbed as free text (too likely to be ordinary words)

_SECRET_PARTS = ("password", "passwd", "secret", "token", "credential", "basic_auth")
_SECRET_WORDS = frozenset({"apikey", "sig", "signature", "pwd", "auth", "authorization"})
_NAME_HINTS = ("pass", "pwd", "secret", "token", "credential", "auth", "key", "sig")  # in every secret name
_PLACE_ENDINGS = ("_location", "_file", "_path", "_dir", "_url", "_uri", "_endpoint")

_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"]*):(?P<pw>[^\s/'\"]*)@")
_ASSIGN = re.compile(r"(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z][A-Za-z0-9_.\-]*)(?P<sep>=|\":\s*)(?P<q>['\"])?"
                     r"(?P<value>(?(q)[^'\"\n]*|[^\s,&;#'\"]+))")
_AUTH = re.compile(r"(?i)\b(?P<head>authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic)\s+|bearer\s+(?=\S{16}))"
                   r"(?P<cred>[A-Za-z0-9._~+/\-]+=*)")

_lock = threading.Lock()
_values: tuple[str, ...] = ()  # registered secret values and their escaped spellings, longest first


def normalized(name: str) -> str:
    """A setting or property name as the rule reads it: lower case, `.` and `-` as `_`."""
    return re.sub(r"[.\-]", "_", name.strip().lower())


def is_secret_name(name: str) -> bool:
    """Whether a setting, property or query parameter of this name holds a secret."""
    n = normalized(name).removeprefix("k2_")
    if n.endswith(_PLACE_ENDINGS):
        return False
    return (any(part in n for part in _SECRET_PARTS) or n.endswith("_key") or "key_pem" in n
            or "private_key" in n or n in _SECRET_WORDS)


def _spellings(value: str) -> set[str]:
    """A value as it may appear in text: as is, JSON-escaped, XML-escaped, percent-encoded."""
    import json
    from urllib.parse import quote

    xml = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1], xml,
            xml.replace('"', "&quot;"), quote(value, safe=""), value.replace("|", "\\|")}


def register(values: Iterable[str]) -> None:
    """Scrub these secret values from every text `redact` sees from now on (short ones excepted)."""
    global _values
    fresh = {s for v in values if len(v) >= MIN_SCRUBBED for s in _spellings(v)}
    if fresh - set(_values):
        with _lock:
            _values = tuple(sorted(set(_values) | fresh, key=len, reverse=True))


def clear() -> None:
    """Forget every registered value (tests)."""
    global _values
    with _lock:
        _values = ()


def url_secrets(text: str) -> list[str]:
    """The secrets a URL-like value carries: user-info passwords and secret query parameters."""
    found = [m["pw"] for m in _USERINFO.finditer(text)]
    found += [m["value"] for m in _ASSIGN.finditer(text) if is_secret_name(m["name"])]
    return [s for s in found if s and s != MASK]


def secret_values(name: str, value: Any) -> list[str]:
    """Every secret a setting's value holds: all of it under a secret name, else what its URLs carry."""
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in secret_values(str(k), v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [s for v in value for s in secret_values(name, v)]
    if not isinstance(value, str) or not value:
        return []
    if is_secret_name(name):  # user:pass also hides the pass alone
        return [value, *([value.split(":", 1)[1]] if "basic_auth" in normalized(name) and ":" in value else [])]
    return url_secrets(value)


def register_settings(items: Iterable[tuple[str, Any]]) -> None:
    """Register the secrets of (name, value) settings in force."""
    register([s for name, value in items for s in secret_values(name, value)])


def _assignment(m: re.Match[str]) -> str:
    json_scalar = m["sep"] != "=" and not m["q"]  # a number, true, false or null stays valid JSON
    if json_scalar or not is_secret_name(m["name"]) or not m["value"] or m["value"] == MASK:
        return m[0]
    return f"{m['name']}{m['sep']}{m['q'] or ''}{MASK}"


def redact(text: str) -> str:
    """The text with every secret k2 can recognise shown as ***."""
    if not text:
        return text
    for value in _values:
        if value in text:
            text = text.replace(value, MASK)
    if "://" in text:
        text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["pw"] else m[0], text)
    lower = text.lower()
    if ("=" in text or '":' in text) and any(hint in lower for hint in _NAME_HINTS):  # a cheap test first
        text = _ASSIGN.sub(_assignment, text)
    return _AUTH.sub(lambda m: m["head"] + MASK, text) if ("bearer" in lower or "authorization" in lower) else text


def redact_value(name: str, value: Any) -> Any:
    """A setting's value fit to show: all of it masked under a secret name, else its URLs redacted."""
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(name, v) for v in value)
    if is_secret_name(name) and value not in ("", None):
        return MASK
    return redact(value) if isinstance(value, str) else value


class RedactingStream:
    """A text stream that redacts everything written through it (sys.stdout and sys.stderr of `k2`)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redacting(stream: TextIO) -> TextIO:
    """The stream, with everything written through it redacted."""
    return stream if isinstance(stream, RedactingStream) else cast(TextIO, RedactingStream(stream))


def guard_std_streams() -> None:
    """Route sys.stdout and sys.stderr through `redact` (once per process)."""
    import sys

    for attr in ("stdout", "stderr"):
        stream = getattr(sys, attr)
        if stream is not None:
            setattr(sys, attr, redacting(stream))

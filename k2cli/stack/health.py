"""Small, dependency-free probes: is a port taken, does an HTTP endpoint answer, wait for a condition."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k2cli.jsonutil import dumps


@dataclass(frozen=True)
class Health:
    """The outcome of one health probe."""

    ok: bool
    detail: str


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """True when a listener could bind host:port right now (nothing else holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """GET a URL; returns (status, body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() if exc.fp else b""
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


def http_json(method: str, url: str, body: Any = None, timeout: float = 5.0,
              content_type: str = "application/json") -> tuple[int, Any]:
    """Send a JSON request; returns (status, decoded body or None)."""
    data = None if body is None else dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read() if exc.fp else b""
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def wait_for(check: Callable[[], Health], timeout: float, *, interval: float = 0.5,
             alive: Callable[[], bool] | None = None) -> Health:
    """Poll `check` until it is ok, the process dies (`alive` returns False), or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = Health(False, "not checked yet")
    while True:
        last = check()
        if last.ok:
            return last
        if alive is not None and not alive():
            return Health(False, f"process exited ({last.detail})")
        if time.monotonic() >= deadline:
            return Health(False, f"not healthy after {timeout:.0f}s ({last.detail})")
        time.sleep(interval)

"""A Toxiproxy server owned by the fault suite (loopback, free ports), driven through its HTTP API.

The server is k2cli.stack.toxiproxy's cached build; `Toxiproxy.start()` launches it, `proxy()` puts a named proxy in
front of a service and `toxic()` adds a fault to it (latency, bandwidth, reset_peer, timeout, ...) until removed.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx

from tests.integration.stream_support import free_port

Stream = Literal["upstream", "downstream"]


class ToxiproxyError(AssertionError):
    """The Toxiproxy API refused a request."""


class Toxiproxy:
    """One toxiproxy-server process and its HTTP API."""

    def __init__(self, binary: Path, log: Path) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen([str(binary), "-host", "127.0.0.1", "-port", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.http = httpx.Client(base_url=self.api, timeout=10)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/version").status_code == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"toxiproxy-server did not start (exit {self.proc.returncode}); log: "
                                     f"{log.read_text(errors='replace')[-1500:]}")
            time.sleep(0.1)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self.http.request(method, path, json=body)
        if resp.status_code >= 300:
            raise ToxiproxyError(f"toxiproxy {method} {path}: HTTP {resp.status_code} {resp.text.strip()}")
        return resp.json() if resp.content else None

    def proxy(self, name: str, upstream: str, listen_port: int = 0) -> int:
        """Create a proxy 127.0.0.1:<port> -> upstream (host:port); its listen port."""
        listen = f"127.0.0.1:{listen_port or free_port()}"
        created = self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream,
                                                  "enabled": True})
        return int(created["listen"].rsplit(":", 1)[1])

    def add_toxic(self, proxy: str, kind: str, stream: Stream = "downstream", **attributes: int) -> str:
        """Add a toxic to a proxy's connections in one direction (all of them, new ones too); its name."""
        name = f"{kind}_{stream}"
        self._call("POST", f"/proxies/{proxy}/toxics", {"name": name, "type": kind, "stream": stream,
                                                        "toxicity": 1.0, "attributes": attributes})
        return name

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/proxies/{proxy}/toxics"))

    @contextlib.contextmanager
    def toxic(self, proxy: str, kind: str, streams: tuple[Stream, ...] = ("downstream",),
              **attributes: int) -> Iterator[None]:
        """A toxic on the proxy for the duration of the block."""
        names = [self.add_toxic(proxy, kind, s, **attributes) for s in streams]
        try:
            yield
        finally:
            for name in names:
                self.remove_toxic(proxy, name)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def binary() -> Path:
    """The cached toxiproxy-server, built from the Go module proxy when missing (scripts/install.sh builds it)."""
    from k2cli.stack.config import load_stack_config
    from k2cli.stack.paths import StackPaths
    from k2cli.stack.toxiproxy import ensure_toxiproxy

    return ensure_toxiproxy(StackPaths.for_home(load_stack_config().home))

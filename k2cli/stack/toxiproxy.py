"""Toxiproxy, the TCP proxy the fault suite injects network faults with, built from the Go module proxy.

`go install github.com/Shopify/toxiproxy/v2/cmd/server@VERSION` into the cache (the binary is named `server`,
kept as `toxiproxy-server`); Go's own module and build caches make a rebuild after a cache wipe quick.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from k2cli.stack.errors import InstallError
from k2cli.stack.paths import StackPaths

TOXIPROXY_VERSION = "v2.5.0"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def toxiproxy_binary(paths: StackPaths) -> Path:
    """Where the cached toxiproxy-server binary lives (present or not)."""
    return paths.cache / f"toxiproxy-{TOXIPROXY_VERSION}" / "toxiproxy-server"


def ensure_toxiproxy(paths: StackPaths, progress: Progress = _quiet) -> Path:
    """The toxiproxy-server binary, built with `go install` from the Go module proxy on first use."""
    from k2cli.stack.install import _run

    binary = toxiproxy_binary(paths)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go")
    if go is None:
        raise InstallError("Toxiproxy (for the fault suite) is built with Go, which is not installed "
                           "(apt-get install golang-go, or Go from go.dev)")
    progress(f"building Toxiproxy {TOXIPROXY_VERSION} from the Go module proxy")
    tmp = binary.parent.with_name(binary.parent.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = dict(os.environ, GOBIN=str(tmp), CGO_ENABLED="0")
    _run([go, "install", "-trimpath", f"{TOXIPROXY_MODULE}@{TOXIPROXY_VERSION}"], what="building Toxiproxy",
         log=paths.cache / "install.log", env=env, timeout=900)
    built = tmp / "server"
    if not built.is_file():
        raise InstallError(f"building Toxiproxy: go install left no binary in {tmp}")
    built.rename(tmp / binary.name)
    shutil.rmtree(binary.parent, ignore_errors=True)
    tmp.rename(binary.parent)
    return binary

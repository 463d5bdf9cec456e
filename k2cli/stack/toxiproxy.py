"""Toxiproxy, the TCP proxy the fault suite injects network faults with, built from the Go module proxy.

`go install github.com/Shopify/toxiproxy/v2/cmd/server@VERSION` into the cache (the binary is named `server`,
kept as `toxiproxy-server`); Go's own module and build caches make a rebuild after a cache wipe quick.
"""

from __future__ import annotations

from pathlib import Path

from k2cli.stack.gobuild import go_binary
from k2cli.stack.paths import StackPaths
from k2cli.stack.progress import Progress, quiet

TOXIPROXY_VERSION = "v2.5.0"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"


def toxiproxy_binary(paths: StackPaths) -> Path:
    """Where the cached toxiproxy-server binary lives (present or not)."""
    return paths.cache / f"toxiproxy-{TOXIPROXY_VERSION}" / "toxiproxy-server"


def ensure_toxiproxy(paths: StackPaths, progress: Progress = quiet) -> Path:
    """The toxiproxy-server binary, built with `go install` from the Go module proxy on first use."""
    return go_binary(paths, TOXIPROXY_MODULE, TOXIPROXY_VERSION, toxiproxy_binary(paths), "Toxiproxy",
                     "for the fault suite", progress)

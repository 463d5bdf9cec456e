"""Tools the stack builds with `go install` from the Go module proxy into the cache (Toxiproxy, versitygw)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from k2cli.stack.errors import InstallError
from k2cli.stack.paths import StackPaths
from k2cli.stack.progress import Progress, quiet


def go_binary(paths: StackPaths, module: str, version: str, binary: Path, what: str, needed_for: str,
              progress: Progress = quiet, timeout: float = 900) -> Path:
    """`binary` (in the cache), built from `module@version` on first use; Go names it after the module's last part."""
    from k2cli.stack.install import _run

    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go")
    if go is None:
        raise InstallError(f"{what} ({needed_for}) is built with Go, which is not installed "
                           "(apt-get install golang-go, or Go from go.dev)")
    progress(f"building {what} {version} from the Go module proxy")
    tmp = binary.parent.with_name(binary.parent.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = dict(os.environ, GOBIN=str(tmp), CGO_ENABLED="0")
    _run([go, "install", "-trimpath", f"{module}@{version}"], what=f"building {what}",
         log=paths.cache / "install.log", env=env, timeout=timeout)
    built = tmp / module.rsplit("/", 1)[-1]
    if not built.is_file():
        raise InstallError(f"building {what}: go install left no binary in {tmp}")
    built.rename(tmp / binary.name)
    shutil.rmtree(binary.parent, ignore_errors=True)
    tmp.rename(binary.parent)
    return binary

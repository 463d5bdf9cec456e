"""Install the scale-out parts of the stack: versitygw (S3 over a directory, Go module proxy) and the Iceberg REST
catalog server's jars (Maven Central). Both land in the cache like the rest of the stack."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from k2cli.stack.errors import InstallError
from k2cli.stack.paths import StackPaths

VERSITYGW_VERSION = "v1.8.0"
VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
ICEBERG_REST_VERSION = "1.11.0"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def versitygw_binary(paths: StackPaths) -> Path:
    """Where the cached versitygw binary lives (present or not)."""
    return paths.cache / f"versitygw-{VERSITYGW_VERSION}" / "versitygw"


def ensure_versitygw(paths: StackPaths, progress: Progress = _quiet) -> Path:
    """The versitygw binary, built with `go install` from the Go module proxy on first use."""
    from k2cli.stack.install import _run

    binary = versitygw_binary(paths)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go")
    if go is None:
        raise InstallError("versitygw (the stack's S3 server) is built with Go, which is not installed "
                           "(apt-get install golang-go, or Go from go.dev)")
    progress(f"building versitygw {VERSITYGW_VERSION} from the Go module proxy")
    tmp = binary.parent.with_name(binary.parent.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = dict(os.environ, GOBIN=str(tmp), CGO_ENABLED="0")
    _run([go, "install", "-trimpath", f"{VERSITYGW_MODULE}@{VERSITYGW_VERSION}"], what="building versitygw",
         log=paths.cache / "install.log", env=env, timeout=1200)
    if not (tmp / binary.name).is_file():
        raise InstallError(f"building versitygw: go install left no binary in {tmp}")
    shutil.rmtree(binary.parent, ignore_errors=True)
    tmp.rename(binary.parent)
    return binary


def rest_catalog_libs(paths: StackPaths) -> Path:
    """The directory of the REST catalog server's jars (present or not)."""
    return paths.cache / f"iceberg-rest-{ICEBERG_REST_VERSION}" / "libs"


def ensure_rest_catalog(paths: StackPaths, progress: Progress = _quiet) -> Path:
    """The REST catalog server's jars, fetched from Maven Central on first use."""
    from k2cli.stack.install import _mvn_copy

    libs = rest_catalog_libs(paths)
    if (libs.parent / ".complete").is_file():
        return libs
    progress(f"fetching the Apache Iceberg {ICEBERG_REST_VERSION} REST catalog jars from Maven Central")
    tmp = libs.parent.with_name(libs.parent.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _mvn_copy(paths, "restcatalog", {"iceberg.version": ICEBERG_REST_VERSION}, tmp / "libs",
              "fetching the Iceberg REST catalog jars", ["-DincludeScope=runtime"])
    jars = sorted(p.name for p in (tmp / "libs").glob("*.jar"))
    if f"iceberg-core-{ICEBERG_REST_VERSION}-tests.jar" not in jars:
        raise InstallError("fetching the Iceberg REST catalog jars: the iceberg-core tests jar is missing")
    (tmp / ".complete").write_text("\n".join(jars) + "\n")
    shutil.rmtree(libs.parent, ignore_errors=True)
    tmp.rename(libs.parent)
    return libs

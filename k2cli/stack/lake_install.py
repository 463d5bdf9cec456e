"""Install the scale-out parts of the stack: versitygw (S3 over a directory, Go module proxy) and the Iceberg REST
catalog server's jars (Maven Central). Both land in the cache like the rest of the stack."""

from __future__ import annotations

from pathlib import Path

from k2cli.stack.gobuild import go_binary
from k2cli.stack.paths import StackPaths
from k2cli.stack.progress import Progress, quiet

VERSITYGW_VERSION = "v1.8.0"
VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
ICEBERG_REST_VERSION = "1.11.0"


def versitygw_binary(paths: StackPaths) -> Path:
    """Where the cached versitygw binary lives (present or not)."""
    return paths.cache / f"versitygw-{VERSITYGW_VERSION}" / "versitygw"


def ensure_versitygw(paths: StackPaths, progress: Progress = quiet) -> Path:
    """The versitygw binary, built with `go install` from the Go module proxy on first use."""
    return go_binary(paths, VERSITYGW_MODULE, VERSITYGW_VERSION, versitygw_binary(paths), "versitygw",
                     "the stack's S3 server", progress, timeout=1200)


def rest_catalog_libs(paths: StackPaths) -> Path:
    """The directory of the REST catalog server's jars (present or not)."""
    return paths.cache / f"iceberg-rest-{ICEBERG_REST_VERSION}" / "libs"


def ensure_rest_catalog(paths: StackPaths, progress: Progress = quiet) -> Path:
    """The REST catalog server's jars, fetched from Maven Central on first use."""
    from k2cli.stack.install import mvn_libs

    tests_jar = f"iceberg-core-{ICEBERG_REST_VERSION}-tests.jar"
    return mvn_libs(paths, rest_catalog_libs(paths), "restcatalog", {"iceberg.version": ICEBERG_REST_VERSION},
                    f"fetching the Apache Iceberg {ICEBERG_REST_VERSION} REST catalog jars",
                    lambda jars: tests_jar in jars, f"the iceberg-core tests jar ({tests_jar})", progress)

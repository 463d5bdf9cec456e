"""The stack's optional scale-out services (`k2 stack up --with s3,rest-catalog`): versitygw serving a directory
as S3, and the Iceberg REST catalog server (JDBC catalog in SQLite, data and metadata in that S3 bucket).

Both bind 127.0.0.1 only; ports K2_STACK_S3_PORT (7070) and K2_STACK_REST_CATALOG_PORT (8181). The S3 keys are
local-only fixed values, given to the processes through the environment or a file only the owner reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from k2cli.stack import install
from k2cli.stack.config import _int_env
from k2cli.stack.health import Health, http_get
from k2cli.stack.lake_install import (
    ICEBERG_REST_VERSION,
    VERSITYGW_VERSION,
    ensure_rest_catalog,
    ensure_versitygw,
    rest_catalog_libs,
    versitygw_binary,
)
from k2cli.stack.paths import DATA_DIR
from k2cli.stack.progress import Progress, quiet
from k2cli.stack.services import Service

S3_BUCKET = "k2-lake"
S3_ACCESS_KEY = "k2"
S3_SECRET_KEY = "k2-local-s3-secret"  # the local stack's own; never a real credential
S3_REGION = "us-east-1"
OPTIONAL = ("s3", "rest-catalog")


def s3_port() -> int:
    return _int_env("K2_STACK_S3_PORT", 7070)


def rest_catalog_port() -> int:
    return _int_env("K2_STACK_REST_CATALOG_PORT", 8181)


def client_settings() -> dict[str, str]:
    """The K2_* settings that point k2 at these two services (printed by docs, used by tests)."""
    return {"K2_ICEBERG_CATALOG_URI": f"http://127.0.0.1:{rest_catalog_port()}",
            "K2_S3_ENDPOINT": f"http://127.0.0.1:{s3_port()}", "K2_S3_ACCESS_KEY": S3_ACCESS_KEY,
            "K2_S3_SECRET_KEY": S3_SECRET_KEY, "K2_S3_REGION": S3_REGION}


class ObjectStore(Service):
    """versitygw: the S3 API over a local directory; bucket `k2-lake` is a directory under it."""

    name = "s3"
    start_timeout = 30.0

    def ports(self) -> list[int]:
        return [s3_port()]

    def listen(self) -> str:
        return f"http://127.0.0.1:{s3_port()} (bucket {S3_BUCKET})"

    def install(self, progress: Progress = quiet) -> None:
        ensure_versitygw(self.paths, progress)

    def prepare(self, progress: Progress = quiet) -> None:
        (self.dir / "data" / S3_BUCKET).mkdir(parents=True, exist_ok=True)
        (self.dir / "meta").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [str(versitygw_binary(self.paths)), "--port", f"127.0.0.1:{s3_port()}", "--quiet",
                "--health", "/health", "posix", "--sidecar", str(self.dir / "meta"), str(self.dir / "data")]

    def env(self) -> dict[str, str]:
        return dict(os.environ, ROOT_ACCESS_KEY=S3_ACCESS_KEY, ROOT_SECRET_KEY=S3_SECRET_KEY)

    def health(self) -> Health:
        status, _ = http_get(f"http://127.0.0.1:{s3_port()}/health", timeout=5)
        if status != 200:
            return Health(False, f"GET /health: {'no answer' if status == 0 else status}")
        return Health(True, f"versitygw {VERSITYGW_VERSION}, bucket {S3_BUCKET}")


class RestCatalog(Service):
    """Apache Iceberg's REST catalog (adapter + servlet from its test jars) on Jetty, via our launcher."""

    name = "rest-catalog"
    start_timeout = 90.0

    def ports(self) -> list[int]:
        return [rest_catalog_port()]

    def listen(self) -> str:
        return f"http://127.0.0.1:{rest_catalog_port()}"

    def install(self, progress: Progress = quiet) -> None:
        if not (rest_catalog_libs(self.paths).parent / ".complete").is_file() and install.find_mvn() is None:
            install.apt_install(["maven"], progress)
        ensure_rest_catalog(self.paths, progress)

    def _properties(self) -> Path:
        return self.dir / "catalog.properties"

    def prepare(self, progress: Progress = quiet) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        props = {
            "k2.host": "127.0.0.1", "k2.port": rest_catalog_port(),
            "catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
            "uri": f"jdbc:sqlite:{self.dir / 'catalog.db'}", "jdbc.schema-version": "V1",
            "warehouse": f"s3://{S3_BUCKET}/warehouse", "io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
            "s3.endpoint": f"http://127.0.0.1:{s3_port()}", "s3.path-style-access": "true",
            "s3.access-key-id": S3_ACCESS_KEY, "s3.secret-access-key": S3_SECRET_KEY, "client.region": S3_REGION,
        }
        path = self._properties()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{k}={v}\n" for k, v in props.items()))

    def command(self) -> list[str]:
        jdk = install.required(install.find_java(install.KAFKA_JAVA), "Java 17+", "openjdk-17-jre-headless")
        launcher = DATA_DIR / "restcatalog" / "K2RestCatalog.java"
        return [str(jdk.java), "-Xmx256m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                "-cp", f"{rest_catalog_libs(self.paths)}/*", str(launcher), str(self._properties())]

    def health(self) -> Health:
        status, _ = http_get(f"{self.listen()}/v1/config", timeout=5)
        if status != 200:
            return Health(False, f"GET /v1/config: {'no answer' if status == 0 else status}")
        return Health(True, f"Iceberg REST catalog {ICEBERG_REST_VERSION} (JDBC/SQLite), warehouse "
                            f"s3://{S3_BUCKET}/warehouse")


def optional_services() -> dict[str, type[Service]]:
    """The services `--with` names, by name, in start order (S3 before the catalog that writes to it)."""
    return {"s3": ObjectStore, "rest-catalog": RestCatalog}

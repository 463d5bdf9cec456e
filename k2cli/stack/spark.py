"""Spark for reading k2's lake: pyspark in a virtualenv of its own plus the Iceberg runtime and JDBC drivers.

pyspark comes from PyPI into `<cache>/spark-<version>/venv` (not the project's locked venv); the jars from
Maven Central through `k2cli/data/stack/spark/pom.xml` into `<cache>/spark-<version>/jars`. The Spark read test
and the peers benchmark (benchmarks/peers) both use this install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from k2cli.stack.errors import InstallError
from k2cli.stack.paths import StackPaths

PYSPARK_VERSION = "3.5.9"
ICEBERG_SPARK_VERSION = "1.12.0"
SPARK_JAVA = 17


@dataclass(frozen=True)
class SparkInstall:
    """Where pyspark and its jars are."""

    home: Path
    python: Path  # the venv's interpreter, which imports pyspark
    jars: tuple[Path, ...]
    java_home: Path | None


def spark_home(paths: StackPaths) -> Path:
    return paths.cache / f"spark-{PYSPARK_VERSION}-iceberg-{ICEBERG_SPARK_VERSION}"


def _java_home() -> Path | None:
    from k2cli.stack.install import find_java

    jdk = find_java(SPARK_JAVA)
    return jdk.java.parent.parent if jdk else None


def find_spark(paths: StackPaths) -> SparkInstall | None:
    """The installed Spark, or None when `k2 stack install` has not installed it."""
    home = spark_home(paths)
    python = home / "venv" / "bin" / "python"
    if not (home / ".complete").is_file() or not python.exists():
        return None
    jars = tuple(sorted((home / "jars").glob("*.jar")))
    return SparkInstall(home=home, python=python, jars=jars, java_home=_java_home())


def ensure_spark(paths: StackPaths, progress: Callable[[str], None] | None = None) -> SparkInstall:
    """pyspark and the Iceberg runtime jar, installed into the cache on first use."""
    from k2cli.stack.install import _mvn_copy, _run

    say = progress or (lambda _msg: None)
    found = find_spark(paths)
    if found is not None:
        return found
    home = spark_home(paths)
    tmp = home.with_name(home.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    say(f"installing pyspark {PYSPARK_VERSION} from PyPI into its own venv (about 320 MB)")
    log = paths.cache / "install.log"
    _run([sys.executable, "-m", "venv", str(tmp / "venv")], what="creating Spark's venv (python3-venv)", log=log)
    # the venv is renamed below: only its python is run (scripts in bin/ keep the old path in their shebang)
    _run([str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          f"pyspark=={PYSPARK_VERSION}"], what=f"pip install pyspark=={PYSPARK_VERSION}", log=log)
    say(f"fetching iceberg-spark-runtime {ICEBERG_SPARK_VERSION} and JDBC drivers from Maven Central")
    _mvn_copy(paths, "spark", {"iceberg.version": ICEBERG_SPARK_VERSION}, tmp / "jars", "fetching Spark jars",
              ["-DexcludeTransitive=true"])
    if not any(p.name.startswith("iceberg-spark-runtime") for p in (tmp / "jars").glob("*.jar")):
        raise InstallError("fetching Spark jars: iceberg-spark-runtime is missing from the download")
    (tmp / ".complete").write_text(f"pyspark {PYSPARK_VERSION}, iceberg {ICEBERG_SPARK_VERSION}\n")
    shutil.rmtree(home, ignore_errors=True)
    tmp.rename(home)
    found = find_spark(paths)
    if found is None:  # pragma: no cover - just written
        raise InstallError(f"Spark install at {home} is incomplete")
    return found


def spark_env(spark: SparkInstall) -> dict[str, str]:
    """The environment to run the Spark venv's python in (JAVA_HOME of a Java 17+, no inherited PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "SPARK_HOME")}
    if spark.java_home is not None:
        env["JAVA_HOME"] = str(spark.java_home)
    env["PYSPARK_PYTHON"] = str(spark.python)
    return env


def spark_version(spark: SparkInstall) -> str:
    """pyspark's version as the venv reports it (a check that the install runs)."""
    out = subprocess.run([str(spark.python), "-c", "import pyspark; print(pyspark.__version__)"],
                         capture_output=True, text=True, env=spark_env(spark), timeout=60)
    return out.stdout.strip() or f"broken: {out.stderr.strip()[-200:]}"


def jdbc_uri(sql_uri: str) -> tuple[str, dict[str, str]]:
    """The JDBC URL (and user/password properties) of a k2 SQL catalog URI (sqlite:/// or postgresql://)."""
    from urllib.parse import urlparse

    if sql_uri.startswith("sqlite:///"):
        return "jdbc:sqlite:" + sql_uri[len("sqlite:///"):], {}
    url = urlparse(sql_uri)
    if not url.scheme.startswith("postgresql"):
        raise ValueError(f"not a SQL catalog URI Spark can reach through JDBC: {url.scheme}://…")
    props = {"jdbc.user": url.username or "", "jdbc.password": url.password or ""}
    return f"jdbc:postgresql://{url.hostname}:{url.port or 5432}{url.path}", props


def catalog_conf(spark: SparkInstall, name: str, sql_uri: str, warehouse: str,
                 extra_jars: tuple[Path, ...] = ()) -> dict[str, str]:
    """Spark settings that open a k2 SQL catalog as Spark catalog `name` (Iceberg's JdbcCatalog, schema V1)."""
    url, props = jdbc_uri(sql_uri)
    prefix = f"spark.sql.catalog.{name}"
    conf = {
        "spark.jars": ",".join(str(p) for p in (*spark.jars, *extra_jars)),
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        f"{prefix}.uri": url,
        # pyiceberg's SqlCatalog tables have no iceberg_type column: Iceberg's V0/V1 schema names them alike
        f"{prefix}.jdbc.schema-version": "V1",
        f"{prefix}.warehouse": warehouse,
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
    }
    conf.update({f"{prefix}.{k}": v for k, v in props.items()})
    return conf

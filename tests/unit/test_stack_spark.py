"""Spark install layout and the JDBC form of k2's SQL catalog URIs (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from k2cli.stack.paths import StackPaths
from k2cli.stack.spark import SparkInstall, catalog_conf, find_spark, jdbc_uri


def test_jdbc_uri_of_sqlite_and_postgresql() -> None:
    assert jdbc_uri("sqlite:////tmp/x/catalog.db") == ("jdbc:sqlite:/tmp/x/catalog.db", {})
    assert jdbc_uri("postgresql+psycopg2://k2:pw@localhost:5432/k2_catalog") == (
        "jdbc:postgresql://localhost:5432/k2_catalog", {"jdbc.user": "k2", "jdbc.password": "pw"})
    with pytest.raises(ValueError):
        jdbc_uri("http://rest/catalog")


def test_find_spark_needs_a_complete_install(tmp_path: Path) -> None:
    paths = StackPaths.for_home(tmp_path, tmp_path / "cache")
    assert find_spark(paths) is None
    home = tmp_path / "cache" / "spark-3.5.9-iceberg-1.12.0"
    (home / "venv" / "bin").mkdir(parents=True)
    (home / "venv" / "bin" / "python").write_text("")
    assert find_spark(paths) is None  # no .complete marker: an interrupted install
    (home / ".complete").write_text("x")
    (home / "jars").mkdir()
    (home / "jars" / "iceberg-spark-runtime.jar").write_text("")
    found = find_spark(paths)
    assert found is not None and [p.name for p in found.jars] == ["iceberg-spark-runtime.jar"]


def test_catalog_conf_names_the_jdbc_catalog() -> None:
    spark = SparkInstall(home=Path("/s"), python=Path("/s/python"), jars=(Path("/s/a.jar"),), java_home=None)
    conf = catalog_conf(spark, "k2", "postgresql://u:p@db:5433/cat", "file:///w", extra_jars=(Path("/b.jar"),))
    assert conf["spark.jars"] == "/s/a.jar,/b.jar"
    assert conf["spark.sql.catalog.k2.uri"] == "jdbc:postgresql://db:5433/cat"
    assert conf["spark.sql.catalog.k2.jdbc.schema-version"] == "V1"
    assert conf["spark.sql.catalog.k2.jdbc.password"] == "p"

"""The peers, installed from the registries into the cache (~/.k2/cache/peers/...), once.

- Kafka Connect 4.3.2 + Apache Iceberg's sink 1.12.0 + Apicurio's converter: Maven Central, `connect/pom.xml`.
- Spark: the stack's install (pyspark 3.5.9 in its own venv, iceberg-spark-runtime; k2cli/stack/spark.py) plus
  the Kafka source and Avro functions (`spark/pom.xml`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Installed:
    connect_jars: Path
    spark: object  # k2cli.stack.spark.SparkInstall
    spark_extra_jars: tuple[Path, ...]


def _paths():  # -> StackPaths
    import os

    from k2cli.stack.paths import StackPaths

    return StackPaths.for_home(Path(os.environ.get("K2_HOME") or Path.home() / ".k2"))


def _jars(name: str, pom_dir: Path, extra: list[str], say) -> Path:
    """The jars of `pom_dir/pom.xml` copied into <cache>/peers/<name> (fetched on first use)."""
    from k2cli.stack.install import _run, find_mvn

    paths = _paths()
    out = paths.cache / "peers" / name
    if (out / ".complete").is_file():
        return out
    mvn = find_mvn()
    if mvn is None:
        raise SystemExit("Maven (mvn) is not installed: run scripts/install.sh")
    say(f"fetching {name} jars from Maven Central")
    tmp = out.with_name(name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _run([str(mvn), "-B", "-q", "--no-transfer-progress", "-f", str(pom_dir / "pom.xml"),
          f"-Dmaven.repo.local={paths.cache / 'm2'}", "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
          *extra], what=f"fetching {name} jars", log=paths.cache / "install.log")
    (tmp / ".complete").write_text("\n".join(sorted(p.name for p in tmp.glob("*.jar"))) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def ensure(say=print, connect: bool = True, spark: bool = True) -> Installed:
    """What the chosen peers need (idempotent: a second call finds it in the cache)."""
    from k2cli.stack.errors import InstallError
    from k2cli.stack.spark import ensure_spark

    try:
        jars = _jars("connect-4.3.2-iceberg-1.12.0", HERE / "connect", ["-DincludeScope=runtime"], say) \
            if connect else Path()
        extra = tuple(sorted(_jars("spark-kafka-3.5.7", HERE / "spark", ["-DexcludeTransitive=true"], say)
                             .glob("*.jar"))) if spark else ()
        installed_spark = ensure_spark(_paths(), say) if spark else None
    except InstallError as exc:
        raise SystemExit(f"installing the peers: {exc}") from None
    return Installed(jars, installed_spark, extra)

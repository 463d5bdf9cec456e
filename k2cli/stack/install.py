"""Install what the local stack runs, into a reusable cache, from package registries only.

- Apache Kafka broker jars: Maven Central, through `mvn dependency:copy-dependencies` and a small pom.
- Apicurio Registry (Confluent-compatible API): its distribution tar.gz from Maven Central.
- PostgreSQL, Prometheus, nginx (and Maven if missing): Debian packages, installed only when missing.
- Toxiproxy (the fault suite's network faults): built from the Go module proxy (k2cli/stack/toxiproxy.py).
- versitygw and the Iceberg REST catalog server (`--with s3,rest-catalog`): k2cli/stack/lake_install.py.
- Spark for reading the lake (pyspark from PyPI in a venv of its own, the Iceberg runtime jar from Maven
  Central): k2cli/stack/spark.py.

Everything downloaded lands under the cache directory (`$K2_HOME/cache` or `$K2_CACHE_DIR`) and is
reused as is on the next run. Run `python -m k2cli.stack.install` to install without starting.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from k2cli.stack.errors import InstallError
from k2cli.stack.paths import DATA_DIR, StackPaths
from k2cli.stack.progress import Progress, quiet
from k2cli.stack.toxiproxy import TOXIPROXY_VERSION, ensure_toxiproxy

KAFKA_VERSION = "4.4.0"
# Apicurio Registry 3.3.x is built for Java 21; 3.0.x still runs on Java 17 (fallback when no JDK 21+).
APICURIO_VERSION = "3.3.3"
APICURIO_JAVA = 21
APICURIO_FALLBACK_VERSION = "3.0.9"
KAFKA_JAVA = 17

T = TypeVar("T")


# --------------------------------------------------------------------------------------------- commands
def _run(cmd: Sequence[str], *, what: str, log: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 1800) -> None:
    """Run an install command; on failure raise InstallError with the tail of its output."""
    try:
        proc = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                              timeout=timeout)
    except FileNotFoundError:
        raise InstallError(f"{what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise InstallError(f"{what}: `{' '.join(cmd[:3])} …` did not finish in {timeout:.0f}s") from None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = " | ".join(line.strip() for line in (proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise InstallError(f"{what} failed (exit {proc.returncode}): {tail}")


# --------------------------------------------------------------------------------------------- Debian
def is_root() -> bool:
    return os.geteuid() == 0


def required(found: T | None, what: str, package: str) -> T:
    """What a find_* function found, or InstallError naming the apt package that provides it."""
    if found is None:
        raise InstallError(f"{what} not found (apt-get install {package})")
    return found


def apt_ensure(find: Callable[[], object | None], package: str, progress: Progress = quiet) -> None:
    """Install the apt package when `find` finds nothing."""
    if find() is None:
        apt_install([package], progress)


def apt_install(packages: Sequence[str], progress: Progress = quiet) -> None:
    """Install Debian packages non-interactively, without starting their services."""
    if not packages:
        return
    if not is_root():
        raise InstallError(f"missing Debian packages {', '.join(packages)}: install them as root "
                           f"(sudo scripts/install.sh, or sudo apt-get install {' '.join(packages)})")
    if shutil.which("apt-get") is None:
        raise InstallError(f"missing {', '.join(packages)} and no apt-get on this machine: install them by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lists = Path("/var/lib/apt/lists")
    if not any(lists.glob("*Packages*")):
        progress("apt-get update")
        _run(["apt-get", "update", "-q"], what="apt-get update", env=env)
    # No service of a package may start on install: only `k2 stack` starts them, with our configuration.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\n# written by k2 stack install: do not start services on install\nexit 101\n")
        policy.chmod(0o755)
        made_policy = True
    try:
        progress(f"apt-get install {' '.join(packages)}")
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
        try:
            _run(cmd, what=f"apt-get install {' '.join(packages)}", env=env)
        except InstallError:
            _run(["apt-get", "update", "-q"], what="apt-get update", env=env)  # stale lists: refresh once
            _run(cmd, what=f"apt-get install {' '.join(packages)}", env=env)
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)


def find_postgres_bin() -> Path | None:
    """The bin directory of the newest installed PostgreSQL server (Debian layout), or None."""
    found = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            try:
                found.append((int(bindir.parent.name), bindir))
            except ValueError:
                continue
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb and (Path(initdb).resolve().parent / "postgres").exists() else None


def find_prometheus() -> tuple[Path, Path] | None:
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    return (Path(prom), Path(tool)) if prom and tool else None


def find_nginx() -> Path | None:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    return Path(found) if found else None


def find_mvn() -> Path | None:
    found = shutil.which("mvn")
    return Path(found) if found else None


def missing_debian_packages() -> list[str]:
    """The Debian packages the stack needs that are not installed."""
    missing = []
    if find_postgres_bin() is None:
        missing.append("postgresql")
    if find_prometheus() is None:
        missing.append("prometheus")
    if find_nginx() is None:
        missing.append("nginx")
    if find_mvn() is None:
        missing.append("maven")
    if not any(j.major >= KAFKA_JAVA for j in find_jdks()):
        missing.append("openjdk-17-jre-headless")
    return missing


def ensure_debian_packages(progress: Progress = quiet) -> None:
    missing = missing_debian_packages()
    if missing:
        apt_install(missing, progress)


# --------------------------------------------------------------------------------------------- Java
@dataclass(frozen=True)
class Jdk:
    java: Path
    major: int


def _java_major(java: Path) -> int | None:
    release = java.resolve().parent.parent / "release"
    text = ""
    try:
        text = release.read_text()
    except OSError:
        try:
            proc = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
            text = proc.stderr
        except (OSError, subprocess.TimeoutExpired):
            return None
    match = re.search(r'version[ =]"(\d+)(?:\.(\d+))?', text) or re.search(r'JAVA_VERSION="(\d+)', text)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.lastindex and match.group(2):  # 1.8 style
        major = int(match.group(2))
    return major


def find_jdks() -> list[Jdk]:
    """Java runtimes on this machine: $K2_JAVA_HOME, $JAVA_HOME, `java` on PATH, /usr/lib/jvm/*."""
    candidates: list[Path] = []
    for var in ("K2_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]) / "bin" / "java")
    if shutil.which("java"):
        candidates.append(Path(shutil.which("java")))  # type: ignore[arg-type]
    candidates.extend(sorted(Path("/usr/lib/jvm").glob("*/bin/java")))
    seen: set[Path] = set()
    jdks = []
    for java in candidates:
        try:
            real = java.resolve(strict=True)
        except OSError:
            continue
        if real in seen:
            continue
        seen.add(real)
        major = _java_major(real)
        if major is not None:
            jdks.append(Jdk(java=real, major=major))
    return jdks


def find_java(min_major: int, prefer_lowest: bool = True) -> Jdk | None:
    """A Java runtime of at least `min_major` (the oldest such by default: the most conservative)."""
    fit = [j for j in find_jdks() if j.major >= min_major]
    if not fit:
        return None
    return sorted(fit, key=lambda j: j.major, reverse=not prefer_lowest)[0]


# --------------------------------------------------------------------------------------------- Maven
def _mvn_copy(paths: StackPaths, pom_name: str, props: dict[str, str], out_dir: Path, what: str,
              extra: Sequence[str] = ()) -> None:
    mvn = find_mvn()
    if mvn is None:
        raise InstallError(f"{what}: Maven (mvn) is not installed; run scripts/install.sh or apt-get install maven")
    build = paths.cache / "build" / pom_name
    build.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA_DIR / pom_name / "pom.xml", build / "pom.xml")
    cmd = [str(mvn), "-B", "-q", "--no-transfer-progress", "-f", str(build / "pom.xml"),
           f"-Dmaven.repo.local={paths.cache / 'm2'}",
           *(f"-D{k}={v}" for k, v in props.items()),
           "dependency:copy-dependencies", f"-DoutputDirectory={out_dir}", *extra]
    _run(cmd, what=what, log=paths.cache / "install.log")


def kafka_libs(paths: StackPaths) -> Path:
    return paths.cache / f"kafka-{KAFKA_VERSION}" / "libs"


def mvn_libs(paths: StackPaths, libs: Path, pom_name: str, props: dict[str, str], what: str,
             required: Callable[[list[str]], bool], missing: str, progress: Progress = quiet) -> Path:
    """A directory of runtime jars resolved by one of our poms, fetched once and marked complete."""
    if (libs.parent / ".complete").is_file():
        return libs
    progress(f"{what} from Maven Central")
    tmp = libs.parent.with_name(libs.parent.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _mvn_copy(paths, pom_name, props, tmp / libs.name, what, ["-DincludeScope=runtime"])
    jars = sorted(p.name for p in (tmp / libs.name).glob("*.jar"))
    if not required(jars):
        raise InstallError(f"{what}: {missing} is missing from the download")
    (tmp / ".complete").write_text("\n".join(jars) + "\n")
    shutil.rmtree(libs.parent, ignore_errors=True)
    tmp.rename(libs.parent)
    return libs


def ensure_kafka(paths: StackPaths, progress: Progress = quiet) -> Path:
    """The directory of the Kafka broker jars, fetched from Maven Central on first use."""
    return mvn_libs(paths, kafka_libs(paths), "kafka", {"kafka.version": KAFKA_VERSION},
                    f"fetching Apache Kafka {KAFKA_VERSION} broker jars",
                    lambda jars: any(j.startswith(f"kafka_2.13-{KAFKA_VERSION}") for j in jars),
                    f"kafka_2.13-{KAFKA_VERSION}.jar", progress)


@dataclass(frozen=True)
class Apicurio:
    version: str
    home: Path
    jar: Path  # quarkus-run.jar (3.1+) or the *-runner.jar (3.0)
    jdk: Jdk


def apicurio_choice() -> tuple[str, Jdk]:
    """Which Apicurio version this machine can run, and with which Java."""
    jdk = find_java(APICURIO_JAVA, prefer_lowest=True)
    if jdk is not None:
        return APICURIO_VERSION, jdk
    jdk = find_java(KAFKA_JAVA)
    if jdk is None:
        raise InstallError("no Java 17+ runtime found (looked at $K2_JAVA_HOME, $JAVA_HOME, PATH, /usr/lib/jvm); "
                           "install openjdk-17-jre-headless")
    return APICURIO_FALLBACK_VERSION, jdk


def _apicurio_jar(home: Path) -> Path | None:
    if (home / "quarkus-run.jar").is_file():
        return home / "quarkus-run.jar"
    runners = sorted(home.glob("*-runner.jar"))
    return runners[0] if runners else None


def ensure_apicurio(paths: StackPaths, progress: Progress = quiet) -> Apicurio:
    """Apicurio Registry's distribution, fetched from Maven Central and unpacked on first use."""
    version, jdk = apicurio_choice()
    home = paths.cache / f"apicurio-registry-{version}"
    jar = _apicurio_jar(home)
    if (home / ".complete").is_file() and jar is not None:
        return Apicurio(version=version, home=home, jar=jar, jdk=jdk)
    progress(f"fetching Apicurio Registry {version} from Maven Central")
    download = paths.cache / "build" / f"apicurio-{version}-download"
    shutil.rmtree(download, ignore_errors=True)
    _mvn_copy(paths, "apicurio", {"apicurio.version": version}, download, "fetching Apicurio Registry")
    archives = sorted(download.glob("*.tar.gz"))
    if not archives:
        raise InstallError(f"fetching Apicurio Registry {version}: no distribution archive was downloaded")
    progress(f"unpacking Apicurio Registry {version}")
    tmp = home.with_name(home.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archives[0]) as tar:
        try:
            tar.extractall(tmp, filter="data")
        except TypeError:  # Python without extraction filters
            tar.extractall(tmp)
    jar = _apicurio_jar(tmp)
    if jar is None:
        raise InstallError(f"Apicurio Registry {version}: no quarkus-run.jar or *-runner.jar in the archive")
    (tmp / ".complete").write_text(f"{version}\n")
    shutil.rmtree(home, ignore_errors=True)
    tmp.rename(home)
    # The unpacked tree is all we need: drop the archive copies (about 160 MB each).
    shutil.rmtree(download, ignore_errors=True)
    for cached in (paths.cache / "m2" / "io" / "apicurio" / "apicurio-registry-app" / version).glob("*.tar.gz"):
        cached.unlink(missing_ok=True)
    return Apicurio(version=version, home=home, jar=_apicurio_jar(home), jdk=jdk)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- all
def install_all(paths: StackPaths, progress: Progress = quiet) -> dict[str, str]:
    """Install everything the stack needs; returns what is installed (name -> version or path)."""
    paths.ensure()
    ensure_debian_packages(progress)
    libs = ensure_kafka(paths, progress)
    apicurio = ensure_apicurio(paths, progress)
    toxiproxy = ensure_toxiproxy(paths, progress)
    from k2cli.stack import lake_install  # the optional scale-out services: installed too, so CI has them

    versitygw = lake_install.ensure_versitygw(paths, progress)
    rest_libs = lake_install.ensure_rest_catalog(paths, progress)
    spark = ensure_spark_reader(paths, progress)
    kafka_java = find_java(KAFKA_JAVA)
    return {
        "kafka": f"{KAFKA_VERSION} ({libs})",
        "kafka-java": f"{kafka_java.major} ({kafka_java.java})" if kafka_java else "missing",
        "apicurio-registry": f"{apicurio.version} ({apicurio.home})",
        "apicurio-java": f"{apicurio.jdk.major} ({apicurio.jdk.java})",
        "postgresql": str(find_postgres_bin()),
        "prometheus": str((find_prometheus() or ("missing",))[0]),
        "nginx": str(find_nginx()),
        "toxiproxy": f"{TOXIPROXY_VERSION} ({toxiproxy})",
        "versitygw": f"{lake_install.VERSITYGW_VERSION} ({versitygw})",
        "iceberg-rest-catalog": f"{lake_install.ICEBERG_REST_VERSION} ({rest_libs})",
        "spark": spark,
    }


def ensure_spark_reader(paths: StackPaths, progress: Progress = quiet) -> str:
    """pyspark and the Iceberg Spark runtime (the Spark read test, benchmarks/peers); what is installed."""
    from k2cli.stack.spark import ICEBERG_SPARK_VERSION, PYSPARK_VERSION, ensure_spark

    spark = ensure_spark(paths, progress)
    return f"pyspark {PYSPARK_VERSION} + iceberg-spark-runtime {ICEBERG_SPARK_VERSION} ({spark.home})"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m k2cli.stack.install [--cache DIR]`: install the stack (used by scripts/install.sh)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m k2cli.stack.install", description=main.__doc__)
    parser.add_argument("--home", default=os.environ.get("K2_HOME") or str(Path.home() / ".k2"))
    parser.add_argument("--cache", default=None, help="cache directory (default $K2_CACHE_DIR or HOME/cache)")
    args = parser.parse_args(argv)
    paths = StackPaths.for_home(Path(args.home), Path(args.cache) if args.cache else None)
    started = time.monotonic()
    try:
        done = install_all(paths, progress=lambda msg: print(f"k2 stack install: {msg}", flush=True))
    except InstallError as exc:
        print(f"k2 stack install: error: {exc}", file=sys.stderr)
        return 1
    for name, what in done.items():
        print(f"k2 stack install: {name}: {what}")
    print(f"k2 stack install: done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

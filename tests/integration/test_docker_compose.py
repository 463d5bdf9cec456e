"""docker-compose.yml is valid for Docker hosts: `docker compose config -q` and the services it must have."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from k2cli.exchanges import registry

ROOT = Path(__file__).resolve().parents[2]


def _compose(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("docker") is None:
        pytest.fail("the docker client is not installed; scripts/install.sh expects it on this machine kind",
                    pytrace=False)
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail("`docker compose` plugin missing; scripts/install.sh builds it", pytrace=False)
    return subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_compose_config_is_valid():
    proc = _compose("config", "-q")
    assert proc.returncode == 0, proc.stderr


def test_compose_has_the_pipeline_services():
    proc = _compose("config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    for name in ("kafka", "schema-registry", "postgres", "minio", "minio-init", "prometheus", "grafana",
                 "stream-binance", "stream-kraken", *(f"stream-{n}" for n in registry.names()), "consumer"):
        assert name in services, name
    mounts = " ".join(str(v.get("source", "")) for v in services["prometheus"].get("volumes", []))
    assert "deploy/prometheus/rules" in mounts
    assert (ROOT / "deploy" / "prometheus" / "rules").is_dir()
    assert services["consumer"]["environment"]["K2_ICEBERG_CATALOG_URI"].startswith("postgresql")

"""A private Prometheus for red-path tests: k2's scrape jobs and alert rules with one fault built in."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from k2cli.proc import free_port

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "k2-stream.yml"


def rules_without(group: str, into: Path) -> Path:
    """k2's stream alert rules with one rule group removed."""
    doc = yaml.safe_load(RULES.read_text())
    kept = [g for g in doc["groups"] if g["name"] != group]
    assert len(kept) == len(doc["groups"]) - 1, f"no rule group {group} in {RULES}"
    into.write_text(yaml.safe_dump({"groups": kept}))
    return into


@contextlib.contextmanager
def private_prometheus(tmp: Path, jobs: dict[str, str], rule_file: Path | None = None) -> Iterator[str]:
    """Prometheus on a free port scraping itself (job "prometheus") and, every second, each job at a path of its
    own (job name -> metrics path on Prometheus's own port); yields its URL once every target has been scraped."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: install the Debian `prometheus` package", pytrace=False)
    port = free_port()
    target = {"targets": [f"127.0.0.1:{port}"]}
    scrapes = [{"job_name": "prometheus", "static_configs": [target]}]
    scrapes += [{"job_name": job, "metrics_path": path, "static_configs": [target]} for job, path in jobs.items()]
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": scrapes,
              "rule_files": [str(rule_file)] if rule_file else []}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    with open(tmp / "prometheus.log", "w") as log:
        proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not _all_scraped(url, len(scrapes)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_tail = (tmp / "prometheus.log").read_text()[-2000:]
                    raise AssertionError(f"private Prometheus not ready: {log_tail}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def _all_scraped(url: str, jobs: int) -> bool:
    try:
        targets = httpx.get(f"{url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return len(targets) == jobs and all(t.get("health") != "unknown" for t in targets)

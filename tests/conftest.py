"""Shared fixtures: real-service checks that fail loudly, unique names, a clean K2 environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

SERVICES = {
    "kafka": ("localhost", 9092),
    "schema-registry": ("localhost", 8081),
    "postgres": ("localhost", 5432),
    "prometheus": ("localhost", 9090),
}


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(*names: str) -> None:
    """Fail (never skip) when a stack service the test needs is not reachable."""
    for name in names:
        host, port = SERVICES[name]
        if not port_open(host, port):
            pytest.fail(f"{name} is not reachable at {host}:{port}; start the stack with `k2 stack up`",
                        pytrace=False)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topics, groups, namespaces."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def k2_env(tmp_path: Path) -> dict[str, str]:
    """An environment for k2 subprocesses with its own data dir, DLQ dir and catalog."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    env.update({
        "K2_HOME": str(tmp_path / "k2home"),
        "K2_DATA_DIR": str(tmp_path / "data"),
        "K2_DLQ_DIR": str(tmp_path / "dlq"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_k2(args: list[str], env: dict[str, str] | None = None, timeout: float = 120,
           check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m k2cli ARGS` and capture its output."""
    proc = subprocess.run([sys.executable, "-m", "k2cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"k2 {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc

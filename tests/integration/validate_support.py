"""Helpers for the `k2 validate` integration tests: run a checklist as an operator would and read its JSON."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from tests.conftest import run_k2


def validate(args: list[str], env: dict[str, str], timeout: float = 600,
             config: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Run `k2 [--config C] validate ARGS --format json`; return the process and the parsed report."""
    prefix = ["--config", str(config)] if config else []
    proc = run_k2([*prefix, "validate", *args, "--format", "json"], env=env, timeout=timeout)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None
    return proc, report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    """step id -> status."""
    return {s["id"]: s["status"] for s in report["steps"]}


def step(report: dict[str, Any], step_id: str) -> dict[str, Any]:
    """One step's entry."""
    return next(s for s in report["steps"] if s["id"] == step_id)


def explain(report: dict[str, Any]) -> str:
    """Every step that is not PASS, with its summary and evidence, for assertion messages."""
    return "\n".join(f"{s['id']} {s['status']}: {s['summary']} {s['evidence'][:6]}" for s in report["steps"]
                     if s["status"] != "PASS")


def thresholds(tmp: Path, **values: float) -> Path:
    """A k2.toml with a [thresholds] table."""
    path = tmp / f"k2-{len(list(tmp.glob('k2-*.toml')))}.toml"
    path.write_text("[thresholds]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def delete_subject(subject: str, registry: str = "http://localhost:8081") -> None:
    """Remove a test's subject from the registry (soft, then permanent)."""
    import httpx

    for params in ({}, {"permanent": "true"}):
        httpx.delete(f"{registry}/subjects/{subject}", params=params, timeout=5)


def dead_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

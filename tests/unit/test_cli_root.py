"""The root command: every group listed, lazy imports, one-line errors with exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from k2cli.cli.app import GROUPS

HEAVY = ("pyiceberg", "duckdb", "confluent_kafka", "pyarrow", "fastavro")
PROBE = """
import sys
from k2cli.cli.app import main
sys.argv = ["k2", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                          text=True, timeout=60)


def test_help_lists_every_group_without_heavy_imports():
    proc = _probe("--help")
    for group in ("stream", "consume", "validate", "soak", "dlq", "query", "stack", "simulate"):
        assert group in proc.stdout
    assert proc.stdout.strip().endswith("HEAVY="), proc.stdout[-300:]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_group_help_is_lazy_too(group):
    proc = _probe(group, "--help")
    assert "Usage" in proc.stdout, proc.stderr
    assert proc.stdout.strip().endswith("HEAVY="), f"{group} --help imported: {proc.stdout.strip()[-80:]}"


def test_unknown_command_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "k2cli", "nosuch"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_version():
    proc = subprocess.run([sys.executable, "-m", "k2cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("k2 ")

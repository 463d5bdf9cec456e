"""The committed completion scripts match the CLI (regenerate with scripts/gen_completions.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from k2cli.cli.completion import render_all

ROOT = Path(__file__).resolve().parents[2]


def test_completion_scripts_match_the_cli():
    for name, text in render_all().items():
        path = ROOT / "completions" / name
        assert path.exists(), f"completions/{name} missing: run python scripts/gen_completions.py"
        assert path.read_text() == text, f"completions/{name} drifted from the CLI: run scripts/gen_completions.py"


def test_bash_script_is_valid_and_completes_groups():
    script = ROOT / "completions" / "k2.bash"
    out = subprocess.run(["bash", "-c", f'source {script}; COMP_WORDS=(k2 que); COMP_CWORD=1; _k2_complete; '
                          'echo "${COMPREPLY[@]}"'], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.split() == ["query"]
    assert sys.executable

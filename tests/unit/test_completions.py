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


def _bash_complete(*words: str) -> list[str]:
    script = ROOT / "completions" / "k2.bash"
    line = " ".join(f"'{w}'" for w in words)
    out = subprocess.run(["bash", "-c", f'source {script}; cd {ROOT}; COMP_WORDS=({line}); '
                          f'COMP_CWORD={len(words) - 1}; _k2_complete; printf "%s\\n" "${{COMPREPLY[@]}}"'],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_bash_completes_option_values_and_file_names():
    assert _bash_complete("k2", "query", "trades", "--format", "") == ["table", "rich", "json", "csv", "parquet"]
    assert _bash_complete("k2", "status", "-f", "") == ["rich", "json"]
    assert _bash_complete("k2", "query", "trades", "--order", "") == ["asc", "desc"]
    assert "pyproject.toml" in _bash_complete("k2", "--config", "py")
    assert "pyproject.toml" in _bash_complete("k2", "validate", "e2e", "--output", "py")


def test_zsh_and_fish_scripts_offer_the_same_values():
    scripts = render_all()
    assert '" query trades|--format") compadd -- table rich json csv parquet; return ;;' in scripts["_k2"]
    assert '"|--config") _files; return ;;' in scripts["_k2"]
    fish = scripts["k2.fish"]
    assert "-l format -xa 'table rich json csv parquet'" in fish and "-l config -r -F" in fish

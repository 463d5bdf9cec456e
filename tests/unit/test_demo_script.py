"""scripts/demo.sh runs the main job only: its install skips building the docker compose plugin."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _step4(env: dict[str, str], tmp: Path) -> str:
    """Run install.sh's step 4 alone, with a docker that lacks compose and a go that records being called."""
    text = (ROOT / "scripts" / "install.sh").read_text()
    step = text[text.index('COMPOSE_VERSION="'):text.index('say "all done')]
    bin_dir = tmp / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 1\n")  # a docker client without the compose plugin
    (bin_dir / "go").write_text(f"#!/bin/sh\necho go-called >> {tmp}/calls\nexit 1\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script = f'say() {{ echo "$*"; }}\nPYTHON=python3\nHOME={tmp}\n{step}'
    proc = subprocess.run(["bash", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env},
                          capture_output=True, text=True)
    return proc.stdout + (tmp / "calls").read_text() if (tmp / "calls").exists() else proc.stdout


def test_demo_installs_without_the_compose_plugin():
    demo = (ROOT / "scripts" / "demo.sh").read_text()
    assert re.search(r"^K2_INSTALL_COMPOSE_PLUGIN=0 bash scripts/install\.sh", demo, re.M)


def test_install_step_4_is_skipped_when_asked_and_runs_otherwise(tmp_path):
    skipped = _step4({"K2_INSTALL_COMPOSE_PLUGIN": "0"}, tmp_path / "a")
    assert "step 4 skipped" in skipped and "go-called" not in skipped
    built = _step4({}, tmp_path / "b")
    assert "building docker compose" in built and "go-called" in built

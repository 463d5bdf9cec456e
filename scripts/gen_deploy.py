"""Regenerate the deploy files that list every registered exchange: python scripts/gen_deploy.py [--check]."""

from __future__ import annotations

import sys
from pathlib import Path

from k2cli.stack.deploy_files import render_all

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for name, text in render_all(ROOT).items():
        path = ROOT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        elif not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {name}")
    if stale:
        print(f"deploy files out of date: {', '.join(stale)}; run python scripts/gen_deploy.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

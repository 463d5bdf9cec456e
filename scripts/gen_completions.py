"""Regenerate completions/ from the k2 command tree: python scripts/gen_completions.py [--check]."""

from __future__ import annotations

import sys
from pathlib import Path

from k2cli.cli.completion import render_all

OUT = Path(__file__).resolve().parent.parent / "completions"


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for name, text in render_all().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"completions out of date: {', '.join(stale)}; run python scripts/gen_completions.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

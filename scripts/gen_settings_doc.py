"""Regenerate docs/settings.md from the settings reference."""

from pathlib import Path

from k2cli.settings_doc import render

(Path(__file__).resolve().parent.parent / "docs" / "settings.md").write_text(render())

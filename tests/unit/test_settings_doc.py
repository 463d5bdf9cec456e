"""Every setting is documented, and docs/settings.md is current."""

import dataclasses
from pathlib import Path

from k2cli.settings import Settings
from k2cli.settings_doc import HELP, render

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_has_help():
    names = {f.name for f in dataclasses.fields(Settings)}
    assert names - HELP.keys() == set(), "settings without a line in k2cli/settings_doc.py"
    assert HELP.keys() - names == set(), "help for settings that no longer exist"


def test_settings_doc_is_current():
    assert (ROOT / "docs" / "settings.md").read_text() == render(), "run python scripts/gen_settings_doc.py"
